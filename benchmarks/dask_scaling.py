"""Images per second of ``napari-klip score --dask`` on a LocalCluster of 1 and of 2 workers, against the serial run.

Usage::

    .venv/bin/python benchmarks/dask_scaling.py                    # 16 CT slices, KLIP 20 steps x 4 samples
    .venv/bin/python benchmarks/dask_scaling.py --images 32 --steps 50

Scores the bundled CT sample slices (repeated up to ``--images``) with the bundled prior three
ways in one run: serially in this process on one torch thread (the baseline), and through
:func:`napari_klip.cluster.score_distributed` on a ``LocalCluster`` of 1 and of 2 worker processes
(one thread each, as Dask's nanny starts them). Every worker loads the prior before the clock
starts (``client.run(worker_prior, spec)``), so the numbers are steady-state throughput, not
start-up. Checks that all three give identical heatmaps, and records the load average before and
after each run — on a shared machine other jobs take cores too, so read the ratios with it.

Also counts, for the cost estimate of ``docs/dask.md``, the FLOPs of one KLIP image at the default
settings (100 steps x 8 samples; torch's FlopCounterMode over the UNet forward) and the top-level
aten operations per forward, for the bundled 32x32 prior and a 256x256 ``base`` network.
Writes ``benchmarks/results/dask_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "dask_scaling.json"


def _loadavg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _serial(images: np.ndarray, spec) -> tuple[float, np.ndarray]:
    import torch

    from napari_klip.api.klip import score_stack
    from napari_klip.core.prior import resolve_prior

    torch.set_num_threads(1)
    prior = resolve_prior(spec.prior, spec.device)
    score_stack(images[:1], prior, config=spec.config, operator=spec.operator, operator_params=spec.operator_params)  # warm-up
    begin = time.perf_counter()
    results = score_stack(images, prior, config=spec.config, operator=spec.operator, operator_params=spec.operator_params)
    return time.perf_counter() - begin, np.stack([r.heatmap for r in results])


def _distributed(images: np.ndarray, spec, workers: int, scratch: Path) -> tuple[float, np.ndarray]:
    from napari_klip.cluster import connect, open_result, score_distributed
    from napari_klip.cluster.worker import worker_prior

    out = scratch / f"w{workers}.zarr"
    with connect(n_workers=workers, threads_per_worker=1) as client:
        client.wait_for_workers(workers)
        client.run(worker_prior, spec)  # every worker loads torch and the prior before the clock starts
        summary = score_distributed(images, out, spec, client)
    assert summary.computed == len(images) and summary.workers == workers
    return summary.wall_time_s, np.asarray(open_result(out)["heatmap"])


def _flops_per_image(prior, config) -> dict[str, float]:
    """FLOPs and aten calls of the UNet forwards one KLIP image takes (num_steps forwards of num_samples).

    FLOPs are linear in the batch, so one image's forward is counted and multiplied by ``num_samples``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, prior.channels, *prior.image_size))
    t = torch.full((1,), 500)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        prior.unet(x, t)
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        prior.unet(x, t)
    calls = [event for event in profile.events() if event.name.startswith("aten::") and event.cpu_parent is None]
    forward = float(counter.get_total_flops()) * config.num_samples
    return {"image_size": list(prior.image_size), "prior_parameters": sum(p.numel() for p in prior.unet.parameters()),
            "samples": config.num_samples, "flops_per_forward": forward, "forwards_per_image": config.num_steps,
            "flops_per_image": forward * config.num_steps, "top_level_aten_calls_per_forward": len(calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()

    from napari_klip.cluster import RunSpec
    from napari_klip.core.options import KlipConfig
    from napari_klip.core.samples import load_ct_sample

    slices, _ = load_ct_sample()
    images = np.resize(slices, (args.images, *slices.shape[1:]))
    spec = RunSpec("klip", KlipConfig(num_samples=args.samples, num_steps=args.steps, seed=0), device="cpu",
                   operator="ct", operator_params={"n_views": 24})
    report: dict = {"command": f"benchmarks/dask_scaling.py --images {args.images} --steps {args.steps} --samples {args.samples}",
                    "images": args.images, "image_shape": list(images.shape[1:]), "settings": spec.record(),
                    "cpu_count": os.cpu_count(), "runs": {}}
    scratch = Path(tempfile.mkdtemp(prefix="dask_scaling_"))
    try:
        heatmaps = {}
        for name, run in (("serial", lambda: _serial(images, spec)), ("1 worker", lambda: _distributed(images, spec, 1, scratch)),
                          ("2 workers", lambda: _distributed(images, spec, 2, scratch))):
            before = _loadavg()
            seconds, heatmaps[name] = run()
            report["runs"][name] = {"seconds": round(seconds, 2), "images_per_s": round(args.images / seconds, 3),
                                    "loadavg_before": before, "loadavg_after": _loadavg()}
            print(name, report["runs"][name], flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    runs = report["runs"]
    report["speedup_2_over_1_worker"] = round(runs["2 workers"]["images_per_s"] / runs["1 worker"]["images_per_s"], 3)
    report["speedup_1_worker_over_serial"] = round(runs["1 worker"]["images_per_s"] / runs["serial"]["images_per_s"], 3)
    report["identical_heatmaps"] = all(np.array_equal(heatmaps["serial"], other) for other in heatmaps.values())
    from napari_klip.core.prior import create_prior, resolve_prior

    report["default_klip_image"] = {
        "bundled 32x32 tiny prior": _flops_per_image(resolve_prior(None, "cpu"), KlipConfig()),
        "256x256 base network (random weights; FLOPs only)": _flops_per_image(create_prior(256, network="base"), KlipConfig()),
    }
    print(json.dumps({key: report[key] for key in ("speedup_2_over_1_worker", "speedup_1_worker_over_serial",
                                                   "identical_heatmaps", "default_klip_image")}, indent=2))
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
