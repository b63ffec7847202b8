"""``napari-klip lmd``: LMD scores, distance heatmaps and reconstructions from the command line."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .cli_score import _check_out, _progress_bar, _read_stack, _write_tiff, write_result_json

LMD_OUTPUTS = ("heatmap.tif", "reconstructions.tif", "masks.tif", "result.json")


def add_lmd_options(parser: argparse.ArgumentParser) -> None:
    """LMD's own options (shared by ``lmd`` and ``evaluate --method lmd``)."""
    parser.add_argument("--reconstructions", type=int, default=10, help="LMD: reconstructions per image (default 10)")
    parser.add_argument(
        "--mask-kind",
        choices=("alternating-checkerboard", "checkerboard", "center", "random-patches"),
        default="alternating-checkerboard",
        help="LMD: lift mask (default alternating-checkerboard)",
    )
    parser.add_argument("--mask-grid", type=int, default=8, help="LMD: patches per side of the mask (default 8)")
    parser.add_argument("--lift", choices=("mask", "diffuse"), default="mask", help="LMD: mask+inpaint or diffuse+denoise")
    parser.add_argument("--diffuse-step", type=int, default=500, help="LMD: start step of --lift diffuse (default 500)")
    parser.add_argument(
        "--distance", choices=("lpips", "mse", "ssim", "prior-features"), default="lpips", help="LMD: image distance (default lpips)"
    )
    parser.add_argument("--aggregate", choices=("median", "mean"), default="median", help="LMD: over reconstructions (default median)")
    parser.add_argument("--lpips-weights", help="LMD: ImageNet AlexNet weights for LPIPS (.npz or torchvision .pth)")
    parser.add_argument("--batch-size", type=int, default=8, help="LMD: images per batched reverse process (default 8)")


def lmd_config(args: argparse.Namespace):
    """The :class:`~napari_klip.core.lmd.LmdConfig` the options describe."""
    from .core.lmd import LmdConfig

    return LmdConfig(
        num_reconstructions=args.reconstructions,
        num_steps=args.steps,
        mask=args.mask_kind,
        mask_grid=args.mask_grid,
        lift=args.lift,
        diffuse_step=args.diffuse_step,
        distance=args.distance,
        aggregate=args.aggregate,
        seed=args.seed,
    )


def score_stack(stack: np.ndarray, args: argparse.Namespace, prior: Any, description: str) -> list:
    """LMD results of every image of ``stack`` behind one progress bar."""
    from .api import lmd_score_stack

    batches = -(-len(stack) // max(args.batch_size, 1))
    with _progress_bar(batches * args.steps, description) as bar:

        def progress(update: Any) -> None:
            bar.total = update.total
            bar.update(update.step - bar.n)

        return lmd_score_stack(
            stack, prior=prior, config=lmd_config(args), lpips_weights=args.lpips_weights, batch_size=args.batch_size, progress=progress
        )


def run_lmd(args: argparse.Namespace) -> int:
    """``napari-klip lmd``: score a TIFF image/stack with LMD; write heatmaps, reconstructions and JSON."""
    from .api import resolve_prior

    stack = _read_stack(args.input, "--input")
    _check_out(args.out, LMD_OUTPUTS, args.overwrite)
    start = time.perf_counter()
    prior = resolve_prior(args.model, args.device)
    results = score_stack(stack, args, prior, "LMD")
    as_written = (lambda arrays: arrays[0]) if len(results) == 1 else np.stack
    args.out.mkdir(parents=True, exist_ok=True)
    _write_tiff(args.out / "heatmap.tif", as_written([r.heatmap for r in results]).astype(np.float32))
    _write_tiff(args.out / "reconstructions.tif", as_written([r.reconstructions for r in results]).astype(np.float32))
    _write_tiff(args.out / "masks.tif", results[0].masks.astype(np.uint8))
    write_result_json(args.out, results, start, "LMD", distances=[r.distances.tolist() for r in results])
    return 0
