"""``--dask [SCHEDULER_ADDRESS]`` of ``score`` and ``lmd``: the stack scored on a Dask cluster into a Zarr store.

This module's top level imports neither torch nor dask (the command line starts without them);
:func:`run_dask` loads :mod:`napari_klip.cluster`, which imports dask.distributed and zarr when
used (a one-line error names the extra when they are missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.options import DEFAULT_DASK_TIMEOUT_S, DEFAULT_LMD_BATCH_SIZE
from ._common import follow, intensity_option, klip_config, lmd_config, map_options, operator_spec, positive_int, progress_bar

#: ``--dask`` given without an address: a LocalCluster on this machine.
LOCAL_CLUSTER = ""


def add_dask_options(parser: argparse.ArgumentParser) -> None:
    """``--dask [ADDRESS]``, ``--dask-workers``, ``--dask-threads``, ``--dask-timeout``."""
    group = parser.add_argument_group("Dask", "score the images on a Dask cluster; --out is then a Zarr store, and a re-run "
                                      "with the same settings skips the images already done (docs/dask.md)")
    group.add_argument("--dask", nargs="?", const=LOCAL_CLUSTER, metavar="SCHEDULER_ADDRESS",
                       help="a scheduler address (tcp://host:8786) or scheduler file (.json); without one, a LocalCluster "
                       "on this machine. Needs pip install 'napari-klip[dask]'")
    group.add_argument("--dask-workers", type=positive_int, help="LocalCluster: worker processes (default: Dask's choice for the cores)")
    group.add_argument("--dask-threads", type=positive_int, default=1, help="LocalCluster: tasks each worker runs at once (default 1)")
    group.add_argument("--dask-timeout", type=float, default=DEFAULT_DASK_TIMEOUT_S,
                       help=f"seconds to wait for the scheduler at SCHEDULER_ADDRESS (default {DEFAULT_DASK_TIMEOUT_S:g})")


def _absolute(path: Path | str | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


def run_dask(args: argparse.Namespace, method: str) -> int:
    """Score ``--input`` with ``method`` (``klip`` or ``lmd``) on the cluster ``--dask`` names."""
    from ..cluster.engine import connect, score_distributed
    from ..cluster.sources import open_source
    from ..cluster.spec import RunSpec

    if getattr(args, "measurement", None) is not None or args.input is None:
        raise ValueError("--dask scores the images of --input (a TIFF stack, folder, Zarr array or .npz); --measurement is not supported with it")
    if args.channels_last or args.compile:
        raise ValueError("--channels-last and --compile are not supported with --dask (the workers load the prior themselves)")
    if args.batch_images == "auto":
        raise ValueError("--dask needs a number for --batch-images (LMD: images per task), not 'auto'")
    common = {"prior": _absolute(args.model), "device": args.device, "precision": args.precision,
              "intensity": intensity_option(args), "tiling": args.tiling, "patch_batch": args.patch_batch}
    if method == "klip":
        operator, params = operator_spec(args)
        spec = RunSpec("klip", klip_config(args), operator=operator, operator_params=params, noise_sigma=args.noise_sigma,
                       **map_options(args), **common)
    else:
        spec = RunSpec("lmd", lmd_config(args), lpips_weights=_absolute(args.lpips_weights),
                       batch_size=DEFAULT_LMD_BATCH_SIZE if args.batch_images is None else args.batch_images, **common)
    source = open_source(args.input)
    address = args.dask or None
    with connect(address, n_workers=args.dask_workers, threads_per_worker=args.dask_threads, timeout=args.dask_timeout) as client:
        with progress_bar(len(source), f"{method.upper()} on Dask", unit="image") as bar:
            summary = score_distributed(source, args.out, spec, client, overwrite=args.overwrite, progress=follow(bar))
    print(f"{method.upper()} scored {summary.computed} image(s) on {summary.workers} Dask worker(s) "
          f"({summary.skipped} already done) in {summary.wall_time_s:.1f} s; results in {summary.path}")
    return 0
