"""LMD on the MNIST family: the six directed pairs of the LMD paper, and a cost-accuracy curve.

For every prior (trained on one of MNIST, KMNIST, Fashion-MNIST) the held-out images of all three
sets are reconstructed once (``R`` alternating-checkerboard inpaintings, ``K`` respaced steps,
all batched), and every requested distance is measured on the same reconstructions. A pair
``A → B`` uses the prior of ``A``; ID = held-out ``A`` images, OOD = held-out ``B`` images; score =
median distance over the reconstructions; ROC-AUC with OOD as the positive class.

Splits (``benchmarks/mnist_family_splits.py``): MNIST prior on the official train split, scored on
the first ``--images`` official test images; KMNIST and Fashion-MNIST (test images only here) are
split with a seed-0 permutation into a training part (8,000 / 3,443) and a held-out part
(2,000 / 1,000), whose first ``--images`` are scored. 28² images are resized to 32² (linear, as in
training).

The cost curve re-runs the reconstructions with each ``--curve-steps`` value for the
``--curve-pairs``, and takes the first ``r`` reconstructions (r = 1, 3, 5, 10) of each run.

Example (the reported CPU run; see docs/benchmarks.md)::

    W=../shared/data/weights/alexnet_features_imagenet.npz
    for p in mnist kmnist fashion; do
        .venv/bin/python benchmarks/lmd_mnist_family.py --only $p --images 100 --steps 20 --curve-steps 10 50 \\
            --lpips-weights $W --threads 1 --out benchmarks/results/lmd_mnist_family_$p.json
    done
    .venv/bin/python benchmarks/lmd_mnist_family.py --report benchmarks/results/lmd_mnist_family_*.json
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
from mnist_family_splits import load_split  # noqa: E402

NAMES = {"mnist": "MNIST", "kmnist": "KMNIST", "fashion": "FashionMNIST"}
#: The LMD paper's Table 1 (LMD column; 10 reconstructions × 1,000 steps, LPIPS).
PAPER_AUC = {
    ("mnist", "kmnist"): 0.984, ("mnist", "fashion"): 0.999, ("kmnist", "mnist"): 0.978,
    ("kmnist", "fashion"): 0.993, ("fashion", "mnist"): 0.992, ("fashion", "kmnist"): 0.990,
}
DEFAULT_PRIORS = {name: ROOT / "priors" / f"{name}32-tiny-cpu" for name in NAMES}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", nargs="+", metavar="NAME=DIR", help="prior folders (default priors/<name>32-tiny-cpu)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--images", type=int, default=64, help="held-out images scored per set")
    parser.add_argument("--steps", type=int, default=20, help="reverse steps of the main table")
    parser.add_argument("--reconstructions", type=int, default=10)
    parser.add_argument("--distances", nargs="+", default=["lpips", "lpips@128", "ssim", "mse", "prior-features"],
                        help="lpips@128: LPIPS on images upsampled to 128² (a map that localizes)")
    parser.add_argument("--lpips-weights", type=Path, help="ImageNet AlexNet weights (without them LPIPS is skipped)")
    parser.add_argument("--curve-steps", type=int, nargs="*", default=[10, 50], help="extra step counts of the cost curve")
    parser.add_argument("--curve-pairs", nargs="*", default=["mnist:kmnist", "fashion:mnist"])
    parser.add_argument("--batch-size", type=int, default=16, help="images per batched reverse process")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=list(NAMES), help="run only these priors (e.g. one per process)")
    parser.add_argument("--report", nargs="+", type=Path, help="print the tables of earlier result files and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lmd_mnist_family.json")
    return parser.parse_args()


def held_out_images(name: str, data_dir: Path, count: int) -> np.ndarray:
    """The first ``count`` held-out images of a set, resized to 32² float32 (N, 1, 32, 32), 0–255."""
    from napari_klip.core.data import resize_stack

    _, held_out = load_split(name, data_dir)
    if count > len(held_out):
        raise SystemExit(f"{name}: only {len(held_out)} held-out images, asked for {count}")
    return resize_stack(held_out[:count, None].astype(np.float32), 32)


def reconstruct_and_measure(prior, images: np.ndarray, config, distances: dict, batch_size: int) -> dict[str, Any]:
    """Distances ``(N, R)`` per distance name, with network evaluations and wall time per image."""
    import torch

    from napari_klip.core.lmd import iter_lmd_reconstructions, measure
    from napari_klip.core.progress import drive

    model = torch.from_numpy(prior.to_model_range(images))
    per_distance: dict[str, list[np.ndarray]] = {name: [] for name in distances}
    start = time.perf_counter()
    evaluations = 0
    for begin in range(0, len(model), batch_size):
        batch = model[begin : begin + batch_size]
        reconstructions = drive(iter_lmd_reconstructions(prior, batch, config))
        evaluations = reconstructions.evaluations_per_image
        for name, distance in distances.items():
            per_distance[name].append(measure(distance, batch.to(prior.device), reconstructions, "median").distances)
    wall = time.perf_counter() - start
    return {
        "distances": {name: np.concatenate(parts) for name, parts in per_distance.items()},
        "evaluations_per_image": evaluations,
        "seconds_per_image": wall / len(model),
    }


def auc_first_r(id_distances: np.ndarray, ood_distances: np.ndarray, r: int) -> float:
    """Dataset-level ROC-AUC of the median over the first ``r`` reconstructions."""
    from napari_klip.core.metrics import dataset_roc_auc

    return dataset_roc_auc(np.median(id_distances[:, :r], axis=1), np.median(ood_distances[:, :r], axis=1))


def build_distance(name: str, prior: Any, lpips_weights: Path | None) -> Any:
    """A distance by name; ``lpips@N`` is LPIPS on images upsampled to ``N × N``."""
    from napari_klip.core.lmd.distances import LpipsDistance, load_lpips, make_distance

    if name.startswith("lpips@"):
        return LpipsDistance(load_lpips(lpips_weights, device=prior.device), input_size=int(name.split("@")[1]))
    return make_distance(name, prior=prior, lpips_weights=lpips_weights, device=prior.device)


def main() -> None:
    args = parse_args()
    if args.report:
        reports = [json.loads(path.read_text()) for path in args.report]
        merged = {"pairs": [row for r in reports for row in r["pairs"]], "cost_curve": [row for r in reports for row in r["cost_curve"]]}
        print_tables(merged, list(merged["pairs"][0]["auc"]))
        return
    import torch

    from napari_klip.core.lmd import LmdConfig
    from napari_klip.core.prior import load_prior

    if args.threads:
        torch.set_num_threads(args.threads)
    priors = dict(DEFAULT_PRIORS)
    for item in args.priors or []:
        name, _, path = item.partition("=")
        priors[name] = Path(path)
    names = [name for name in (args.only or NAMES) if priors[name].is_dir()]
    images = {name: held_out_images(name, args.data_dir, args.images) for name in NAMES}
    distance_names = [d for d in args.distances if not d.startswith("lpips") or args.lpips_weights]
    curve_pairs = [tuple(pair.split(":")) for pair in args.curve_pairs]
    report: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "priors": {name: str(priors[name]) for name in names},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or "n/a", "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "pairs": [], "cost_curve": [],
    }
    start = time.perf_counter()
    for prior_name in names:
        prior = load_prior(priors[prior_name], device=args.device)
        distances = {d: build_distance(d, prior, args.lpips_weights) for d in distance_names}
        step_counts = [args.steps] + sorted({k for k in args.curve_steps if k != args.steps and any(p[0] == prior_name for p in curve_pairs)})
        for steps in step_counts:
            config = LmdConfig(num_reconstructions=args.reconstructions, num_steps=steps, distance="mse", seed=args.seed)
            sets = NAMES if steps == args.steps else {prior_name} | {b for a, b in curve_pairs if a == prior_name}
            runs = {}
            for set_name in sets:
                runs[set_name] = reconstruct_and_measure(prior, images[set_name], config, distances, args.batch_size)
                print(f"prior {prior_name}, {set_name}, {steps} steps: {runs[set_name]['seconds_per_image']:.2f} s/image", flush=True)
            for ood_name in (n for n in runs if n != prior_name):
                row = {"id": prior_name, "ood": ood_name, "steps": steps, "evaluations_per_image": runs[ood_name]["evaluations_per_image"],
                       "seconds_per_image": round(runs[ood_name]["seconds_per_image"], 3), "paper_lmd": PAPER_AUC[(prior_name, ood_name)]}
                row["auc"] = {d: auc_first_r(runs[prior_name]["distances"][d], runs[ood_name]["distances"][d], args.reconstructions) for d in distance_names}
                if steps == args.steps:
                    report["pairs"].append(row)
                if (prior_name, ood_name) in curve_pairs:
                    for r in sorted({1, 3, 5, args.reconstructions}):
                        if r <= args.reconstructions:
                            report["cost_curve"].append({
                                "id": prior_name, "ood": ood_name, "steps": steps, "reconstructions": r, "evaluations_per_image": r * steps,
                                "auc": {d: auc_first_r(runs[prior_name]["distances"][d], runs[ood_name]["distances"][d], r) for d in distance_names},
                            })
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report, distance_names)
    print(f"wrote {args.out} ({report['wall_time_s']} s)")


def print_tables(report: dict[str, Any], distance_names: list[str]) -> None:
    """Markdown tables of the pairs and the cost curve."""
    header = "| ID → OOD | " + " | ".join(distance_names) + " | paper (LMD, LPIPS) | network evaluations / image |"
    print(header + "\n|" + "---|" * (len(distance_names) + 3))
    for row in report["pairs"]:
        aucs = " | ".join(f"{row['auc'][d]:.3f}" for d in distance_names)
        print(f"| {NAMES[row['id']]} → {NAMES[row['ood']]} | {aucs} | {row['paper_lmd']:.3f} | {row['evaluations_per_image']} |")
    if report["cost_curve"]:
        print("\n| ID → OOD | steps | reconstructions | evaluations / image | " + " | ".join(distance_names) + " |")
        print("|" + "---|" * (len(distance_names) + 4))
        for row in sorted(report["cost_curve"], key=lambda r: (r["id"], r["ood"], r["steps"], r["reconstructions"])):
            aucs = " | ".join(f"{row['auc'][d]:.3f}" for d in distance_names)
            print(f"| {NAMES[row['id']]} → {NAMES[row['ood']]} | {row['steps']} | {row['reconstructions']} | {row['evaluations_per_image']} | {aucs} |")


if __name__ == "__main__":
    main()
