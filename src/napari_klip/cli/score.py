"""``napari-klip score``: KLIP heatmaps, labels and reconstructions of an image, stack or measurement."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._common import (
    add_common_options,
    add_klip_options,
    add_prior_z_option,
    as_written,
    follow,
    klip_batch_images,
    klip_config,
    klip_operator,
    map_options,
    prior_z_settings,
    progress_bar,
    read_stack,
    SCORE_OUTPUTS,
    score_klip,
    scoring_prior,
    staged_results,
    tiling_options,
    working_grid_of,
    write_result_json,
    write_tiff,
)
from ._dask import add_dask_options

__all__ = ["SCORE_OUTPUTS", "register", "run_score"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``score`` subcommand."""
    score = commands.add_parser(
        "score",
        help="KLIP: anomaly heatmap, labels and score of an image, stack or measurement",
        description="Simulate a measurement of each image (or take a measured one) and score it with KLIP. "
        "Intensities are mapped to the prior's units by --intensity / --intensity-range (docs/intensities.md); a "
        "given --measurement is read in the units of the prior's intensity_range (napari-klip info MODEL shows it).",
    )
    score.add_argument("--input", type=Path, help="image or stack (TIFF, PNG, folder, FILE.npz:KEY)")
    score.add_argument("--measurement", type=Path, help="measured sinogram/image (or stack of them) to ingest instead of simulating")
    add_common_options(score)
    add_klip_options(score)
    add_prior_z_option(score, "written to prior_z.tif")
    add_dask_options(score)
    score.set_defaults(handler=run_score)


def run_score(args: argparse.Namespace) -> int:
    """``napari-klip score``: score a TIFF image/stack or a given measurement; write maps and JSON."""
    if args.input is None and args.measurement is None:
        raise ValueError("give --input (an image or stack) or --measurement (a measured sinogram/image)")
    prior_z_settings(args)  # bad z-map options fail before anything is read or written
    if args.dask is not None:
        from ._dask import run_dask

        return run_dask(args, "klip")
    from ..api.klip import score_measurements

    with staged_results(args.out, SCORE_OUTPUTS, args.overwrite) as staging:
        start = time.perf_counter()
        prior = scoring_prior(args)
        if args.measurement is not None:
            shape = tuple(read_stack(args.input, "--input").shape[1:]) if args.input else tuple(prior.image_size)
            operator = klip_operator(args, working_grid_of(prior, shape))
            measurements = read_stack(args.measurement, "--measurement")
            with progress_bar(len(measurements) * args.steps, "scoring") as bar:
                results = score_measurements(measurements, operator, prior, config=klip_config(args), output_shape=shape,
                                             batch_images=klip_batch_images(args), progress=follow(bar),
                                             **map_options(args), **tiling_options(args))
        else:
            results = score_klip(read_stack(args.input, "--input"), args, prior, "scoring")
        _write_score_outputs(staging, results, start, args.out)
    return 0


def _write_score_outputs(folder: Path, results: list, start: float, shown: Path) -> None:
    """KLIP's maps, trace and ``result.json`` into ``folder`` (the staging folder of ``shown``)."""
    write_tiff(folder / "heatmap.tif", as_written([r.heatmap for r in results]).astype(np.float32))
    write_tiff(folder / "labels.tif", as_written([r.labels for r in results]))
    write_tiff(folder / "reconstruction.tif", as_written([r.reconstruction for r in results]).astype(np.float32))
    if results[0].prior_z is not None:
        write_tiff(folder / "prior_z.tif", as_written([r.prior_z for r in results]).astype(np.float32))
    np.savez_compressed(
        folder / "trace.npz",
        energy=np.stack([r.trace.energy for r in results]),
        timesteps=results[0].trace.timesteps,
    )
    write_result_json(
        folder, results, start, "KLIP", shown,
        block_size=results[0].block_size,
        window=list(results[0].window),
        threshold=results[0].threshold,
        threshold_values=[r.threshold_value for r in results],
    )
