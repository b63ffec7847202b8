"""KLIP localisation benchmark on real CT slices: OrganAMNIST with inserted lesions and star artefacts.

The OrganAMNIST analogue of the KLIP paper's CHAOS experiment (``../shared/docs/method-klip.md``).
A diffusion prior trained on the OrganAMNIST train split scores

* **ID** — held-out OrganAMNIST *test* slices, unchanged, and
* **OOD** — a disjoint set of test slices, each once with an inserted lesion
  (:func:`~napari_klip.core.anomalies.insert_lesion`) and once with a star artefact
  (:func:`~napari_klip.core.anomalies.insert_star_artifact`), with the anomaly's pixel mask,

through simulated measurements of each forward operator (sparse-view CT, Gaussian blur), with
:func:`napari_klip.api.score_image`. Slices are resized to the prior's grid (28² → 32², linear,
the prior's training resize) *before* the anomalies are inserted, so masks live on the grid of
the score maps. Slice choice, anomaly seeds and sampler seeds all derive from ``--seed``.

For every operator × anomaly kind it reports

* dataset-level ROC-AUC (image score = maximum block score;
  :func:`~napari_klip.core.metrics.dataset_roc_auc`) and
* image-level ROC-AUC (block labels from the pixel mask, blocks at least half inside the body
  mask = :func:`~napari_klip.core.anomalies.foreground_mask` of the clean slice, averaged over
  images with both classes; :func:`~napari_klip.core.metrics.image_level_roc_auc`)

for the default window (``[65, 85)`` of 100, scaled to ``--steps``) and block size (2 at 32²),
next to the image-level ROC-AUC of a map that only knows the distance to the image centre,
and a sweep over step windows and block sizes recomputed from the stored energy traces with
:func:`~napari_klip.core.klip.block_score_map` — no new sampling. It also reports network calls
per image, wall times and the hardware, prints markdown tables and writes them as JSON.

Examples
--------
The reported CPU run (2-core machine, one torch thread), from the project root::

    .venv/bin/python benchmarks/klip_organamnist.py --model src/napari_klip/data/priors/organamnist32-tiny-cpu \\
        --n-id 32 --n-ood 32 --samples 4 --steps 50 --threads 1 --seed 0 \\
        --out benchmarks/results/klip_organamnist.json

Paper defaults (``--samples 8 --steps 100 --zeta 0.3``) on a GPU::

    .venv/bin/python benchmarks/klip_organamnist.py --n-id 100 --n-ood 100 --device cuda

Notes
-----
The paper's numbers come from CHAOS CT at 512² with a different prior; they are not comparable
and the tables say so. Star artefacts add up to half the slice's intensity range and are not
clipped to 0–255 (as :func:`~napari_klip.core.anomalies.insert_star_artifact` documents).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "organamnist.npz"
DEFAULT_MODEL = ROOT / "src" / "napari_klip" / "data" / "priors" / "organamnist32-tiny-cpu"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "klip_organamnist.json"

#: MedMNIST OrganAMNIST label names, by organ id.
ORGAN_NAMES = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)
#: Step windows of the sweep, as fractions of the sampling run (the paper's default is the 5th).
WINDOW_FRACTIONS = ((0.0, 0.2), (0.2, 0.4), (0.35, 0.55), (0.5, 0.7), (0.65, 0.85), (0.8, 1.0))
ANOMALY_KINDS = ("lesion", "star")
PAPER = "n/a (different data: CHAOS 512²)"


# --------------------------------------------------------------------------- arguments


def _organ(value: str) -> int:
    """An organ id from ``"6"`` or ``"liver"``."""
    if value.isdigit() and int(value) < len(ORGAN_NAMES):
        return int(value)
    if value.lower() in ORGAN_NAMES:
        return ORGAN_NAMES.index(value.lower())
    raise argparse.ArgumentTypeError(f"unknown organ {value!r}; use 0–10 or one of {', '.join(ORGAN_NAMES)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="prior folder (trained on OrganAMNIST)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="organamnist.npz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file (folder is created)")
    parser.add_argument("--save-traces", type=Path, default=None, help="optional .npz with every energy trace and mask")
    parser.add_argument("--seed", type=int, default=0, help="slice choice, anomaly and sampler seeds derive from it")
    parser.add_argument("--organs", type=_organ, nargs="+", default=None, help="organ classes (ids or names); default all")
    parser.add_argument("--n-id", type=int, default=12, help="ID (clean) test slices")
    parser.add_argument("--n-ood", type=int, default=12, help="OOD test slices (each gets a lesion and, separately, a star)")
    parser.add_argument("--insert-grid", choices=("prior", "native"), default="prior",
                        help="insert anomalies after resizing to the prior grid (prior) or at 28² and resize image+mask (native)")
    parser.add_argument("--operators", nargs="+", choices=("ct", "blur"), default=["ct", "blur"])
    parser.add_argument("--n-views", type=int, default=24, help="sparse-view CT projection angles")
    parser.add_argument("--blur-kernel", type=int, default=5, help="Gaussian blur kernel size (at 32²)")
    parser.add_argument("--blur-sigma", type=float, default=1.0, help="Gaussian blur sigma in pixels (at 32²)")
    parser.add_argument("--noise-sigma", type=float, default=0.0, help="measurement noise, intensity units")
    parser.add_argument("--samples", type=int, default=8, help="posterior samples S per image (paper: 8)")
    parser.add_argument("--steps", type=int, default=100, help="reverse steps K (paper: 100)")
    parser.add_argument("--zeta", type=float, default=0.3, help="guidance step size ζ0 (paper: 0.3)")
    parser.add_argument("--sigma-y", type=float, default=1.0, help="σ_y of the guidance (paper: 1)")
    parser.add_argument("--guidance", choices=("jacobian-free", "dps", "consistency"), default="jacobian-free",
                        help="guidance step (consistency: filtered back-projection of the residual; CT only here)")
    parser.add_argument("--consistency-weight", type=float, default=1.0, help="λ of consistency guidance")
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[1, 2, 4], help="block sizes of the sweep")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.n_id < 2 or args.n_ood < 2:
        parser.error("--n-id and --n-ood must be at least 2 (a ROC needs several images per class)")
    return args


# --------------------------------------------------------------------------- data


def _seed_ints(seed: int, stream: int, count: int) -> list[int]:
    """``count`` reproducible non-negative seeds for one purpose (``stream``) of a run seed."""
    return [int(s) for s in np.random.default_rng([seed, stream]).integers(0, 2**31 - 1, size=count)]


def _to_grid(images: np.ndarray, size: int) -> np.ndarray:
    """``(N, h, w)`` → ``(N, size, size)`` float32, with the prior's training resize."""
    from napari_klip.core.data import resize_stack

    return resize_stack(images[:, None].astype(np.float32), size)[:, 0]


def _mask_to_grid(mask: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(mask.astype(np.float32), (size, size), order=0, anti_aliasing=False) > 0.5


def build_benchmark(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Choose ID and OOD slices, insert anomalies with masks, compute body masks.

    Returns
    -------
    dict
        ``id`` and ``ood`` slice records, the organs used and the anomaly seeds.
    """
    from napari_klip.core.anomalies import foreground_mask, insert_lesion, insert_star_artifact

    with np.load(args.data) as data:
        images, labels = data["test_images"], data["test_labels"].reshape(-1).astype(int)
    organs = sorted(set(args.organs)) if args.organs else list(range(len(ORGAN_NAMES)))
    eligible = np.flatnonzero(np.isin(labels, organs))
    order = np.random.default_rng(args.seed).permutation(eligible)
    lesion_seeds, star_seeds = _seed_ints(args.seed, 1, order.size), _seed_ints(args.seed, 2, order.size)

    id_set: list[dict[str, Any]] = []
    ood_set: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for position, index in enumerate(order):
        if len(id_set) == args.n_id and len(ood_set) == args.n_ood:
            break
        native = images[index].astype(np.float32)
        clean = _to_grid(native[None], size)[0]
        body = foreground_mask(clean)
        record = {"index": int(index), "organ": int(labels[index]), "image": clean, "body": body}
        if not body.any():
            skipped.append({"index": int(index), "reason": "empty foreground"})
            continue
        if len(id_set) < args.n_id:
            id_set.append(record)
            continue
        try:
            if args.insert_grid == "prior":
                lesion = insert_lesion(clean, foreground=body, seed=lesion_seeds[position])
                star = insert_star_artifact(clean, foreground=body, seed=star_seeds[position])
                lesion_image, lesion_mask, star_image, star_mask = lesion.image, lesion.mask, star.image, star.mask
            else:
                lesion = insert_lesion(native, seed=lesion_seeds[position])
                star = insert_star_artifact(native, seed=star_seeds[position])
                lesion_image, star_image = _to_grid(np.stack([lesion.image, star.image]), size)
                lesion_mask, star_mask = _mask_to_grid(lesion.mask, size), _mask_to_grid(star.mask, size)
        except ValueError as error:  # no room for an anomaly in this slice
            skipped.append({"index": int(index), "reason": str(error)})
            continue
        record.update(
            lesion={"image": lesion_image, "mask": lesion_mask, "seed": lesion_seeds[position]},
            star={"image": star_image, "mask": star_mask, "seed": star_seeds[position]},
        )
        ood_set.append(record)
    if len(id_set) < args.n_id or len(ood_set) < args.n_ood:
        raise SystemExit(f"only {len(id_set)} ID and {len(ood_set)} OOD slices available for organs {organs}")
    return {"id": id_set, "ood": ood_set, "organs": organs, "skipped": skipped}


# --------------------------------------------------------------------------- scoring


def _operator_params(name: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"n_views": args.n_views} if name == "ct" else {"kernel_size": args.blur_kernel, "sigma": args.blur_sigma}


def score_all(prior: Any, bench: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Score every ID and OOD image under every operator; keep the energy traces.

    Returns
    -------
    dict
        ``{operator: {"id"|"lesion"|"star": {"energy": [...], "wall_s": [...], "calls": [...]},
        "params": ..., "wall_time_s": ...}}``.
    """
    from napari_klip.api import score_image
    from napari_klip.core.klip import KlipConfig

    groups = {"id": [r["image"] for r in bench["id"]]}
    groups.update({kind: [r[kind]["image"] for r in bench["ood"]] for kind in ANOMALY_KINDS})
    sampler_seeds = _seed_ints(args.seed, 3, sum(len(v) for v in groups.values()))
    total = len(args.operators) * len(sampler_seeds)
    done, start = 0, time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in args.operators:
        params = _operator_params(name, args)
        op_start = time.perf_counter()
        results[name] = {"params": params}
        seed_iter = iter(sampler_seeds)
        for group, images in groups.items():
            store = results[name][group] = {"energy": [], "sampling_s": [], "call_s": [], "calls": [], "seeds": []}
            for image in images:
                seed = next(seed_iter)
                config = KlipConfig(num_samples=args.samples, num_steps=args.steps, zeta=args.zeta,
                                    sigma_y=args.sigma_y, guidance=args.guidance,
                                    consistency_weight=args.consistency_weight, seed=seed)
                call_start = time.perf_counter()
                result = score_image(image, prior=prior, operator=name, operator_params=params,
                                     noise_sigma=args.noise_sigma, config=config)
                store["call_s"].append(time.perf_counter() - call_start)
                store["energy"].append(result.trace.energy)
                store["sampling_s"].append(result.trace.wall_time_s)
                store["calls"].append(result.trace.network_calls)
                store["seeds"].append(seed)
                done += 1
                elapsed = time.perf_counter() - start
                print(f"\r[{done}/{total}] {name} {group}: {elapsed:.0f} s elapsed, ~{elapsed / done * (total - done):.0f} s left",
                      end="", file=sys.stderr, flush=True)
        results[name]["wall_time_s"] = time.perf_counter() - op_start
    print(file=sys.stderr)
    return results


# --------------------------------------------------------------------------- metrics


def evaluate(id_energy: list[np.ndarray], ood_energy: list[np.ndarray], masks: list[np.ndarray],
             bodies: list[np.ndarray], block_size: int, window: tuple[int, int]) -> dict[str, Any]:
    """Dataset- and image-level ROC-AUC of one window and block size, from stored traces."""
    from napari_klip.core.klip import block_score_map, image_score
    from napari_klip.core.metrics import dataset_roc_auc, image_level_roc_auc

    id_maps = [block_score_map(e, block_size, window) for e in id_energy]
    ood_maps = [block_score_map(e, block_size, window) for e in ood_energy]
    id_scores, ood_scores = [image_score(m) for m in id_maps], [image_score(m) for m in ood_maps]
    local = image_level_roc_auc(ood_maps, masks, block_size, body_masks=bodies)
    return {
        "window": list(window),
        "block_size": block_size,
        "dataset_auc": dataset_roc_auc(id_scores, ood_scores),
        "image_auc": local.mean_auc,
        "image_auc_images_used": local.images_used,
        "image_auc_per_image": local.per_image,
        "id_scores": id_scores,
        "ood_scores": ood_scores,
    }


def mean_map_correlation(energies: list[np.ndarray], block_size: int, window: tuple[int, int]) -> float:
    """Mean Pearson correlation between the score maps of different images (1 = one map for all).

    A map that is the same for every image carries the operator's geometry, not the image.
    """
    from napari_klip.core.klip import block_score_map

    maps = np.stack([block_score_map(e, block_size, window).ravel() for e in energies])
    correlation = np.corrcoef(maps)
    return float(correlation[np.triu_indices(len(maps), k=1)].mean())


def sweep_windows(steps: int) -> list[tuple[int, int]]:
    """The sweep's windows scaled to ``steps`` (the default window included), without repeats."""
    from napari_klip.core.klip import default_window

    windows = []
    for low, high in WINDOW_FRACTIONS:
        start = min(int(round(low * steps)), steps - 1)
        window = (start, max(start + 1, min(int(round(high * steps)), steps)))
        if window not in windows:
            windows.append(window)
    if default_window(steps) not in windows:
        windows.append(default_window(steps))
    return windows


# --------------------------------------------------------------------------- reporting


def hardware_line(prior: Any) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = prior.device
    accelerator = f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else f"device {device.type}"
    return (f"{accelerator}; CPU {cpu} ({os.cpu_count()} logical cores); torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s); Python {platform.python_version()}, {platform.system()}")


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _organ_counts(records: list[dict[str, Any]]) -> str:
    counts = np.bincount([r["organ"] for r in records], minlength=len(ORGAN_NAMES))
    return ", ".join(f"{ORGAN_NAMES[i]} {c}" for i, c in enumerate(counts) if c)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from napari_klip.core.klip import default_block_size, default_window
    from napari_klip.core.prior import load_prior

    run_start = time.perf_counter()
    prior = load_prior(args.model, device=args.device)
    height, width = prior.image_size
    if height != width:
        raise SystemExit(f"this benchmark expects a square prior, got {height}×{width}")
    if tuple(prior.metadata.intensity_range) != (0.0, 255.0):
        print(f"warning: the prior's intensity range is {prior.metadata.intensity_range}, the slices are 0–255 uint8", file=sys.stderr)
    bench = build_benchmark(args, height)
    block = default_block_size(prior.image_size)
    window = default_window(args.steps)
    block_sizes = [b for b in dict.fromkeys([*args.block_sizes, block]) if b >= 1 and height % b == 0]
    windows = sweep_windows(args.steps)

    organs_used = sorted({r["organ"] for r in bench["id"] + bench["ood"]})
    print(f"organ classes requested: {', '.join(f'{i} {ORGAN_NAMES[i]}' for i in bench['organs'])}", file=sys.stderr)
    print(f"organ classes used: {', '.join(f'{i} {ORGAN_NAMES[i]}' for i in organs_used)}", file=sys.stderr)
    hardware = hardware_line(prior)
    traces = score_all(prior, bench, args)

    bodies = [r["body"] for r in bench["ood"]]
    masks = {kind: [r[kind]["mask"] for r in bench["ood"]] for kind in ANOMALY_KINDS}
    main_rows, sweep = [], {}
    for name in args.operators:
        for kind in ANOMALY_KINDS:
            key = f"{name}/{kind}"
            sweep[key] = {
                f"[{w[0]},{w[1]})/b{b}": evaluate(traces[name]["id"]["energy"], traces[name][kind]["energy"], masks[kind], bodies, b, w)
                for w in windows for b in block_sizes
            }
            main_rows.append((name, kind, sweep[key][f"[{window[0]},{window[1]})/b{block}"]))
    from napari_klip.core.metrics import centre_baseline_auc

    baseline = {kind: centre_baseline_auc(masks[kind], block, bodies).mean_auc for kind in ANOMALY_KINDS}
    map_correlation = {name: mean_map_correlation(traces[name]["id"]["energy"], block, window) for name in args.operators}

    calls = [c for name in args.operators for g in ("id", *ANOMALY_KINDS) for c in traces[name][g]["calls"]]
    sampling = [s for name in args.operators for g in ("id", *ANOMALY_KINDS) for s in traces[name][g]["sampling_s"]]
    per_call = [s for name in args.operators for g in ("id", *ANOMALY_KINDS) for s in traces[name][g]["call_s"]]
    total_wall = time.perf_counter() - run_start
    lesion_area = [float(r["lesion"]["mask"].mean()) for r in bench["ood"]]
    star_area = [float(r["star"]["mask"].mean()) for r in bench["ood"]]
    operator_text = {
        "ct": f"sparse-view CT, {args.n_views} views (parallel beam, [0°,180°))",
        "blur": f"Gaussian blur, kernel {args.blur_kernel}, σ {args.blur_sigma} px",
    }

    setup_rows = [
        ["data", f"OrganAMNIST test split ({args.data.name}, `test_images`), 28² uint8 → {height}² linear resize "
                 f"(anomalies inserted on the {'prior' if args.insert_grid == 'prior' else 'native 28²'} grid)"],
        ["seed", f"{args.seed} (slice order, lesion/star seeds, sampler seeds)"],
        ["organ classes", ", ".join(f"{i} {ORGAN_NAMES[i]}" for i in organs_used)],
        ["ID images", f"{len(bench['id'])} clean test slices ({_organ_counts(bench['id'])})"],
        ["OOD images", f"{len(bench['ood'])} other test slices × 2 kinds ({_organ_counts(bench['ood'])}); "
                       f"lesion area {100 * np.mean(lesion_area):.1f} % of image (mean), star mask {100 * np.mean(star_area):.1f} %"],
        ["operators", "; ".join(operator_text[n] for n in args.operators) + f"; measurement noise σ {args.noise_sigma}"],
        ["prior", f"{args.model} ({prior.num_parameters:,} parameters, {height}², trained on: {prior.metadata.training_data})"],
        ["samples / steps / ζ0 / σ_y / guidance", f"{args.samples} / {args.steps} / {args.zeta} / {args.sigma_y} / {args.guidance}"
                                                   + (f" (λ {args.consistency_weight})" if args.guidance == "consistency" else "")],
        ["network calls / image", f"{int(np.mean(calls))} (one batched forward pass of {args.samples} samples per step)"],
        ["wall time", f"{total_wall:.0f} s total; sampling {np.mean(sampling):.2f} s/image (mean), "
                      f"score_image call {np.mean(per_call):.2f} s/image; {len(per_call)} scorings"],
        ["default window / block", f"[{window[0]},{window[1]}) of {args.steps} / {block} (at {height}²)"],
        ["hardware", hardware],
    ]
    print("\n## KLIP on OrganAMNIST — setup\n")
    print(_table(["item", "value"], setup_rows))

    print(f"\n## Default window [{window[0]},{window[1]}) and block {block}\n")
    rows = [[name, kind, _fmt(r["dataset_auc"]), f"{_fmt(r['image_auc'])} ({r['image_auc_images_used']}/{len(bench['ood'])})",
             _fmt(baseline[kind]), f"{traces[name]['wall_time_s']:.0f} s", PAPER] for name, kind, r in main_rows]
    print(_table(["operator", "anomaly", "dataset ROC-AUC", "image ROC-AUC (images used)", "centre-distance map, image ROC-AUC",
                  "operator wall time", "paper"], rows))
    print("\nMean correlation between the default-window score maps of different ID images (1 = the same map for every image): "
          + ", ".join(f"{name} {map_correlation[name]:.3f}" for name in args.operators))

    print("\n## Window × block-size sweep (from stored traces; cells: dataset / image ROC-AUC)\n")
    for key, cells in sweep.items():
        print(f"**{key}**\n")
        rows = [[f"[{w[0]},{w[1]})" + (" (default)" if w == window else "")]
                + [f"{_fmt(cells[f'[{w[0]},{w[1]})/b{b}']['dataset_auc'])} / {_fmt(cells[f'[{w[0]},{w[1]})/b{b}']['image_auc'])}"
                   for b in block_sizes] for w in windows]
        print(_table(["window"] + [f"block {b}" for b in block_sizes], rows) + "\n")

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else argv,
        "setup": {
            "data": str(args.data), "split": "test", "seed": args.seed, "insert_grid": args.insert_grid,
            "organs_requested": [ORGAN_NAMES[i] for i in bench["organs"]],
            "organs_used": [ORGAN_NAMES[i] for i in organs_used],
            "n_id": len(bench["id"]), "n_ood": len(bench["ood"]),
            "id_slices": [{"index": r["index"], "organ": ORGAN_NAMES[r["organ"]]} for r in bench["id"]],
            "ood_slices": [{"index": r["index"], "organ": ORGAN_NAMES[r["organ"]], "lesion_seed": r["lesion"]["seed"],
                            "star_seed": r["star"]["seed"], "lesion_area": a, "star_area": s}
                           for r, a, s in zip(bench["ood"], lesion_area, star_area, strict=True)],
            "skipped_slices": bench["skipped"],
            "prior": str(args.model), "prior_parameters": prior.num_parameters, "prior_image_size": [height, width],
            "operators": {n: traces[n]["params"] for n in args.operators}, "noise_sigma": args.noise_sigma,
            "samples": args.samples, "steps": args.steps, "zeta": args.zeta, "sigma_y": args.sigma_y, "guidance": args.guidance,
            "consistency_weight": args.consistency_weight,
            "default_window": list(window), "default_block_size": block,
            "network_calls_per_image": float(np.mean(calls)),
            "sampling_s_per_image_mean": float(np.mean(sampling)), "call_s_per_image_mean": float(np.mean(per_call)),
            "wall_time_s_total": total_wall,
            "wall_time_s_per_operator": {n: traces[n]["wall_time_s"] for n in args.operators},
            "hardware": hardware, "paper": PAPER,
        },
        "setup_table": setup_rows,
        "default": [{"operator": n, "anomaly": k, **{key: r[key] for key in ("window", "block_size", "dataset_auc", "image_auc",
                                                                           "image_auc_images_used")},
                     "centre_baseline_image_auc": baseline[k], "paper": PAPER}
                    for n, k, r in main_rows],
        "id_map_correlation": map_correlation,
        "sweep": sweep,
        "sampler_seeds": {n: {g: traces[n][g]["seeds"] for g in ("id", *ANOMALY_KINDS)} for n in args.operators},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(report), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.save_traces is not None:
        args.save_traces.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{n}_{g}_energy": np.stack(traces[n][g]["energy"]) for n in args.operators for g in ("id", *ANOMALY_KINDS)}
        arrays.update({f"{k}_mask": np.stack(masks[k]) for k in ANOMALY_KINDS}, body_mask=np.stack(bodies))
        np.savez_compressed(args.save_traces, **arrays)
        print(f"wrote {args.save_traces}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
