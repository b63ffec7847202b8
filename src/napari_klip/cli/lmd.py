"""``napari-klip lmd``: LMD scores, distance heatmaps and reconstructions from the command line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._common import LMD_OUTPUTS, add_common_options, add_lmd_options, as_written, read_stack, score_lmd, scoring_prior, staged_results, write_result_json, write_tiff
from ._dask import add_dask_options

__all__ = ["LMD_OUTPUTS", "register", "run_lmd"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``lmd`` subcommand."""
    lmd = commands.add_parser(
        "lmd",
        help="LMD: out-of-distribution score, distance heatmap and reconstructions of an image or stack",
        description="Mask each image (alternating checkerboard by default), inpaint it with the prior several times, and "
        "score the median LPIPS/SSIM/MSE/prior-feature distance to the original. Intensities are mapped to the prior's "
        "units by --intensity / --intensity-range (docs/intensities.md).",
    )
    lmd.add_argument("--input", required=True, type=Path, help="image or stack (TIFF, PNG, folder, FILE.npz:KEY)")
    add_common_options(lmd)
    add_lmd_options(lmd)
    add_dask_options(lmd)
    lmd.set_defaults(handler=run_lmd)


def run_lmd(args: argparse.Namespace) -> int:
    """``napari-klip lmd``: score a TIFF image/stack with LMD; write heatmaps, reconstructions and JSON."""
    if args.dask is not None:
        from ._dask import run_dask

        return run_dask(args, "lmd")
    stack = read_stack(args.input, "--input")
    with staged_results(args.out, LMD_OUTPUTS, args.overwrite) as staging:
        start = time.perf_counter()
        prior = scoring_prior(args)
        results = score_lmd(stack, args, prior, "LMD")
        write_tiff(staging / "heatmap.tif", as_written([r.heatmap for r in results]).astype(np.float32))
        write_tiff(staging / "reconstructions.tif", as_written([r.reconstructions for r in results]).astype(np.float32))
        write_tiff(staging / "masks.tif", results[0].masks.astype(np.uint8))
        write_result_json(staging, results, start, "LMD", args.out, distances=[r.distances.tolist() for r in results])
    return 0
