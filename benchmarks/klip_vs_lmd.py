"""KLIP and LMD side by side as whole-image OOD detectors on the MNIST family (issue #6).

Prior ``priors/mnist32-tiny-cpu``; ID = the first ``--images`` held-out MNIST test images, OOD =
the first ``--images`` held-out KMNIST and Fashion-MNIST images (the splits and 28² → 32² resize
of ``benchmarks/lmd_mnist_family.py``; 0–255 units, the prior's intensity range).

KLIP (``score_image``) scores every image with two operators:

* ``denoise`` with ``noise_sigma = 0`` (A = identity, the whole image is measured);
* ``inpaint`` with a fixed chessboard mask of known pixels: the complement of LMD's first
  alternating-checkerboard mask (8 × 8 grid of 4 × 4-pixel patches), so KLIP measures the half
  of the image that LMD's first reconstruction keeps and must explain the rest from the prior.

Whole-image scores: ``result.score`` (the paper's max over block scores, default block size and
step window) and, from the same trace without new sampling, the mean over pixels of the energy
summed over the window (``mean-energy``). ROC-AUC with OOD as the positive class.

LMD: by default the numbers of ``benchmarks/results/lmd_mnist_family_mnist.json`` are reused
(same prior, same images, 10 reconstructions × 20 steps); ``--recompute-lmd`` runs
``lmd_score_stack`` (MSE distance) on the same images instead.

Examples (the reported CPU runs; see docs/benchmarks.md)::

    .venv/bin/python benchmarks/klip_vs_lmd.py --images 100 --samples 4 --steps 50 --threads 2
    .venv/bin/python benchmarks/klip_vs_lmd.py --images 100 --samples 4 --steps 50 --threads 1 \
        --guidance consistency --out benchmarks/results/klip_vs_lmd_consistency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from lmd_mnist_family import held_out_images  # noqa: E402

NAMES = {"mnist": "MNIST", "kmnist": "KMNIST", "fashion": "FashionMNIST"}
LMD_DISTANCES = ["lpips", "lpips@128", "ssim", "mse", "prior-features"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, default=ROOT / "priors" / "mnist32-tiny-cpu")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--images", type=int, default=100, help="held-out images scored per set")
    parser.add_argument("--samples", type=int, default=4, help="KLIP posterior samples S")
    parser.add_argument("--steps", type=int, default=50, help="KLIP reverse steps K")
    parser.add_argument("--guidance", default="jacobian-free", choices=["jacobian-free", "consistency", "dps"],
                        help="KLIP guidance step (consistency: x0 moves by λ = 1 times the residual's pseudo-inverse)")
    parser.add_argument("--operators", nargs="+", default=["denoise", "inpaint"], choices=["denoise", "inpaint"])
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--lmd-results", type=Path, default=ROOT / "benchmarks" / "results" / "lmd_mnist_family_mnist.json")
    parser.add_argument("--recompute-lmd", action="store_true", help="run LMD (10 × 20, MSE) instead of reusing the results file")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "klip_vs_lmd.json")
    return parser.parse_args()


def known_mask(image_size: tuple[int, int]) -> np.ndarray:
    """Known pixels of the KLIP inpaint operator: the complement of LMD's first checkerboard mask."""
    from napari_klip.core.lmd.masks import checkerboard_masks

    return ~checkerboard_masks(image_size, 1)[0]


def klip_scores(prior, images: np.ndarray, operator: str, params: dict, config) -> dict[str, Any]:
    """Max-block and mean-energy whole-image scores for every image, with cost."""
    from napari_klip import api

    max_block, mean_energy, calls = [], [], []
    start = time.perf_counter()
    for image in images:
        result = api.score_image(image[0], prior=prior, operator=operator, operator_params=params, noise_sigma=0.0, config=config)
        lo, hi = result.window
        max_block.append(result.score)
        mean_energy.append(float(result.trace.energy[lo:hi].sum(axis=0).mean()))
        calls.append(result.trace.network_calls)
    wall = time.perf_counter() - start
    return {"max-block": np.array(max_block), "mean-energy": np.array(mean_energy),
            "network_calls": int(np.mean(calls)), "seconds_per_image": wall / len(images), "window": [int(lo), int(hi)],
            "block_size": int(result.block_size)}


def lmd_from_file(path: Path, images: int) -> list[dict[str, Any]]:
    report = json.loads(path.read_text())
    if report["settings"]["images"] != images:
        raise SystemExit(f"{path}: scored {report['settings']['images']} images per set, not {images}; use --recompute-lmd")
    rows = []
    for row in report["pairs"]:
        if row["id"] == "mnist":
            rows.append({"ood": row["ood"], "auc": row["auc"], "evaluations_per_image": row["evaluations_per_image"],
                         "seconds_per_image": row["seconds_per_image"], "source": str(path.relative_to(ROOT)),
                         "hardware": report["hardware"], "reconstructions": report["settings"]["reconstructions"],
                         "steps": report["settings"]["steps"]})
    return rows


def lmd_recompute(prior, images: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    from napari_klip.api import lmd_score_stack
    from napari_klip.core.lmd import LmdConfig
    from napari_klip.core.metrics import dataset_roc_auc

    config = LmdConfig(num_reconstructions=10, num_steps=20, distance="mse", seed=0)
    scores, cost = {}, {}
    for name, stack in images.items():
        start = time.perf_counter()
        results = lmd_score_stack(stack[:, 0], prior=prior, config=config)
        cost[name] = (time.perf_counter() - start) / len(stack)
        scores[name] = np.array([r.score for r in results])
    return [{"ood": ood, "auc": {"mse": dataset_roc_auc(scores["mnist"], scores[ood])}, "evaluations_per_image": 200,
             "seconds_per_image": round(cost[ood], 3), "source": "recomputed", "reconstructions": 10, "steps": 20}
            for ood in ("kmnist", "fashion")]


def main() -> None:
    args = parse_args()
    import torch

    from napari_klip.core.klip import KlipConfig
    from napari_klip.core.metrics import dataset_roc_auc
    from napari_klip.core.prior import load_prior

    if args.threads:
        torch.set_num_threads(args.threads)
    prior = load_prior(args.prior, device="cpu")
    images = {name: held_out_images(name, args.data_dir, args.images) for name in NAMES}
    config = KlipConfig(num_samples=args.samples, num_steps=args.steps, guidance=args.guidance, seed=0)
    params = {"denoise": {}, "inpaint": {"mask": known_mask(prior.image_size)}}
    report: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "hardware": {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "klip": [], "lmd": [],
    }
    start = time.perf_counter()
    for operator in args.operators:
        runs = {}
        for name in NAMES:
            runs[name] = klip_scores(prior, images[name], operator, params[operator], config)
            print(f"KLIP {operator}, {name}: {runs[name]['seconds_per_image']:.2f} s/image", flush=True)
        for ood in ("kmnist", "fashion"):
            report["klip"].append({
                "operator": operator, "guidance": args.guidance, "ood": ood, "samples": args.samples, "steps": args.steps,
                "network_calls_per_image": runs[ood]["network_calls"], "evaluations_per_image": args.samples * runs[ood]["network_calls"],
                "seconds_per_image": round(runs[ood]["seconds_per_image"], 3), "window": runs[ood]["window"], "block_size": runs[ood]["block_size"],
                "auc": {s: dataset_roc_auc(runs["mnist"][s], runs[ood][s]) for s in ("max-block", "mean-energy")},
            })
        report.setdefault("klip_scores", {})[operator] = {n: {s: runs[n][s].tolist() for s in ("max-block", "mean-energy")} for n in NAMES}
    report["lmd"] = lmd_recompute(prior, images) if args.recompute_lmd else lmd_from_file(args.lmd_results, args.images)
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out} ({report['wall_time_s']} s)")


def print_table(report: dict[str, Any]) -> None:
    print("| ID → OOD | method | whole-image score | ROC-AUC | paper | network evaluations / image | s / image |")
    print("|---|---|---|---|---|---|---|")
    for ood in ("kmnist", "fashion"):
        pair = f"MNIST → {NAMES[ood]}"
        for row in (r for r in report["klip"] if r["ood"] == ood):
            for score, auc in row["auc"].items():
                evals = f"{row['evaluations_per_image']} ({row['samples']} × {row['steps']}, {row['network_calls_per_image']} batched calls)"
                print(f"| {pair} | KLIP {row['operator']} ({row.get('guidance', 'jacobian-free')}) | {score} | {auc:.3f} | n/a | {evals} | {row['seconds_per_image']:.2f} |")
        for row in (r for r in report["lmd"] if r["ood"] == ood):
            for distance in (d for d in LMD_DISTANCES if d in row["auc"]):
                evals = f"{row['evaluations_per_image']} ({row['reconstructions']} × {row['steps']})"
                print(f"| {pair} | LMD | median {distance} | {row['auc'][distance]:.3f} | — | {evals} | {row['seconds_per_image']:.2f} |")


if __name__ == "__main__":
    main()
