"""``napari-klip score`` and ``napari-klip evaluate``: KLIP (and LMD evaluation) over TIFF stacks from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._grid import mask_to_prior_grid

OPERATOR_NAMES = ("ct", "blur", "inpaint", "denoise", "downsample")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every scoring command has: prior, steps, seed, device, output."""
    parser.add_argument("--model", type=Path, help="prior folder (default: the bundled OrganAMNIST CT prior)")
    parser.add_argument("--steps", type=int, default=100, help="sampling steps, respaced over the prior's schedule (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


#: KLIP guidance modes (``core.klip.GUIDANCE_MODES``, spelled out here so the CLI starts without torch).
GUIDANCE_CHOICES = ("jacobian-free", "dps", "consistency")


def add_klip_options(parser: argparse.ArgumentParser) -> None:
    """KLIP's options (shared by ``score`` and ``evaluate``): operator, sampler, maps."""
    parser.add_argument("--operator", choices=OPERATOR_NAMES, default="ct", help="forward model (default ct)")
    parser.add_argument("--n-views", type=int, default=24, help="ct: equally spaced angles over [0, 180) (default 24)")
    parser.add_argument("--angles", type=float, nargs="+", help="ct: projection angles in degrees (overrides --n-views)")
    parser.add_argument("--kernel-size", type=int, default=9, help="blur: kernel side (default 9)")
    parser.add_argument("--sigma", type=float, default=2.0, help="blur: Gaussian sigma in pixels (default 2)")
    parser.add_argument("--factor", type=int, default=2, help="downsample: factor (default 2)")
    parser.add_argument("--mask", type=Path, help="inpaint: TIFF of known pixels (non-zero = known), prior-sized")
    parser.add_argument("--noise-sigma", type=float, default=0.0, help="simulated measurement noise (intensity units)")
    parser.add_argument("--samples", type=int, default=8, help="posterior samples per image (default 8)")
    parser.add_argument("--zeta", type=float, default=0.3, help="guidance step size zeta0 (default 0.3)")
    parser.add_argument("--sigma-y", type=float, default=1.0)
    parser.add_argument("--guidance", choices=GUIDANCE_CHOICES, default="jacobian-free",
                        help="guidance step: jacobian-free (the paper's DDPM sampler), dps (backpropagates through the "
                        "network), consistency (moves x0 by the operator's approximate inverse of the residual, e.g. "
                        "filtered back-projection for ct; not for blur). Default jacobian-free")
    parser.add_argument("--consistency-weight", type=float, default=1.0,
                        help="consistency guidance: fraction of the residual's approximate inverse added to x0 (default 1)")
    parser.add_argument("--block-size", type=int, help="block side on the prior's grid (default: ~16x16 blocks)")
    parser.add_argument("--window", type=int, nargs=2, metavar=("START", "STOP"), help="step window (default: [65, 85) of 100, scaled)")
    parser.add_argument("--threshold", default="median-multiple:3", help="label rule: median-multiple:K | percentile:P | value:V")


def _config(args: argparse.Namespace):
    from .core.klip import KlipConfig

    return KlipConfig(num_samples=args.samples, num_steps=args.steps, zeta=args.zeta, sigma_y=args.sigma_y, guidance=args.guidance,
                      consistency_weight=args.consistency_weight, seed=args.seed)


def _operator(args: argparse.Namespace, image_size: tuple[int, int]):
    from .api import build_operator

    if args.operator == "ct":
        params: dict[str, Any] = {"angles": args.angles} if args.angles else {"n_views": args.n_views}
    elif args.operator == "blur":
        params = {"kernel_size": args.kernel_size, "sigma": args.sigma}
    elif args.operator == "downsample":
        params = {"factor": args.factor}
    elif args.operator == "inpaint":
        if args.mask is None:
            raise ValueError("--operator inpaint needs --mask (a TIFF of known pixels)")
        import tifffile

        params = {"mask": tifffile.imread(args.mask) != 0}
    else:
        params = {}
    return build_operator(args.operator, image_size, params)


def _check_out(out: Path, names: tuple[str, ...], overwrite: bool) -> None:
    """Refuse to replace earlier outputs without ``--overwrite`` (the folder is made only when writing)."""
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"'{out}' already holds {', '.join(existing)}; pass --overwrite to replace them")


def _read_stack(path: Path, what: str) -> np.ndarray:
    from .core.data import read_images

    stack = read_images(path)
    if stack.ndim != 3:
        raise ValueError(f"{what} '{path}' must be grey images (H, W) or a stack (N, H, W); got shape {stack.shape}")
    return stack


def _progress_bar(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="step", disable=None)


def _map_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"block_size": args.block_size, "window": tuple(args.window) if args.window else None, "threshold": args.threshold}


def _score_each(items: np.ndarray, args: argparse.Namespace, description: str, score_one) -> list:
    """Score ``items`` one by one (slice ``i`` with seed ``seed + i``) behind one progress bar."""
    from dataclasses import replace

    results = []
    with _progress_bar(len(items) * args.steps, description) as bar:
        for index, item in enumerate(items):
            config = replace(_config(args), seed=args.seed + index)
            results.append(score_one(item, config, lambda update: bar.update(1)))
    return results


def _score_images(stack: np.ndarray, args: argparse.Namespace, prior, description: str) -> list:
    from .api import score_image

    operator = _operator(args, prior.image_size)
    return _score_each(
        stack, args, description,
        lambda image, config, progress: score_image(
            image, prior=prior, operator=operator, noise_sigma=args.noise_sigma, config=config, progress=progress, **_map_options(args)
        ),
    )


def _write_tiff(path: Path, array: np.ndarray) -> None:
    """Write a grey image or stack (never interpreted as RGB, whatever its shape)."""
    import tifffile

    tifffile.imwrite(path, array, photometric="minisblack")


SCORE_OUTPUTS = ("heatmap.tif", "labels.tif", "reconstruction.tif", "trace.npz", "result.json")


def run_score(args: argparse.Namespace) -> int:
    """``napari-klip score``: score a TIFF image/stack or a given measurement; write maps and JSON."""
    from .api import resolve_prior, score_measurement

    if args.input is None and args.measurement is None:
        raise ValueError("give --input (an image or stack) or --measurement (a measured sinogram/image)")
    _check_out(args.out, SCORE_OUTPUTS, args.overwrite)
    start = time.perf_counter()
    prior = resolve_prior(args.model, args.device)
    if args.measurement is not None:
        operator = _operator(args, prior.image_size)
        shape = tuple(_read_stack(args.input, "--input").shape[1:]) if args.input else tuple(prior.image_size)
        results = _score_each(
            _read_stack(args.measurement, "--measurement"), args, "scoring",
            lambda measurement, config, progress: score_measurement(
                measurement, operator, prior=prior, config=config, output_shape=shape, progress=progress, **_map_options(args)
            ),
        )
    else:
        results = _score_images(_read_stack(args.input, "--input"), args, prior, "scoring")
    as_written = (lambda arrays: arrays[0]) if len(results) == 1 else np.stack
    args.out.mkdir(parents=True, exist_ok=True)
    _write_tiff(args.out / "heatmap.tif", as_written([r.heatmap for r in results]).astype(np.float32))
    _write_tiff(args.out / "labels.tif", as_written([r.labels for r in results]))
    _write_tiff(args.out / "reconstruction.tif", as_written([r.reconstruction for r in results]).astype(np.float32))
    np.savez_compressed(
        args.out / "trace.npz",
        energy=np.stack([r.trace.energy for r in results]),
        timesteps=results[0].trace.timesteps,
    )
    write_result_json(
        args.out, results, start, "KLIP",
        block_size=results[0].block_size,
        window=list(results[0].window),
        threshold=results[0].threshold,
        threshold_values=[r.threshold_value for r in results],
    )
    return 0


def write_result_json(out: Path, results: list, start: float, method: str, **specific: Any) -> None:
    """Write ``result.json`` (scores, method-specific fields, parameters, time) and say where outputs went."""
    summary = {
        "scores": [r.score for r in results],
        **specific,
        "parameters": results[0].parameters,
        "slices": len(results),
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"{method} scored {len(results)} image(s); max score {max(summary['scores']):.4g}; outputs in {out}")


EVALUATE_OUTPUTS = ("metrics.json", "roc.png")


def run_evaluate(args: argparse.Namespace) -> int:
    """``napari-klip evaluate``: dataset- and image-level ROC-AUC of KLIP or LMD on ID vs OOD stacks."""
    from .api import resolve_prior
    from .core.anomalies import foreground_mask
    from .core.metrics import dataset_roc_auc, dataset_roc_curve, image_level_roc_auc

    id_stack, ood_stack = _read_stack(args.id, "--id"), _read_stack(args.ood, "--ood")
    labels = _read_stack(args.ood_labels, "--ood-labels") != 0 if args.ood_labels else None
    if labels is not None and labels.shape != ood_stack.shape:
        raise ValueError(f"--ood-labels has shape {labels.shape}, the OOD stack {ood_stack.shape}")
    bodies = _read_stack(args.body_masks, "--body-masks") != 0 if args.body_masks else None
    if bodies is not None and bodies.shape != ood_stack.shape:
        raise ValueError(f"--body-masks has shape {bodies.shape}, the OOD stack {ood_stack.shape}")
    _check_out(args.out, EVALUATE_OUTPUTS, args.overwrite)
    start = time.perf_counter()
    prior = resolve_prior(args.model, args.device)
    if args.method == "lmd":
        from .cli_lmd import score_stack

        id_results, ood_results = score_stack(id_stack, args, prior, "ID images"), score_stack(ood_stack, args, prior, "OOD images")
        # LMD's heatmap is per pixel on the input's grid: pixel "blocks" of side 1.
        score_maps, block, on_grid = [r.heatmap for r in ood_results], 1, (lambda masks: list(masks))
        map_settings: dict[str, Any] = {}
    else:
        id_results, ood_results = _score_images(id_stack, args, prior, "ID images"), _score_images(ood_stack, args, prior, "OOD images")
        score_maps, block = [r.score_map for r in ood_results], ood_results[0].block_size
        on_grid = lambda masks: [mask_to_prior_grid(mask, prior.image_size) for mask in masks]  # noqa: E731
        map_settings = {"block_size": block, "window": list(ood_results[0].window)}
    id_scores, ood_scores = [r.score for r in id_results], [r.score for r in ood_results]
    metrics: dict[str, Any] = {
        "method": args.method,
        "dataset_level_auc": dataset_roc_auc(id_scores, ood_scores),
        "id_images": len(id_results),
        "ood_images": len(ood_results),
        "id_scores": id_scores,
        "ood_scores": ood_scores,
    }
    if labels is not None:
        if bodies is None and args.auto_body_mask:
            bodies = np.stack([foreground_mask(image) for image in ood_stack])
        level = image_level_roc_auc(score_maps, on_grid(labels), block, None if bodies is None else on_grid(bodies))
        metrics.update(image_level_auc=level.mean_auc, image_level_per_image=level.per_image, image_level_images_used=level.images_used)
    metrics.update(parameters=ood_results[0].parameters, **map_settings, wall_time_s=round(time.perf_counter() - start, 2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    _roc_png(args.out / "roc.png", *dataset_roc_curve(id_scores, ood_scores), metrics["dataset_level_auc"], args.method.upper())
    message = f"{args.method.upper()} dataset-level ROC-AUC {metrics['dataset_level_auc']:.3f}"
    if "image_level_auc" in metrics:
        message += f", image-level ROC-AUC {metrics['image_level_auc']:.3f}"
    print(f"{message}; outputs in {args.out}")
    return 0


def _roc_png(path: Path, fpr: np.ndarray, tpr: np.ndarray, auc: float, method: str = "KLIP") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 4), dpi=100)
    axes.plot(fpr, tpr, label=f"{method} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title("dataset-level ROC (OOD = positive)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
