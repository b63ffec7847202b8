"""Scoring throughput: today's per-slice fp32 path vs images batched per network call (fp32, bf16).

One run measures, on the same stack and interleaved so that every path sees the same machine
load, ``--repeats`` rounds of

* KLIP ``score_stack`` (CT, ``--n-views`` views, ``--samples`` samples, ``--klip-steps`` steps):
  ``batch_images=1`` at fp32 (the per-slice path), then ``batch_images=auto`` at fp32 and bf16;
* LMD ``lmd_score_stack`` (``--reconstructions``, ``--lmd-steps``, MSE distance): ``batch_images=1``
  at fp32, then ``auto`` at fp32 and bf16;

and reports images/s (median over repeats), the speed-up over the per-slice fp32 path, the
dataset-level ROC-AUC of every path (the stack is half ID, half OOD) and how far its scores are
from the per-slice path's. It then counts the FLOPs of one UNet forward row
(``torch.utils.flop_counter.FlopCounterMode``), times the forward at the per-slice and the batched
row counts, and sets the achieved FLOP/s against the machine's measured fp32 and bf16
``torch.matmul`` peak (best of square GEMMs).

Data: the bundled OrganAMNIST prior (32², intensities 0–255); the stack is the first ``--images/2``
OrganAMNIST test slices (ID, 28²) and the first ``--images/2`` MNIST test digits (OOD, 28²) from
``../shared/data``.

Example (the reported CPU run)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/throughput.py --threads 2 \\
        --out benchmarks/results/throughput_cpu.json

On a GPU (TF32 matmuls, bf16 autocast, the forward also replayed as a CUDA graph)::

    .venv/bin/python benchmarks/throughput.py --device cuda --cuda-graphs --images 256 \\
        --out benchmarks/results/throughput_cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: The measured stacks (``--stack``): 28² slices on the bundled 32² prior, or 256² images on the bundled patch prior.
STACKS = ("organ-mnist-28", "cell-gravel-256")
PATCH_PRIOR = "cell32-patch-tiny-cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="stack size (half ID, half OOD)")
    parser.add_argument("--samples", type=int, default=8, help="KLIP posterior samples per image")
    parser.add_argument("--klip-steps", type=int, default=10)
    parser.add_argument("--n-views", type=int, default=24)
    parser.add_argument("--reconstructions", type=int, default=10, help="LMD reconstructions per image")
    parser.add_argument("--lmd-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--cuda-graphs", action="store_true", help="cuda: also time the forward replayed as a CUDA graph")
    parser.add_argument("--compile", action="store_true", help="also time the forward under torch.compile (slow to compile)")
    parser.add_argument("--skip-scoring", action="store_true", help="only the forward and GEMM measurements")
    parser.add_argument("--paths", nargs="+", help="only these scoring paths (e.g. klip/per-slice-fp32 klip/batched-fp32); "
                        "each method's per-slice-fp32 path is always kept as the baseline")
    parser.add_argument("--data-dir", type=Path, default=SHARED,
                        help="folder with organamnist.npz and mnist.npz (key test_images; default ../shared/data)")
    parser.add_argument("--stack", choices=STACKS, default=STACKS[0],
                        help="organ-mnist-28: the bundled 32² prior on 28² OrganAMNIST (ID) / MNIST (OOD) slices, CT; "
                        "cell-gravel-256: the bundled patch prior cell32-patch-tiny-cpu at native 256² on crops of "
                        "skimage.data.cell() (ID) / gravel() (OOD), denoising operator, batched path at --patch-images")
    parser.add_argument("--patch-images", type=int, default=4,
                        help="cell-gravel-256: images per batch of the batched paths (auto picks 1 at 256²: one image's tiles fill a call)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def hardware(device: Any) -> dict[str, Any]:
    """CPU model, cores, torch threads and version; the GPU's name on CUDA."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info = {"cpu": model, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], device: Any) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    value = function()
    synchronize(device)
    return time.perf_counter() - start, value


def best_time(function: Callable[[], Any], device: Any, repeats: int) -> float:
    function()  # warm-up
    return min(timed(function, device)[0] for _ in range(repeats))


class NetworkClock:
    """Counts the rows sent through ``prior.predict_noise`` and the seconds spent in it, while active.

    On the CPU the clock gives the share of a scoring path spent in the network, and with it a
    bound on what any batching can gain (it can at best run those rows at the best forward rate
    and remove everything else). On CUDA only rows are counted: timing each call would need a
    synchronization that changes what is measured.
    """

    def __init__(self, prior: Any, device: Any) -> None:
        self.prior, self.device = prior, device
        self.rows, self.seconds = 0, 0.0

    def __enter__(self) -> "NetworkClock":
        original = self.prior.predict_noise

        def counted(noisy: Any, timesteps: Any) -> Any:
            start = time.perf_counter()
            predicted = original(noisy, timesteps)
            self.seconds += time.perf_counter() - start
            self.rows += int(noisy.shape[0])
            return predicted

        self.prior.predict_noise = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.prior.predict_noise  # the class's method again

    def report(self) -> dict[str, Any]:
        return {"rows": self.rows, "seconds": self.seconds if self.device.type == "cpu" else None}


def load_stack(count: int, data_dir: Path = SHARED) -> tuple[np.ndarray, int]:
    """``count`` slices: the first half OrganAMNIST test (ID), the rest MNIST test (OOD); and the ID count."""
    in_domain = count // 2
    organ = np.load(data_dir / "organamnist.npz")["test_images"][:in_domain]
    digits = np.load(data_dir / "mnist.npz")["test_images"][: count - in_domain]
    if len(organ) < in_domain or len(digits) < count - in_domain:
        raise SystemExit(f"{data_dir} holds only {len(organ)} OrganAMNIST and {len(digits)} MNIST test images; --images {count} needs {in_domain} and {count - in_domain}")
    return np.concatenate([organ, digits]).astype(np.float32), in_domain


def load_patch_stack(count: int, side: int = 256) -> tuple[np.ndarray, int]:
    """``count`` ``side``² images: the first half crops of ``skimage.data.cell()`` (ID), the rest of ``gravel()`` (OOD), in 0–255."""
    from skimage import data

    in_domain = count // 2

    def crops(image: np.ndarray, number: int) -> list[np.ndarray]:
        rows = np.linspace(0, image.shape[0] - side, max(1, int(np.ceil(np.sqrt(number))))).astype(int)
        cols = np.linspace(0, image.shape[1] - side, max(1, int(np.ceil(number / len(rows))))).astype(int)
        return [image[r : r + side, c : c + side] for r in rows for c in cols][:number]

    images = crops(data.cell(), in_domain) + crops(data.gravel(), count - in_domain)
    return np.stack(images).astype(np.float32), in_domain


def scoring_paths(args: argparse.Namespace, prior: Any, stack: np.ndarray) -> dict[str, Callable[[], list[float]]]:
    """Each measured path: a callable returning the image scores of the stack."""
    from napari_klip.api import lmd_score_stack, score_stack
    from napari_klip.core.klip import KlipConfig
    from napari_klip.core.lmd import LmdConfig

    klip = KlipConfig(num_samples=args.samples, num_steps=args.klip_steps, seed=0)
    lmd = LmdConfig(num_reconstructions=args.reconstructions, num_steps=args.lmd_steps, distance="mse", seed=0)

    patches = args.stack == "cell-gravel-256"
    operator = {"operator": "denoise"} if patches else {"operator": "ct", "operator_params": {"n_views": args.n_views}}
    batched = args.patch_images if patches else "auto"

    def klip_path(batch: Any, precision: str) -> Callable[[], list[float]]:
        def run() -> list[float]:
            prior.set_precision(precision)
            results = score_stack(stack, prior, config=klip, batch_images=batch, **operator)
            return [r.score for r in results]

        return run

    def lmd_path(batch: Any, precision: str) -> Callable[[], list[float]]:
        def run() -> list[float]:
            prior.set_precision(precision)
            return [r.score for r in lmd_score_stack(stack, prior, config=lmd, batch_images=batch)]

        return run

    return {
        "klip/per-slice-fp32": klip_path(1, "fp32"),
        "klip/batched-fp32": klip_path(batched, "fp32"),
        "klip/batched-bf16": klip_path(batched, "bf16"),
        "lmd/per-slice-fp32": lmd_path(1, "fp32"),
        "lmd/batched-fp32": lmd_path(batched, "fp32"),
        "lmd/batched-bf16": lmd_path(batched, "bf16"),
    }


def measure_scoring(args: argparse.Namespace, prior: Any, device: Any) -> dict[str, Any]:
    from napari_klip.core.batching import resolve_batch_images
    from napari_klip.core.metrics import dataset_roc_auc

    patches = args.stack == "cell-gravel-256"
    stack, in_domain = load_patch_stack(args.images) if patches else load_stack(args.images, args.data_dir)
    paths = scoring_paths(args, prior, stack)
    if args.paths:
        unknown = set(args.paths) - set(paths)
        if unknown:
            raise SystemExit(f"unknown paths {sorted(unknown)}; choose from {sorted(paths)}")
        keep = set(args.paths) | {f"{name.split('/')[0]}/per-slice-fp32" for name in args.paths}
        paths = {name: run for name, run in paths.items() if name in keep}
    times: dict[str, list[float]] = {name: [] for name in paths}
    scores: dict[str, list[float]] = {}
    network: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    for _ in range(args.repeats):  # interleaved: every path once per round
        for name, run in paths.items():
            with NetworkClock(prior, device) as clock:
                elapsed, values = timed(run, device)
            times[name].append(elapsed)
            network[name].append(clock.report())
            print(f"{name}: {elapsed:.1f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            scores.setdefault(name, values)
    prior.set_precision("fp32")
    rows = {}
    for name in paths:
        method = name.split("/")[0]
        baseline = f"{method}/per-slice-fp32"
        median = statistics.median(times[name])
        values, reference = np.asarray(scores[name]), np.asarray(scores[baseline])
        auc = dataset_roc_auc(values[:in_domain].tolist(), values[in_domain:].tolist())
        rows[name] = {
            "seconds": times[name],
            "images_per_s": len(stack) / median,
            "speedup_vs_per_slice_fp32": statistics.median(times[baseline]) / median,
            "dataset_auc": auc,
            "auc_minus_per_slice": auc - dataset_roc_auc(reference[:in_domain].tolist(), reference[in_domain:].tolist()),
            "max_relative_score_difference": float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), 1e-12))),
            "network": network[name],
        }
    if patches:
        from napari_klip.core.patches import for_grid, images_per_call

        tiled = for_grid(prior, stack.shape[1:3])
        return {
            "stack": {"images": len(stack), "id": f"skimage cell() 256² crops ×{in_domain}", "ood": f"skimage gravel() 256² crops ×{len(stack) - in_domain}",
                      "size": "256x256", "prior": PATCH_PRIOR, "tiles_per_image_per_step": tiled.tiles_per_image(), "patch_batch": tiled.patch_batch},
            "klip_settings": {"samples": args.samples, "steps": args.klip_steps, "operator": "denoise", "batched_images": args.patch_images,
                              "batch_images_auto": images_per_call(tiled, args.samples, len(stack))},
            "lmd_settings": {"reconstructions": args.reconstructions, "steps": args.lmd_steps, "distance": "mse", "batched_images": args.patch_images,
                             "batch_images_auto": images_per_call(tiled, args.reconstructions, len(stack))},
            "paths": rows,
        }
    return {
        "stack": {"images": len(stack), "id": f"OrganAMNIST test[:{in_domain}]", "ood": f"MNIST test[:{len(stack) - in_domain}]", "size": "28x28"},
        "klip_settings": {"samples": args.samples, "steps": args.klip_steps, "operator": f"ct, {args.n_views} views",
                          "batch_images_auto": resolve_batch_images("auto", prior, args.samples, len(stack))},
        "lmd_settings": {"reconstructions": args.reconstructions, "steps": args.lmd_steps, "distance": "mse",
                         "batch_images_auto": resolve_batch_images("auto", prior, args.reconstructions, len(stack))},
        "paths": rows,
    }


def gemm_peak(device: Any, dtype: Any, repeats: int) -> float:
    """Best FLOP/s of square ``torch.matmul`` at a few sizes."""
    import torch

    best = 0.0
    for size in (512, 1024, 2048):
        a = torch.randn((size, size), device=device).to(dtype)
        b = torch.randn((size, size), device=device).to(dtype)
        best = max(best, 2 * size**3 / best_time(lambda: a @ b, device, repeats))
    return best


def measure_forward(args: argparse.Namespace, prior: Any, device: Any) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_klip.core.batching import resolve_batch_images

    shape = (prior.channels, *prior.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        prior.predict_noise(torch.zeros((1, *shape), device=device), 500)
    flops_per_row = counter.get_total_flops()
    if args.stack == "cell-gravel-256":  # the patch prior's calls: one image's tiles (per slice), the full patch budget (batched)
        from napari_klip.core.patches import for_grid

        tiled = for_grid(prior, (256, 256))
        per_slice, batched = min(args.samples * tiled.tiles_per_image(), tiled.patch_batch), tiled.patch_batch
    else:
        per_slice, batched = args.samples, resolve_batch_images("auto", prior, args.samples, args.images) * args.samples
    peaks = {"fp32": gemm_peak(device, torch.float32, 5), "bf16": gemm_peak(device, torch.bfloat16, 5)}
    forward: dict[str, Any] = {"flops_per_row": flops_per_row, "gemm_peak_flops": peaks, "rows": {}}
    for precision, channels_last in (("fp32", False), ("bf16", False), ("fp32", True)):
        prior.set_precision(precision).set_channels_last(channels_last)
        for rows in sorted({per_slice, batched}):
            x = torch.randn((rows, *shape), device=device)
            with torch.no_grad():
                seconds = best_time(lambda: prior.predict_noise(x, 500), device, 5)
            achieved = flops_per_row * rows / seconds
            forward["rows"][f"{precision}{'-channels-last' if channels_last else ''}/{rows}"] = {
                "seconds": seconds, "rows_per_s": rows / seconds, "flops_per_s": achieved,
                "fraction_of_fp32_peak": achieved / peaks["fp32"], "fraction_of_bf16_peak": achieved / peaks["bf16"],
            }
    prior.set_precision("fp32").set_channels_last(False)
    x = torch.randn((batched, *shape), device=device)
    timestep = torch.full((batched,), 500, device=device)
    if args.compile:
        compiled = torch.compile(prior.unet)
        with torch.no_grad():
            compile_s, _ = timed(lambda: compiled(x, timestep).sample, device)
            seconds = best_time(lambda: compiled(x, timestep).sample, device, 5)
        forward["compiled_fp32"] = {"compile_s": compile_s, "seconds": seconds, "rows": batched}
    if args.cuda_graphs and device.type == "cuda":
        forward["cuda_graph_fp32"] = cuda_graph_forward(prior, x, timestep, flops_per_row)
    return forward


def cuda_graph_forward(prior: Any, x: Any, timestep: Any, flops_per_row: int) -> dict[str, Any]:
    """The forward captured once as a CUDA graph and replayed (no per-kernel launch cost)."""
    import torch

    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            prior.unet(static_x, timestep)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        prior.unet(static_x, timestep)
    seconds = best_time(graph.replay, x.device, 20)
    return {"seconds": seconds, "rows": int(x.shape[0]), "flops_per_s": flops_per_row * x.shape[0] / seconds}


def batching_bound(paths: dict[str, Any], forward: dict[str, Any]) -> dict[str, Any]:
    """Per method: the per-slice path's share of time in the network, and the most batching could gain.

    The bound assumes a batched path that spends no time outside the network and runs every
    network row at the best rate the forward measurement found (any precision, layout and call
    size): ``per-slice seconds / (rows / best rows per second)``. A measured speed-up above it
    would mean the clock or the forward measurement is wrong.
    """
    best_rate = max(row["rows_per_s"] for row in forward["rows"].values())
    bounds = {}
    for name, row in paths.items():
        method, path = name.split("/")
        if path != "per-slice-fp32":
            continue
        seconds = statistics.median(row["seconds"])
        network_seconds = statistics.median(clock["seconds"] for clock in row["network"])
        rows = row["network"][0]["rows"]
        bounds[method] = {
            "per_slice_seconds": seconds,
            "network_seconds": network_seconds,
            "network_share": network_seconds / seconds,
            "network_rows": rows,
            "best_forward_rows_per_s": best_rate,
            "speedup_bound": seconds / (rows / best_rate),
        }
    return bounds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from napari_klip.core.prior import resolve_prior

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(args.threads)
    prior = resolve_prior(PATCH_PRIOR if args.stack == "cell-gravel-256" else None, args.device)
    report: dict[str, Any] = {
        "command": "benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": hardware(device),
        "loadavg_start": os.getloadavg(),
        "nice": os.nice(0),
    }
    start = time.perf_counter()
    if not args.skip_scoring:
        report["scoring"] = measure_scoring(args, prior, device)
    report["forward"] = measure_forward(args, prior, device)
    if "scoring" in report and device.type == "cpu":
        report["scoring"]["batching_bound"] = batching_bound(report["scoring"]["paths"], report["forward"])
    report["loadavg_end"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - start
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return report


if __name__ == "__main__":
    main()
