"""``napari-klip evaluate``: dataset- and image-level ROC-AUC of KLIP or LMD on ID vs OOD stacks."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.options import METHODS
from ._common import (
    add_common_options, add_klip_options, add_lmd_options, add_prior_z_option, intensity_option, print_notes, prior_z_settings, read_stack,
    score_klip, score_lmd, scoring_prior,
)

EVALUATE_OUTPUTS = ("metrics.json", "roc.png")


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    evaluate = commands.add_parser(
        "evaluate",
        help="KLIP or LMD ROC-AUC on ID vs OOD images (dataset level; image level with pixel labels)",
        description="Score ID and OOD stacks; dataset-level ROC-AUC of the image scores (KLIP: max over blocks; LMD: the "
        "aggregated distance) and, with --ood-labels, the image-level ROC-AUC of block (KLIP) or pixel (LMD heatmap) "
        "scores inside the body, averaged over images.",
    )
    evaluate.add_argument("--id", required=True, type=Path, help="in-distribution images")
    evaluate.add_argument("--ood", required=True, type=Path, help="out-of-distribution images")
    evaluate.add_argument("--ood-labels", type=Path, help="pixel masks of the anomalies (same shape as --ood)")
    evaluate.add_argument("--body-masks", type=Path, help="body/foreground masks for the image-level ROC (same shape as --ood)")
    evaluate.add_argument("--auto-body-mask", action="store_true", help="compute body masks by Otsu thresholding")
    evaluate.add_argument("--method", choices=METHODS, default=METHODS[0], help=f"detector (default {METHODS[0]})")
    add_common_options(evaluate)
    add_klip_options(evaluate)
    add_prior_z_option(evaluate, "its ROC-AUCs (the same blocks as KLIP's) go into metrics.json beside KLIP's (--method klip)")
    add_lmd_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """``napari-klip evaluate``: dataset- and image-level ROC-AUC of KLIP or LMD on ID vs OOD stacks."""
    from ..core.anomalies import foreground_mask
    from ..core.intensity import resolve_intensity
    from ..core.metrics import baseline_image_level_aucs, dataset_roc_auc, dataset_roc_curve, image_level_roc_auc
    from ..core.outputs import staged_output

    id_stack, ood_stack = read_stack(args.id, "--id"), read_stack(args.ood, "--ood")
    labels = read_stack(args.ood_labels, "--ood-labels") != 0 if args.ood_labels else None
    if labels is not None and labels.shape != ood_stack.shape:
        raise ValueError(f"--ood-labels has shape {labels.shape}, the OOD stack {ood_stack.shape}")
    bodies = read_stack(args.body_masks, "--body-masks") != 0 if args.body_masks else None
    if bodies is not None and bodies.shape != ood_stack.shape:
        raise ValueError(f"--body-masks has shape {bodies.shape}, the OOD stack {ood_stack.shape}")
    if prior_z_settings(args) is not None and args.method != "klip":
        raise ValueError("--prior-z goes with --method klip (the map is computed beside KLIP's)")
    with staged_output(args.out, EVALUATE_OUTPUTS, args.overwrite) as staging:
        start = time.perf_counter()
        prior = scoring_prior(args)
        score = score_lmd if args.method == "lmd" else score_klip
        # One intensity mapping for both stacks, so ID and OOD images reach the prior alike.
        intensity = resolve_intensity(np.concatenate([id_stack.ravel(), ood_stack.ravel()]), prior.metadata, intensity_option(args))
        id_results = score(id_stack, args, prior, "ID images", intensity)
        ood_results = score(ood_stack, args, prior, "OOD images", intensity)
        if args.method == "lmd":
            # LMD's heatmap is per pixel on the input's grid: pixel "blocks" of side 1.
            score_maps, block = [r.heatmap for r in ood_results], 1
            map_settings: dict[str, Any] = {}
            reconstructed = [r.reconstructions.mean(axis=0) for r in ood_results]
        else:
            # KLIP's blocks count input pixels: score maps, labels and bodies all live on the input's grid.
            score_maps, block = [r.score_map for r in ood_results], ood_results[0].block_size
            map_settings = {"block_size": block, "window": list(ood_results[0].window)}
            reconstructed = [r.reconstruction for r in ood_results]
        seen = ([np.asarray(image, dtype=np.float64) for image in ood_stack] if args.method == "lmd"
                else [r.observed for r in ood_results])
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
            grid_labels, grid_bodies = list(labels), None if bodies is None else list(bodies)
            level = image_level_roc_auc(score_maps, grid_labels, block, grid_bodies)
            metrics.update(image_level_auc=level.mean_auc, image_level_per_image=level.per_image, image_level_images_used=level.images_used)
            if seen[0].ndim == 2:  # the baselines are defined for grey images
                baselines = {name: result.mean_auc for name, result in
                             baseline_image_level_aucs(seen, reconstructed, grid_labels, block, grid_bodies).items()}
                metrics.update(baseline_image_level_auc=baselines, margin_over_best_baseline=level.mean_auc - max(baselines.values()))
        if args.prior_z:
            metrics["prior_z"] = _prior_z_metrics(id_results, ood_results, block, labels, bodies, metrics.get("baseline_image_level_auc"))
        metrics.update(parameters=ood_results[0].parameters, **map_settings, wall_time_s=round(time.perf_counter() - start, 2))
        (staging / "metrics.json").write_text(json.dumps(_without_nan(metrics), indent=2, default=str, allow_nan=False) + "\n")
        _roc_png(staging / "roc.png", *dataset_roc_curve(id_scores, ood_scores), metrics["dataset_level_auc"], args.method.upper())
        message = f"{args.method.upper()} dataset-level ROC-AUC {metrics['dataset_level_auc']:.3f}"
        if metrics.get("baseline_image_level_auc"):
            beside = ", ".join(f"{name} {value:.3f}" for name, value in metrics["baseline_image_level_auc"].items())
            message += (f", image-level ROC-AUC {metrics['image_level_auc']:.3f} (baselines: {beside}; "
                        f"margin over the best {metrics['margin_over_best_baseline']:+.3f})")
        elif "image_level_auc" in metrics:
            message += f", image-level ROC-AUC {metrics['image_level_auc']:.3f}"
        if "prior_z" in metrics:
            z = metrics["prior_z"]
            message += f"; prior z-map: dataset-level {z['dataset_level_auc']:.3f}"
            if "image_level_auc" in z:
                message += f", image-level {z['image_level_auc']:.3f}"
            if "margin_over_best_baseline" in z:
                message += f" (margin over the best baseline {z['margin_over_best_baseline']:+.3f})"
        print_notes(ood_results[0].parameters)
        print(f"{message}; outputs in {args.out}")
    return 0


def _prior_z_metrics(id_results: list, ood_results: list, block: int, labels: np.ndarray | None, bodies: np.ndarray | None,
                     baselines: dict[str, float] | None) -> dict[str, Any]:
    """The prior z-map's ROC-AUCs on KLIP's blocks: image score = its largest block, image level inside the bodies."""
    from ..core.metrics import block_means, dataset_roc_auc, image_level_roc_auc

    id_maps = [block_means(r.prior_z, block) for r in id_results]
    ood_maps = [block_means(r.prior_z, block) for r in ood_results]
    z = {"dataset_level_auc": dataset_roc_auc([float(m.max()) for m in id_maps], [float(m.max()) for m in ood_maps])}
    if labels is not None:
        level = image_level_roc_auc(ood_maps, list(labels), block, None if bodies is None else list(bodies))
        z.update(image_level_auc=level.mean_auc, image_level_per_image=level.per_image)
        if baselines:
            z["margin_over_best_baseline"] = level.mean_auc - max(baselines.values())
    return z


def _without_nan(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every NaN (an AUC that is undefined) as ``null``, and a note saying why (JSON has no NaN)."""
    undefined: list[str] = []

    def clean(value: Any, name: str) -> Any:
        if isinstance(value, float) and not np.isfinite(value):
            undefined.append(name)
            return None
        if isinstance(value, list):
            return [clean(item, name) for item in value]
        if isinstance(value, dict):
            return {key: clean(item, f"{name}.{key}") for key, item in value.items()}
        return value

    cleaned = {key: clean(value, key) for key, value in metrics.items()}
    if undefined:
        cleaned["notes"] = [
            f"null = undefined: {', '.join(dict.fromkeys(undefined))} — an ROC-AUC needs both classes (e.g. an OOD image whose "
            "--ood-labels has no positive pixel, or no negative one, within the body mask)"
        ]
    return cleaned


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
