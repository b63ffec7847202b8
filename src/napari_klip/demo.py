"""``napari-klip demo``: KLIP on real CT slices with inserted lesions, with the bundled prior.

The bundled sample (8 OrganAMNIST test CT slices, 28×28, one synthetic lesion each, with its
mask; ``data/samples/ATTRIBUTION.md``) is measured with simulated sparse-view CT, scored with
KLIP and the bundled default prior, and summarised in a figure (input with the lesion outline,
sinogram, reconstruction, heatmap, flagged blocks) and ``result.json`` with the localization
ROC-AUC of every slice (blocks inside the body, the image-level protocol of ``docs/klip.md``)
next to the same ROC-AUC of a map that only knows the distance to the image centre (lesions sit
in the body, which is central: the baseline KLIP must beat). Offline; about a minute on 2 CPU
cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEMO_OUTPUTS = ("demo.png", "result.json")


@dataclass
class DemoSettings:
    """What the demo runs (defaults: the KLIP paper's sampler, 24 CT views)."""

    n_views: int = 24
    num_samples: int = 8
    num_steps: int = 100
    seed: int = 0
    device: str = "auto"
    slices: int = 8
    #: Prior folder; ``None`` is the bundled default (an OrganAMNIST CT prior of your own also works).
    model: str | None = None
    #: KLIP guidance (``jacobian-free``, ``consistency`` or ``dps``; see docs/klip.md).
    guidance: str = "jacobian-free"


def load_ct_sample() -> tuple[np.ndarray, np.ndarray]:
    """The bundled CT slices with lesions ``(N, 28, 28)`` float32 (0–255 units) and their masks."""
    from ._sample_data import ct_lesions_sample

    (images, _, _), (masks, _, _) = ct_lesions_sample()
    return images.astype(np.float32), masks.astype(bool)


def run_demo(out: Path, settings: DemoSettings | None = None, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the demo and write ``demo.png`` and ``result.json`` into ``out``.

    Parameters
    ----------
    out : Path
        Output folder (created).
    settings : DemoSettings, optional
    overwrite : bool
        Replace earlier demo outputs in ``out``.
    progress : callable, optional
        ``progress(step, total)`` over all slices' sampling steps.

    Returns
    -------
    dict
        The content of ``result.json``.
    """
    from skimage.transform import resize

    from ._grid import mask_to_prior_grid
    from .api import build_operator, resolve_prior, score_image
    from .core.anomalies import foreground_mask
    from .core.klip import KlipConfig
    from .core.metrics import image_level_roc_auc

    settings = settings or DemoSettings()
    out = Path(out)
    existing = [name for name in DEMO_OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"'{out}' already holds {', '.join(existing)}; pass --overwrite to replace them")
    images, masks = load_ct_sample()
    images, masks = images[: settings.slices], masks[: settings.slices]
    start = time.perf_counter()
    prior = resolve_prior(settings.model, settings.device)
    operator = build_operator("ct", prior.image_size, {"n_views": settings.n_views})
    config = KlipConfig(num_samples=settings.num_samples, num_steps=settings.num_steps, guidance=settings.guidance, seed=settings.seed)
    results = []
    for index, image in enumerate(images):
        report = None if progress is None else (lambda update, index=index: progress(index * settings.num_steps + update.step, len(images) * settings.num_steps))
        results.append(score_image(image, operator=operator, prior=prior, config=config, progress=report))

    grid_images = [resize(image, prior.image_size, order=1, anti_aliasing=True, preserve_range=True) for image in images]
    grid_masks, bodies = [mask_to_prior_grid(m, prior.image_size) for m in masks], [foreground_mask(g) for g in grid_images]
    level = image_level_roc_auc([r.score_map for r in results], grid_masks, results[0].block_size, bodies)
    baseline = centre_baseline_auc(grid_masks, results[0].block_size, bodies)
    sinograms = [_sinogram(operator, grid) for grid in grid_images]
    summary = {
        "what": "KLIP localization of synthetic lesions in real CT slices (OrganAMNIST test split) from simulated sparse-view CT",
        "localization_auc_mean": level.mean_auc,
        "localization_auc_per_slice": level.per_image,
        "slices_with_both_classes": level.images_used,
        "centre_baseline_auc_mean": baseline.mean_auc,
        "centre_baseline_auc_per_slice": baseline.per_image,
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
    _figure(out / "demo.png", images, masks, sinograms, results, level.per_image)
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def centre_baseline_auc(masks: list[np.ndarray], block_size: int, body_masks: list[np.ndarray] | None = None) -> Any:
    """Image-level ROC-AUC of a map that scores each block by its closeness to the image centre.

    It knows nothing about the image; anomalies sit inside the body, which is central, so this is
    the number a localization map has to beat (same protocol as
    :func:`~napari_klip.core.metrics.image_level_roc_auc`, which it returns the result of).
    """
    from .core.metrics import image_level_roc_auc

    rows, columns = masks[0].shape[0] // block_size, masks[0].shape[1] // block_size
    centre = -centre_distance_map((rows, columns))
    return image_level_roc_auc([centre] * len(masks), masks, block_size, body_masks)


def centre_distance_map(shape: tuple[int, int]) -> np.ndarray:
    """Distance of every block to the centre of the grid (the baseline map of the demo)."""
    rows, columns = np.indices(shape, dtype=np.float64)
    return np.hypot(rows - (shape[0] - 1) / 2, columns - (shape[1] - 1) / 2)


def _sinogram(operator: Any, grid_image: np.ndarray) -> np.ndarray:
    """The noiseless measurement of one image on the prior's grid, for display."""
    import torch

    return operator.simulate(torch.from_numpy(grid_image.astype(np.float64))[None, None], seed=None)[0, 0].numpy()


def _figure(path: Path, images: np.ndarray, masks: np.ndarray, sinograms: list, results: list, aucs: list) -> None:
    """One row per slice: input with the lesion outline, sinogram, reconstruction, heatmap, flagged blocks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("input + lesion outline", "sparse-view sinogram", "KLIP reconstruction", "KLIP heatmap", "flagged blocks")
    figure, axes = plt.subplots(len(images), len(columns), figsize=(2.2 * len(columns), 2.1 * len(images)), squeeze=False)
    for row, (image, mask, sinogram, result) in enumerate(zip(images, masks, sinograms, results, strict=True)):
        panels = (image, sinogram.T, result.reconstruction, result.heatmap, image)
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, cmap="inferno" if column == 3 else "gray", aspect="auto" if column == 1 else "equal",
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
        axes[row, 0].set_ylabel(f"slice {row}, score {result.score:.3g}", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def open_demo_viewer(viewer: Any) -> Any:
    """Load the CT sample into ``viewer`` and dock the KLIP widget; returns the widget."""
    viewer.open_sample("napari-klip", "ct_lesions")
    _, widget = viewer.window.add_plugin_dock_widget("napari-klip", "KLIP detector")
    return widget
