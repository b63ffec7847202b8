"""``napari-klip demo``: KLIP on real CT slices with inserted lesions, with the bundled prior.

The bundled sample (8 OrganAMNIST test CT slices, 28×28, one synthetic lesion each, with its
mask; ``data/samples/ATTRIBUTION.md``) is measured with simulated sparse-view CT, scored with
KLIP and the bundled liver prior (with the prior z-map of :mod:`napari_klip.core.prior_z` beside
it), and summarised in a figure (input with the lesion outline, sinogram, reconstruction, KLIP
heatmap, flagged blocks, prior z-map) and ``result.json`` with the localization ROC-AUC of every
slice (blocks inside the body, the image-level protocol of ``docs/klip.md``) next to the same
ROC-AUC of the trivial baselines of :mod:`napari_klip.core.baselines` (closeness to the image
centre and depth inside the body — lesions sit inside the body, away from its outline —, local
and blob contrast of the filtered back-projection, residual to the posterior mean): the numbers
the maps must beat.
Offline; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import DEVICE_CHOICES, GUIDANCE_MODES, PRECISIONS, KlipConfig, OperatorSettings
from ..core.progress import Progress, ProgressCallback
from ..core.samples import load_ct_sample
from ._common import add_device_option, check_out, follow, progress_bar

DEMO_OUTPUTS = ("demo.png", "result.json")
#: Slices in the bundled CT sample.
SAMPLE_SLICES = 8


@dataclass
class DemoSettings:
    """What the demo runs (defaults: the KLIP paper's sampler, 24 CT views, all sample slices).

    ``model`` is a prior folder (``None``: the bundled liver prior ``organamnist-liver28-tiny-cpu``; an OrganAMNIST CT prior of your
    own also works); ``guidance`` is KLIP's (see ``docs/klip.md``).
    """

    n_views: int = OperatorSettings.n_views
    num_samples: int = KlipConfig.num_samples
    num_steps: int = KlipConfig.num_steps
    seed: int = KlipConfig.seed
    device: str = DEVICE_CHOICES[0]
    precision: str = PRECISIONS[0]
    slices: int = SAMPLE_SLICES
    model: str | None = None
    guidance: str = KlipConfig.guidance


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    demo = commands.add_parser(
        "demo",
        help="the demo: KLIP on real CT slices with inserted lesions, bundled prior (offline, ~1 min on a CPU)",
        description="Simulate sparse-view CT of 8 bundled OrganAMNIST CT slices with inserted lesions, score them with KLIP "
        "and the bundled prior, and write demo.png and result.json (localization ROC-AUC per slice). "
        "--gui opens napari with the sample loaded and the KLIP widget docked instead.",
    )
    defaults = DemoSettings
    demo.add_argument("--out", type=Path, default=Path("outputs") / "demo", help="output folder (default outputs/demo)")
    demo.add_argument("--model", type=Path, default=None,
                      help="prior folder trained on OrganAMNIST-like CT (default: the bundled liver prior organamnist-liver28-tiny-cpu)")
    demo.add_argument("--guidance", choices=GUIDANCE_MODES, default=defaults.guidance,
                      help=f"KLIP guidance (default {defaults.guidance}, the paper's; consistency: filtered back-projection steps)")
    demo.add_argument("--n-views", type=int, default=defaults.n_views, help=f"CT projection angles over [0, 180) (default {defaults.n_views})")
    demo.add_argument("--samples", type=int, default=defaults.num_samples, help=f"posterior samples per slice (default {defaults.num_samples})")
    demo.add_argument("--steps", type=int, default=defaults.num_steps, help=f"sampling steps (default {defaults.num_steps})")
    demo.add_argument("--slices", type=int, default=defaults.slices, help=f"how many of the {SAMPLE_SLICES} sample slices (default {defaults.slices})")
    demo.add_argument("--seed", type=int, default=defaults.seed)
    add_device_option(demo)
    demo.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    demo.add_argument("--gui", action="store_true", help="open napari with the sample and the KLIP widget instead")
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """``napari-klip demo``: the figure and result.json, or (``--gui``) napari with the sample."""
    if args.gui:
        import napari

        from ..plugin.demo import open_demo_viewer

        open_demo_viewer(napari.Viewer(title="napari-klip demo"))
        napari.run()
        return 0
    if not 1 <= args.slices <= SAMPLE_SLICES:
        raise ValueError(f"--slices must be in 1..{SAMPLE_SLICES}, got {args.slices}")
    settings = DemoSettings(n_views=args.n_views, num_samples=args.samples, num_steps=args.steps, seed=args.seed, device=args.device, precision=args.precision,
                            slices=args.slices, model=None if args.model is None else str(args.model), guidance=args.guidance)
    with progress_bar(args.slices * args.steps, "KLIP on CT slices") as bar:
        summary = run_demo(args.out, settings, overwrite=args.overwrite, progress=follow(bar))
    beside = ", ".join(f"{name} {value:.3f}" for name, value in summary["baseline_auc_mean"].items())
    print(
        f"KLIP localization ROC-AUC {summary['localization_auc_mean']:.3f} (mean over {summary['slices_with_both_classes']} slices; "
        f"margin over the best baseline {summary['margin_over_best_baseline']:+.3f}); prior z-map {summary['prior_z_auc_mean']:.3f} "
        f"(margin {summary['prior_z_margin_over_best_baseline']:+.3f}); trivial baselines on the same slices: {beside}; "
        f"{summary['wall_time_s']:.0f} s on {summary['device']}\n"
        f"wrote {args.out / 'demo.png'} and {args.out / 'result.json'}"
    )
    return 0


def run_demo(out: Path, settings: DemoSettings | None = None, overwrite: bool = False,
             progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Run the demo and write ``demo.png`` and ``result.json`` into ``out``.

    Parameters
    ----------
    out : Path
        Output folder (created).
    settings : DemoSettings, optional
    overwrite : bool
        Replace earlier demo outputs in ``out``.
    progress : callable, optional
        Called with a :class:`~napari_klip.core.progress.Progress` over all slices' sampling steps.

    Returns
    -------
    dict
        The content of ``result.json``.
    """
    from ..api.klip import score_image
    from ..core.anomalies import foreground_mask
    from ..core.grid import resize_to_grid
    from ..core.metrics import baseline_image_level_aucs, block_means, image_level_roc_auc
    from ..core.operators import build_operator
    from ..core.prior import LIVER_PRIOR_NAME, bundled_prior_path, resolve_prior

    settings = settings or DemoSettings()
    out = Path(out)
    check_out(out, DEMO_OUTPUTS, overwrite)
    images, masks = load_ct_sample()
    images, masks = images[: settings.slices], masks[: settings.slices]
    start = time.perf_counter()
    model = settings.model or bundled_prior_path(LIVER_PRIOR_NAME)  # the slices are liver: the bundled liver prior
    prior = resolve_prior(model, settings.device).set_precision(settings.precision)
    operator = build_operator("ct", prior.image_size, {"n_views": settings.n_views})
    config = KlipConfig(num_samples=settings.num_samples, num_steps=settings.num_steps, guidance=settings.guidance, seed=settings.seed)
    results = []
    for index, image in enumerate(images):
        # every slice counts the same units (its sampling steps, then the z-map's noise levels)
        report = None if progress is None else (
            lambda update, index=index: progress(Progress(index * update.total + update.step, len(images) * update.total, update.elapsed_s)))
        results.append(score_image(image, prior, operator=operator, config=config, prior_z=True, progress=report))

    # Blocks count input pixels: score maps, lesion masks and body masks all live on the slices' own grid.
    grid_images = [resize_to_grid(image, prior.image_size) for image in images]
    bodies = [foreground_mask(image) for image in images]
    block = results[0].block_size
    level = image_level_roc_auc([r.score_map for r in results], list(masks), block, bodies)
    z_level = image_level_roc_auc([block_means(r.prior_z, block) for r in results], list(masks), block, bodies)
    baselines = baseline_image_level_aucs([r.observed for r in results], [r.reconstruction for r in results],
                                          list(masks), block, bodies)
    best_baseline = max(b.mean_auc for b in baselines.values())
    sinograms = [_sinogram(operator, grid) for grid in grid_images]
    summary = {
        "what": "KLIP and prior z-map localization of synthetic lesions in real CT slices (OrganAMNIST test split) from simulated sparse-view CT",
        "localization_auc_mean": level.mean_auc,
        "localization_auc_per_slice": level.per_image,
        "slices_with_both_classes": level.images_used,
        "baseline_auc_mean": {name: b.mean_auc for name, b in baselines.items()},
        "baseline_auc_per_slice": {name: b.per_image for name, b in baselines.items()},
        "margin_over_best_baseline": level.mean_auc - best_baseline,
        "prior_z_auc_mean": z_level.mean_auc,
        "prior_z_auc_per_slice": z_level.per_image,
        "prior_z_margin_over_best_baseline": z_level.mean_auc - best_baseline,
        "prior_z_settings": results[0].parameters["prior_z"],
        "scores": [r.score for r in results],
        "settings": asdict(settings),
        "block_size": results[0].block_size,
        "window": list(results[0].window),
        "prior": str(prior.path),
        "device": str(prior.device),
        "network_calls_per_slice": results[0].parameters["network_calls"],
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    _figure(out / "demo.png", images, masks, sinograms, results, level.per_image, z_level.per_image)
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _sinogram(operator: Any, grid_image: np.ndarray) -> np.ndarray:
    """The noiseless measurement of one image on the prior's grid, for display."""
    import torch

    return operator.simulate(torch.from_numpy(grid_image.astype(np.float64))[None, None], seed=None)[0, 0].numpy()


def _figure(path: Path, images: np.ndarray, masks: np.ndarray, sinograms: list, results: list, aucs: list, z_aucs: list) -> None:
    """One row per slice: input with the lesion outline, sinogram, reconstruction, heatmap, flagged blocks, prior z-map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("input + lesion outline", "sparse-view sinogram", "KLIP reconstruction", "KLIP heatmap", "flagged blocks", "prior z-map")
    figure, axes = plt.subplots(len(images), len(columns), figsize=(2.2 * len(columns), 2.1 * len(images)), squeeze=False)
    for row, (image, mask, sinogram, result) in enumerate(zip(images, masks, sinograms, results, strict=True)):
        panels = (image, sinogram.T, result.reconstruction, result.heatmap, image, result.prior_z)
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, cmap={3: "inferno", 5: "viridis"}.get(column, "gray"), aspect="auto" if column == 1 else "equal",
                        vmin=0 if column in (0, 2, 4) else None, vmax=255 if column in (0, 2, 4) else None)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=8)
        axes[row, 0].contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
        axes[row, 4].imshow(np.ma.masked_equal(result.labels, 0), cmap="autumn", alpha=0.6)
        axes[row, 4].contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
        auc = aucs[row]
        axes[row, 3].set_ylabel(f"AUC {auc:.2f}" if auc == auc else "AUC n/a", fontsize=7)
        axes[row, 5].contour(mask, levels=[0.5], colors="white", linewidths=0.8)
        axes[row, 5].set_ylabel(f"AUC {z_aucs[row]:.2f}" if z_aucs[row] == z_aucs[row] else "AUC n/a", fontsize=7)
        axes[row, 0].set_ylabel(f"slice {row}, score {result.score:.3g}", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
