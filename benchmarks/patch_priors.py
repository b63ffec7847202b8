"""Patch priors at native resolution: microscopy defects, tiling choice, a 2048² image's memory.

Subcommands (each prints a JSON record and can append it to ``--out``):

* ``cell``: ``skimage.data.cell()`` (660×550 uint8 micrograph). Rows 0–399 trained the patch
  prior (``cell32-patch-tiny-cpu``); rows 400–529 (**validation**) and 530–659 (**test**) are
  cut into 64×64 images (2 × 8 per part). Every image gets one inserted defect with its pixel
  mask, the kind cycling through ``debris`` (dark disc, radius 2–4 px, −25 to −45 grey levels),
  ``bubble`` (bright ring, radius 4–7, +25 to +40) and ``saturation`` (a 3–6 px square set to
  255). KLIP (``denoise`` operator: the image itself is the measurement) runs once per image;
  the block size and score window are chosen by image-level ROC-AUC on validation and reported
  on test beside the trivial baselines (centre, local contrast, residual to the reconstruction;
  ``napari_klip.core.metrics.baseline_image_level_aucs``) on the same blocks.
* ``gravel``: the same protocol on a texture, ``skimage.data.gravel()`` (512×512 uint8). Rows
  0–255 trained the patch prior (``runs/gravel32-patch-tiny``, not bundled); rows 256–383
  (**validation**) and 384–511 (**test**) give 16 images of 64×64 each. The defects change the
  texture, not the level: ``blur-patch`` (a disc of radius 6–10 px smoothed by a σ = 2 Gaussian)
  and ``foreign-patch`` (a disc of ``skimage.data.brick()`` texture set to the mean and standard
  deviation of the gravel it replaces).
* ``tiling``: the same 64×64 validation images scored with ``random-shift`` and ``overlap``
  tiling: image-level ROC-AUC, network batches and time, and a seam statistic — the mean energy
  on the rows/columns of the fixed overlap tile borders over the mean energy elsewhere, for
  both (a fixed grid would show a ratio above 1 on its own borders).
* ``brain``: the real tumours of ``../shared/data/tcga_brain_mri_tumor.npz`` (two TCGA-GBM
  T1 post-contrast volumes, 256² slices). The patch prior (``runs/brain32-patch-tiny``, not
  bundled) was trained on the 38 tumour-free slices of **both volumes — the same patients** as
  the tumour slices scored here. Each volume is divided by its 99.5th percentile (clipped to
  [0, 1.2]). Validation = brain2's 3 tumour slices, test = brain1's 7; image-level ROC-AUC on
  blocks inside the head (normalised intensity > 0.05), settings chosen on validation.
* ``defect``: a held-out 256×320 part of the micrograph (rows 402–657, columns 0–319) with a 3×3
  defect ``--amplitude`` grey levels above the background; the rank of its block in KLIP's
  native-resolution map (blocks 8 and 16, four windows) and in the residual to the reconstruction.
* ``large``: one ``--size``² image (the cell micrograph tiled) scored by KLIP for one reverse
  step with ``--patch-batch`` patches per network call: wall time and the process's peak RSS
  (``resource.getrusage``), run in a fresh process per setting.

Example (the reported runs; 2-core CPU shared with other jobs, one torch thread)::

    OMP_NUM_THREADS=1 python benchmarks/patch_priors.py cell --model src/napari_klip/data/priors/cell32-patch-tiny-cpu
    OMP_NUM_THREADS=1 python benchmarks/patch_priors.py tiling --model src/napari_klip/data/priors/cell32-patch-tiny-cpu
    OMP_NUM_THREADS=1 python benchmarks/patch_priors.py gravel --model runs/gravel32-patch-tiny   # prior: docs/priors.md
    OMP_NUM_THREADS=1 python benchmarks/patch_priors.py large --size 2048 --patch-batch 256 \\
        --model src/napari_klip/data/priors/cell32-patch-tiny-cpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

SPLITS = {"train": (0, 400), "val": (400, 530), "test": (530, 660)}
#: Row ranges of ``skimage.data.gravel()`` (512×512): the gravel prior trained on rows 0–255.
GRAVEL_SPLITS = {"train": (0, 256), "val": (256, 384), "test": (384, 512)}
TILE = 64
DEFECTS = ("debris", "bubble", "saturation")
#: Defects that change the texture, not the brightness: local contrast cannot see them by level.
TEXTURE_DEFECTS = ("blur-patch", "foreign-patch")


def cell_images(split: str, source: str = "cell") -> np.ndarray:
    """The 64×64 images of a split of ``skimage.data.cell()`` or ``gravel()`` (rows as in :data:`SPLITS` / :data:`GRAVEL_SPLITS`), float32."""
    from skimage import data

    top, bottom = (SPLITS if source == "cell" else GRAVEL_SPLITS)[split]
    part = getattr(data, source)()[top:bottom].astype(np.float32)
    rows, cols = part.shape[0] // TILE, part.shape[1] // TILE
    return np.stack([part[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE] for r in range(rows) for c in range(cols)])


def insert_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``image`` with one defect of ``kind`` away from the border, and its pixel mask."""
    height, width = image.shape
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.integers(12, height - 12), rng.integers(12, width - 12)
    out = image.copy()
    if kind == "debris":
        radius = rng.uniform(2, 4)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        out[mask] -= rng.uniform(25, 45)
    elif kind == "bubble":
        radius = rng.uniform(4, 7)
        distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        mask = np.abs(distance - radius) <= 1.0
        out[mask] += rng.uniform(25, 40)
    elif kind == "saturation":
        side = int(rng.integers(3, 7))
        mask = (np.abs(yy - cy) < side / 2) & (np.abs(xx - cx) < side / 2)
        out[mask] = 255.0
    elif kind == "blur-patch":  # the texture smoothed away inside a disc; the mean level stays
        from scipy.ndimage import gaussian_filter

        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(6, 10) ** 2
        out[mask] = gaussian_filter(image, 2.0)[mask]
    elif kind == "foreign-patch":  # a disc of another texture (brick) at the image's own mean and spread there
        from skimage.data import brick

        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(6, 10) ** 2
        top, left = rng.integers(0, 512 - height), rng.integers(0, 512 - width)
        foreign = brick()[top : top + height, left : left + width].astype(np.float32)
        spread = foreign[mask].std() or 1.0
        out[mask] = (foreign[mask] - foreign[mask].mean()) / spread * image[mask].std() + image[mask].mean()
    else:
        raise ValueError(kind)
    return np.clip(out, 0, 255), mask


def defect_set(split: str, seed: int, source: str = "cell") -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    images, masks, kinds = [], [], []
    kinds_of_source = DEFECTS if source == "cell" else TEXTURE_DEFECTS
    for index, image in enumerate(cell_images(split, source)):
        kind = kinds_of_source[index % len(kinds_of_source)]
        damaged, mask = insert_defect(image, kind, rng)
        images.append(damaged)
        masks.append(mask)
        kinds.append(kind)
    return np.stack(images), masks, kinds


def _klip_results(images: np.ndarray, model: str, steps: int, samples: int, tiling: str, seed: int) -> tuple[list, list[float]]:
    from napari_klip.api.klip import score_image
    from napari_klip.core.options import KlipConfig
    from napari_klip.core.prior import load_prior

    prior = load_prior(model, device="cpu")
    results, seconds = [], []
    for index, image in enumerate(images):
        start = time.perf_counter()
        results.append(score_image(image, prior, operator="denoise", config=KlipConfig(num_samples=samples, num_steps=steps, seed=seed + index),
                                   tiling=tiling, block_size=4))
        seconds.append(time.perf_counter() - start)
    return results, seconds


def _windows(steps: int) -> list[tuple[int, int]]:
    from napari_klip.core.klip import default_window

    return sorted({default_window(steps), (0, steps), (steps // 2, steps), (int(0.8 * steps), steps)})


def _auc(results: list, masks: list[np.ndarray], block: int, window: tuple[int, int]) -> float:
    from napari_klip.core.metrics import image_level_roc_auc

    maps = [r.rescore(block_size=block, window=window).score_map for r in results]
    return float(image_level_roc_auc(maps, masks, block).mean_auc)


def run_cell(args: argparse.Namespace, source: str = "cell") -> dict:
    from napari_klip.core.metrics import baseline_image_level_aucs

    val_images, val_masks, _ = defect_set("val", seed=1, source=source)
    test_images, test_masks, test_kinds = defect_set("test", seed=2, source=source)
    val, _ = _klip_results(val_images, args.model, args.steps, args.samples, "random-shift", 0)
    grid = {(block, window): _auc(val, val_masks, block, window) for block, window in itertools.product((4, 8), _windows(args.steps))}
    (block, window), val_auc = max(grid.items(), key=lambda item: item[1])
    test, seconds = _klip_results(test_images, args.model, args.steps, args.samples, "random-shift", 1000)
    record = {
        "task": f"{source}-defects",
        "validation": {f"block {b}, window {w}": round(a, 4) for (b, w), a in grid.items()},
        "chosen": {"block_size": block, "window": list(window), "val_auc": round(val_auc, 4)},
        "test_klip_auc": round(_auc(test, test_masks, block, window), 4),
        "test_by_kind": {},
        "test_baselines": {},
        "seconds_per_image": round(float(np.mean(seconds)), 2),
    }
    for name, result in baseline_image_level_aucs(list(test_images), [r.reconstruction for r in test], test_masks, block).items():
        record["test_baselines"][name] = round(float(result.mean_auc), 4)
    for kind in (DEFECTS if source == "cell" else TEXTURE_DEFECTS):
        chosen = [i for i, k in enumerate(test_kinds) if k == kind]
        record["test_by_kind"][kind] = round(_auc([test[i] for i in chosen], [test_masks[i] for i in chosen], block, window), 4)
    return record


def run_tiling(args: argparse.Namespace) -> dict:
    images, masks, _ = defect_set("val", seed=1)
    record = {"task": "tiling", "images": len(images)}
    for tiling in ("random-shift", "overlap"):
        results, seconds = _klip_results(images, args.model, args.steps, args.samples, tiling, 0)
        energy = np.stack([r.trace.energy.mean(axis=0) for r in results])  # (N, H, W), all steps
        border = np.zeros(energy.shape[1:], bool)
        border[15::16, :] = border[16::16, :] = True  # the overlap tiles' borders (patch 32, stride 16, offset 16)
        border[:, 15::16] = border[:, 16::16] = True
        record[tiling] = {
            "val_auc_block4_default_window": round(_auc(results, masks, 4, results[0].window), 4),
            "seam_ratio": round(float(energy[:, border].mean() / energy[:, ~border].mean()), 4),
            "network_batches_per_image": results[0].parameters["patch_prior"]["network_batches"],
            "seconds_per_image": round(float(np.mean(seconds)), 2),
        }
    return record


def run_defect(args: argparse.Namespace) -> dict:
    """The 3-px defect at 256×320: rank of its block in the trained prior's native-resolution KLIP map."""
    from napari_klip.core.metrics import block_means
    from skimage.data import cell

    clean = cell()[402:658, 0:320].astype(np.float32)
    image = clean.copy()
    row, col = 180, 100
    image[row : row + 3, col : col + 3] += args.amplitude
    (result,), seconds = _klip_results(image[None], args.model, args.steps, args.samples, "random-shift", 0)

    def rank(pixel_map: np.ndarray, block: int) -> int:
        blocks = block_means(pixel_map, block)
        return int((blocks > blocks[row // block, col // block]).sum()) + 1

    ranks = {f"block {block}, window {window}": rank(result.trace.energy[window[0] : window[1]].mean(axis=0), block)
             for block, window in itertools.product((8, 16), _windows(args.steps))}
    residual = np.abs(image - result.reconstruction)
    return {"task": "defect-256x320", "amplitude": args.amplitude, "klip_ranks": ranks,
            "residual_ranks": {f"block {b}": rank(residual, b) for b in (8, 16)}, "blocks": {"8": 1280, "16": 320},
            "mean_abs_reconstruction_error": round(float(np.abs(clean - result.reconstruction).mean()), 2),
            "seconds": round(seconds[0], 1)}


BRAIN_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_brain_mri_tumor.npz"


def brain_slices(path: Path = BRAIN_DATA) -> dict[str, list]:
    """Per volume: the normalised slices (volume / its 99.5th percentile, clipped to [0, 1.2]), masks, tumour flags."""
    data = np.load(path)
    volumes = {}
    for name in ("brain1", "brain2"):
        volume = data[f"{name}_image"].astype(np.float32)
        volume = np.clip(volume / np.percentile(volume, 99.5), 0, 1.2)
        labels = data[f"{name}_label"] > 0
        volumes[name] = [(volume[..., k], labels[..., k]) for k in range(volume.shape[-1])]
    return volumes


def run_brain(args: argparse.Namespace) -> dict:
    """Real tumours: KLIP (denoise) on the tumour slices; val = brain2's, test = brain1's; prior on tumour-free slices of both."""
    from napari_klip.core.metrics import baseline_image_level_aucs, image_level_roc_auc

    volumes = brain_slices()
    parts = {split: [(image, mask) for image, mask in volumes[name] if mask.any()] for split, name in (("val", "brain2"), ("test", "brain1"))}
    bodies = {split: [image > 0.05 for image, _ in items] for split, items in parts.items()}
    scored = {}
    for split, items in parts.items():
        scored[split] = _klip_results(np.stack([image for image, _ in items]), args.model, args.steps, args.samples, "random-shift",
                                      0 if split == "val" else 1000)
    def auc(split: str, block: int, window: tuple[int, int]) -> float:
        results = scored[split][0]
        maps = [r.rescore(block_size=block, window=window).score_map for r in results]
        return float(image_level_roc_auc(maps, [m for _, m in parts[split]], block, bodies[split]).mean_auc)

    grid = {(block, window): auc("val", block, window) for block, window in itertools.product((8, 16), _windows(args.steps))}
    (block, window), val_auc = max(grid.items(), key=lambda item: item[1])
    test_results = scored["test"][0]
    baselines = baseline_image_level_aucs([image for image, _ in parts["test"]], [r.reconstruction for r in test_results],
                                          [m for _, m in parts["test"]], block, bodies["test"])
    return {
        "task": "brain-tumours",
        "slices": {split: len(items) for split, items in parts.items()},
        "validation": {f"block {b}, window {w}": round(a, 4) for (b, w), a in grid.items()},
        "chosen": {"block_size": block, "window": list(window), "val_auc": round(val_auc, 4)},
        "test_klip_auc": round(auc("test", block, window), 4),
        "test_baselines": {name: round(float(result.mean_auc), 4) for name, result in baselines.items()},
        "seconds_per_image": round(float(np.mean(scored["test"][1])), 2),
    }


def run_large(args: argparse.Namespace) -> dict:
    import torch

    from napari_klip.api.klip import score_image
    from napari_klip.core.options import KlipConfig
    from napari_klip.core.prior import load_prior
    from skimage.data import cell

    source = cell().astype(np.float32)
    reps = (-(-args.size // source.shape[0]), -(-args.size // source.shape[1]))
    image = np.tile(source, reps)[: args.size, : args.size]
    prior = load_prior(args.model, device="cpu")
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    updates = []
    start = time.perf_counter()
    result = score_image(image, prior, operator="denoise", config=KlipConfig(num_samples=1, num_steps=2, stop_after_step=1, seed=0),
                         window=(0, 1), patch_batch=args.patch_batch, progress=updates.append)
    wall = time.perf_counter() - start
    return {
        "task": "large",
        "size": args.size,
        "patch_batch": result.parameters["patch_prior"]["patch_batch"],
        "tiles_per_step": result.parameters["patch_prior"]["tiles_per_image_per_step"],
        "network_batches": result.parameters["patch_prior"]["network_batches"],
        "progress_updates": len(updates),
        "heatmap_shape": list(result.heatmap.shape),
        "seconds_for_one_step": round(wall, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_scoring_mib": round(baseline_rss, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("cell", "gravel", "tiling", "large", "brain", "defect"))
    parser.add_argument("--amplitude", type=float, default=40.0, help="defect: grey levels added to the 3×3 defect")
    parser.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "src/napari_klip/data/priors/cell32-patch-tiny-cpu"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--patch-batch", type=int, default=None)
    parser.add_argument("--out", type=Path, help="append the JSON record to this file (JSON lines)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run_gravel = lambda args: run_cell(args, source="gravel")  # noqa: E731
    record = {"cell": run_cell, "gravel": run_gravel, "tiling": run_tiling, "large": run_large, "brain": run_brain, "defect": run_defect}[args.task](args)
    record.update(model=args.model, steps=args.steps, samples=args.samples, host=platform.machine(), loadavg=os.getloadavg())
    print(json.dumps(record, indent=1))
    if args.out:
        with args.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
