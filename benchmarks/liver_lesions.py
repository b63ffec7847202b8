"""Liver-lesion localization on real CT slices, with settings chosen on validation data.

The detection-issue protocol (``docs/benchmarks.md``, "Liver lesions: validation → test"):

* **Data**: OrganAMNIST liver slices (class 6, 28×28 abdominal CT). The **val** split chooses
  every setting; the **test** split reports. In each split the first ``--n-id`` slices of a
  seeded permutation stay clean (ID); the next ``--n-ood`` each get one lesion
  (:func:`~napari_klip.core.anomalies.insert_lesion`) and, separately, one star artefact
  (:func:`~napari_klip.core.anomalies.insert_star_artifact`), with pixel masks.
* **Measurement**: noiseless sparse-view CT (``--n-views`` parallel-beam angles) at the prior's
  grid (28² for a native OrganAMNIST prior: nothing is resized).
* **Maps** (one per family; each family's window / block / smoothing is the best on val):

  - ``klip-energy``: the KLIP guidance energy (``jacobian-free`` guidance, the paper's sampler);
  - ``klip-coherent``: the energy of the sample-mean update (the part all posterior samples
    agree on; the trace's ``coherent_energy``);
  - ``klip-relative``: the energy divided by the mean energy of the same sampler on
    measurements of the prior's own samples (removes what the operator alone puts into the
    map, e.g. CT's central blob; calibration by the prior, no real images);
  - ``prior-z``: the denoising z-map of the filtered back-projection: noised at timestep
    ``t`` ``--draws`` times, denoised in one step, ``|mean residual| / std residual``;
  - ``prior-z-multi``: the mean of the ``prior-z`` maps over all ``--z-timesteps`` (several
    noise levels at once, as in Graham et al., CVPR-W 2023, who compare reconstructions from
    a range of timesteps);
  - baselines — ``centre`` (closeness to the image centre), ``body-depth`` (distance to the
    edge of the back-projection's body; since session 23), ``local-contrast``
    (``|x − 5×5 mean|`` of the back-projection), ``blob-contrast`` (``|G_σ x − G_3σ x|`` of
    the back-projection, σ chosen on val; since session 22) and ``residual``
    (``|back-projection − posterior mean|``).

* **Metrics**: image-level ROC-AUC (blocks inside the clean slice's body mask, averaged over
  OOD slices) and dataset-level ROC-AUC (image score = largest body block), per anomaly kind.

Example (the reported CPU run; one torch thread per process)::

    .venv/bin/python benchmarks/liver_lesions.py --model src/napari_klip/data/priors/organamnist-liver28-tiny-cpu \\
        --n-val 20 20 --n-test 50 100 --out benchmarks/results/liver_lesions.json

On a GPU (``scripts/gpu_session.sh`` runs it so, with ``--data gpu_data/liver28.npz``)::

    python benchmarks/liver_lesions.py --model runs/liver28-small-gpu --device cuda --samples 8 --steps 100 \\
        --out liver_lesions_gpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_klip.core.prior_z import DEFAULT_Z_TIMESTEPS

ROOT = Path(__file__).resolve().parents[1]
LIVER = 6
KINDS = ("lesion", "star")
FRACTIONS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0), (0.5, 1.0), (0.3, 0.7))
BLOCKS = (1, 2)
#: Gaussian smoothings (px) tried on val; before session 21 (0, 1) with prior-z timesteps (100, 250), in session 21 (0, 1, 2),
#: in session 22 (0 .. 3); since session 23 (0 .. 5), because the val star maps still rose at 3 px.
SMOOTHING = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
#: Inner widths (px) of the blob-contrast baseline tried on val (since session 22).
BLOB_SIGMAS = (1.0, 2.0, 3.0)
FAMILIES = ("klip-energy", "klip-coherent", "klip-relative", "prior-z", "prior-z-multi", "centre", "body-depth", "local-contrast",
            "blob-contrast", "residual")
BASELINES = ("centre", "body-depth", "local-contrast", "blob-contrast", "residual")
#: Clean and OOD slices of one test set; ``--test-set N`` passes over N sets of this size.
TEST_SET_SIZE = (50, 100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="prior folder (28² OrganAMNIST liver prior)")
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "organamnist.npz")
    parser.add_argument("--n-val", type=int, nargs=2, default=[20, 20], metavar=("ID", "OOD"), help="clean and OOD slices of the val split")
    parser.add_argument("--n-test", type=int, nargs=2, default=list(TEST_SET_SIZE), metavar=("ID", "OOD"),
                        help="clean and OOD slices of the test split")
    parser.add_argument("--n-views", type=int, default=24)
    parser.add_argument("--samples", type=int, default=4, help="posterior samples S")
    parser.add_argument("--steps", type=int, default=30, help="reverse steps K")
    parser.add_argument("--reference-samples", type=int, default=8, help="prior samples behind klip-relative")
    parser.add_argument("--z-timesteps", type=int, nargs="+", default=list(DEFAULT_Z_TIMESTEPS),
                        help="prior-z noise levels (default: those of napari_klip.core.prior_z; before session 21: 100 250)")
    parser.add_argument("--smoothing", type=float, nargs="+", default=list(SMOOTHING),
                        help="Gaussian smoothings (px) tried on val (before session 21: 0 1)")
    parser.add_argument("--draws", type=int, default=16, help="prior-z noise draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lesion-contrast", type=float, default=None,
                        help="every lesion's contrast (fraction of the body's 2-98 %% range; the demo sample's is 0.3); "
                             "default: insert_lesion's random ±0.10-0.25")
    parser.add_argument("--test-set", type=int, default=0, metavar="N",
                        help="report on the N-th disjoint test set of the test split: 0 = the first --n-test slices; N > 0 = the "
                             "--n-test slices after N sets of 50 + 100 (none in sets 0..N-1: confirmation sets for settings explored "
                             "while looking at earlier ones)")
    parser.add_argument("--fresh-test", action="store_true", help="the same as --test-set 1 (session 21's confirmation set)")
    parser.add_argument("--no-klip", action="store_true",
                        help="prior-z and the prior-free baselines only (no KLIP sampling, no residual baseline): minutes instead of hours")
    parser.add_argument("--splits", nargs="+", default=["val", "test"], choices=("val", "test"))
    parser.add_argument("--maps-cache", type=Path, default=None, help="folder for per-split map caches (.npz)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the prior runs (the reported tables: cpu)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "liver_lesions.json")
    args = parser.parse_args(argv)
    if args.fresh_test:
        if args.test_set not in (0, 1):
            parser.error("--fresh-test is --test-set 1; give one of them")
        args.test_set = 1
    if args.test_set < 0:
        parser.error("--test-set must be >= 0")
    return args


# --------------------------------------------------------------------------- data


def build_split(data: Path, split: str, counts: tuple[int, int], seed: int, lesion_contrast: float | None = None,
                exclude: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """``counts[0]`` clean slices and ``counts[1]`` slices with a lesion and with a star, with masks.

    Slices whose index is in ``exclude`` are passed over (``--test-set``: test sets disjoint
    from the earlier ones).
    """
    from napari_klip.core.anomalies import foreground_mask, insert_lesion, insert_star_artifact

    with np.load(data) as archive:
        images, labels = archive[f"{split}_images"], archive[f"{split}_labels"].ravel()
    order = np.random.default_rng([seed, 0]).permutation(np.flatnonzero(labels == LIVER))
    seeds = np.random.default_rng([seed, 1]).integers(0, 2**31 - 1, size=(order.size, 2))
    records: list[dict[str, Any]] = []
    clean = ood = 0
    n_clean, n_ood = counts
    for position, index in enumerate(order):
        if clean == n_clean and ood == n_ood:
            break
        if int(index) in exclude:
            continue
        image = images[index].astype(np.float32)
        body = foreground_mask(image)
        if not body.any():
            continue
        if clean < n_clean:
            records.append({"index": int(index), "kind": "id", "image": image, "body": body, "mask": np.zeros_like(body)})
            clean += 1
            continue
        try:
            lesion = insert_lesion(image, foreground=body, contrast=lesion_contrast, seed=int(seeds[position, 0]))
            star = insert_star_artifact(image, foreground=body, seed=int(seeds[position, 1]))
        except ValueError:
            continue
        for kind, anomaly in (("lesion", lesion), ("star", star)):
            records.append({"index": int(index), "kind": kind, "image": anomaly.image.astype(np.float32), "body": body, "mask": anomaly.mask})
        ood += 1
    if clean < n_clean or ood < n_ood:
        raise SystemExit(f"the {split} split has only {clean} clean and {ood} usable OOD liver slices")
    return records


def disjoint_test_set(data: Path, counts: tuple[int, int], seed: int, lesion_contrast: float | None, test_set: int,
                      set_size: tuple[int, int] = TEST_SET_SIZE) -> list[dict[str, Any]]:
    """``counts`` slices of the test split that pass over the slices of ``test_set`` earlier sets of ``set_size`` each.

    Set ``N`` of the default size is disjoint from sets ``0 .. N − 1``; a smaller ``counts`` (a GPU
    run that fits fewer slices) takes the first slices of set ``N``, still none of the earlier ones.
    """
    exclude: frozenset[int] = frozenset()
    for _ in range(test_set):
        exclude |= frozenset(r["index"] for r in build_split(data, "test", set_size, seed, lesion_contrast, exclude))
    return build_split(data, "test", counts, seed, lesion_contrast, exclude)


# --------------------------------------------------------------------------- maps


def _run_klip(prior: Any, operator: Any, measurement: Any, config: Any) -> Any:
    from napari_klip.core.klip import iter_klip_sampling

    steps = iter_klip_sampling(prior, operator, measurement, config)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def reference_trace(prior: Any, operator: Any, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Mean KLIP energy of the sampler on measurements of the prior's own samples."""
    import torch

    from napari_klip.core.klip import KlipConfig, measurement_to_model_range
    from napari_klip.core.sampling import sample_prior

    samples = sample_prior(prior, args.reference_samples, 50, seed=args.seed + 777)
    energies, coherent = [], []
    for number, sample in enumerate(samples):
        image = torch.from_numpy(np.asarray(sample, dtype=np.float64).reshape(1, 1, *prior.image_size))
        measurement = measurement_to_model_range(prior, operator, operator(image).float())
        config = KlipConfig(num_samples=args.samples, num_steps=args.steps, seed=args.seed + 5000 + number)
        trace = _run_klip(prior, operator, measurement, config)
        energies.append(trace.energy)
        coherent.append(trace.coherent_energy)
    return {"energy": np.mean(energies, axis=0), "coherent": np.mean(coherent, axis=0)}


def prior_z_maps(prior: Any, image_model: np.ndarray, timesteps: list[int], draws: int, seed: int) -> dict[int, np.ndarray]:
    """The prior z-map of each timestep (:func:`napari_klip.core.prior_z.iter_prior_z_maps`)."""
    from napari_klip.core.progress import drive
    from napari_klip.core.prior_z import iter_prior_z_maps

    return drive(iter_prior_z_maps(prior, image_model, timesteps=timesteps, draws=draws, seed=seed))


def compute_maps(prior: Any, operator: Any, records: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Raw per-image maps: KLIP traces, prior-z maps, back-projection and posterior mean."""
    import torch

    from napari_klip.core.klip import KlipConfig, measurement_to_model_range

    out = []
    start = time.perf_counter()
    for number, record in enumerate(records):
        image = torch.from_numpy(record["image"].astype(np.float64))[None, None]
        measurement = operator(image)
        observed = operator.approximate_inverse(measurement)[0, 0].numpy()
        model_measurement = measurement_to_model_range(prior, operator, measurement.float())
        observed_model = prior.to_model_range(observed.astype(np.float32))
        z_maps = prior_z_maps(prior, observed_model, args.z_timesteps, args.draws, args.seed + 10_000 + number)
        raw = {"observed": observed, **{f"z{t}": z for t, z in z_maps.items()}}
        if not args.no_klip:
            config = KlipConfig(num_samples=args.samples, num_steps=args.steps, seed=args.seed + number)
            trace = _run_klip(prior, operator, model_measurement, config)
            raw.update(energy=trace.energy, coherent=trace.coherent_energy,
                       posterior_mean=prior.from_model_range(trace.reconstruction[0]))
        out.append(raw)
        if (number + 1) % 10 == 0:
            print(f"  {number + 1}/{len(records)} images, {time.perf_counter() - start:.0f} s", flush=True)
    return out


def add_missing_z_maps(prior: Any, raws: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """Add the prior-z maps of ``--z-timesteps`` a cached split lacks; True if any were added.

    Each added map has its own seed (image and timestep), so a top-up does not depend on which
    timesteps the cache held; its noise draws differ from a fresh run's, which draws all
    timesteps of an image from one generator.
    """
    missing = sorted({t for t in args.z_timesteps for raw in raws if f"z{t}" not in raw})
    for number, raw in enumerate(raws):
        observed_model = prior.to_model_range(raw["observed"].astype(np.float32))
        for timestep in missing:
            z = prior_z_maps(prior, observed_model, [timestep], args.draws, args.seed + 10_000 + number + 1_000_003 * timestep)
            raw[f"z{timestep}"] = z[timestep]
    return bool(missing)


def family_maps(family: str, raw: dict[str, Any], reference: dict[str, np.ndarray], setting: dict[str, Any]) -> np.ndarray:
    """The pixel map of one family at one setting (window fraction or z timestep)."""
    from napari_klip.core.baselines import blob_contrast_map, body_depth_map, centre_map, local_contrast_map, residual_map

    if family.startswith("klip"):
        steps = raw["energy"].shape[0]
        low, high = setting["window"]
        first, last = int(low * steps), max(int(high * steps), int(low * steps) + 1)
        if family == "klip-energy":
            return raw["energy"][first:last].mean(axis=0)
        if family == "klip-coherent":
            return raw["coherent"][first:last].mean(axis=0)
        expected = reference["energy"][first:last].mean(axis=0)
        return raw["energy"][first:last].mean(axis=0) / (expected + 1e-3 * expected.mean())
    if family == "prior-z":
        return raw[f"z{setting['timestep']}"]
    if family == "prior-z-multi":
        return np.mean([raw[f"z{t}"] for t in setting["timesteps"]], axis=0)
    if family == "centre":
        return centre_map(raw["observed"].shape)
    if family == "body-depth":
        return body_depth_map(raw["observed"])
    if family == "local-contrast":
        return local_contrast_map(raw["observed"])
    if family == "blob-contrast":
        return blob_contrast_map(raw["observed"], setting["sigma"])
    return residual_map(raw["observed"], raw["posterior_mean"])


def families(args: argparse.Namespace) -> tuple[str, ...]:
    """The map families of this run (without KLIP: prior-z and the baselines that need no posterior)."""
    if args.no_klip:
        return tuple(f for f in FAMILIES if not f.startswith("klip") and f != "residual")
    return FAMILIES


def settings_of(family: str, z_timesteps: list[int], smoothings: list[float]) -> list[dict[str, Any]]:
    """Every setting a family is tried with on val."""
    if family.startswith("klip"):
        first = [{"window": w} for w in FRACTIONS]
    elif family == "prior-z":
        first = [{"timestep": t} for t in z_timesteps]
    elif family == "prior-z-multi":
        first = [{"timesteps": list(z_timesteps)}]
    elif family == "blob-contrast":
        first = [{"sigma": sigma} for sigma in BLOB_SIGMAS]
    else:
        first = [{}]
    return [dict(s, block=b, smoothing=g) for s, b, g in itertools.product(first, BLOCKS, smoothings)]


# --------------------------------------------------------------------------- metrics


def evaluate(records: list[dict[str, Any]], raws: list[dict[str, Any]], reference: dict[str, np.ndarray],
             family: str, setting: dict[str, Any], kind: str) -> dict[str, float]:
    """Image-level (OOD slices of ``kind``) and dataset-level (ID vs ``kind``) ROC-AUC."""
    from scipy import ndimage as ndi

    from napari_klip.core.metrics import block_means, dataset_roc_auc, image_level_roc_auc

    block = setting["block"]
    id_scores, ood_scores, ood_maps, ood_masks, ood_bodies = [], [], [], [], []
    for record, raw in zip(records, raws, strict=True):
        if record["kind"] not in ("id", kind):
            continue
        values = family_maps(family, raw, reference, setting)
        if setting["smoothing"]:
            values = ndi.gaussian_filter(values, setting["smoothing"])
        block_values = block_means(values, block)
        inside = block_means(record["body"].astype(float), block) >= 0.5
        (ood_scores if record["kind"] == kind else id_scores).append(float(block_values[inside].max()))
        if record["kind"] == kind:
            ood_maps.append(block_values)
            ood_masks.append(record["mask"])
            ood_bodies.append(record["body"])
    level = image_level_roc_auc(ood_maps, ood_masks, block, ood_bodies)
    return {"image_level": level.mean_auc, "dataset_level": dataset_roc_auc(id_scores, ood_scores), "images": level.images_used}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from napari_klip.core.operators import build_operator
    from napari_klip.core.prior import load_prior

    torch.set_num_threads(args.threads)
    prior = load_prior(args.model, device=args.device)
    operator = build_operator("ct", prior.image_size, {"n_views": args.n_views})
    started = time.perf_counter()
    reference_cache = args.maps_cache / "reference.npz" if args.maps_cache else None
    if args.no_klip:
        reference = {}
    elif reference_cache is not None and reference_cache.exists():
        reference = dict(np.load(reference_cache))
    else:
        reference = reference_trace(prior, operator, args)
        if reference_cache is not None:
            reference_cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(reference_cache, **reference)
    split_data = {}
    for split in ("val", "test"):
        counts = args.n_val if split == "val" else args.n_test
        records = build_split(args.data, split, counts, args.seed, args.lesion_contrast) if split == "val" else \
            disjoint_test_set(args.data, counts, args.seed, args.lesion_contrast, args.test_set)
        name = "test-fresh" if split == "test" and args.test_set == 1 else f"test-{args.test_set}" if split == "test" and args.test_set else split
        cache = args.maps_cache / f"{name}.npy" if args.maps_cache else None
        if cache is not None and cache.exists():
            raws = list(np.load(cache, allow_pickle=True))
            if add_missing_z_maps(prior, raws, args):  # KLIP traces kept, prior-z maps of new timesteps added
                np.save(cache, np.array(raws, dtype=object), allow_pickle=True)
        elif split in args.splits:
            print(f"{split}: {len(records)} images", flush=True)
            raws = compute_maps(prior, operator, records, args)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, np.array(raws, dtype=object), allow_pickle=True)
        else:
            continue
        split_data[split] = (records, raws)
    if set(split_data) != {"val", "test"}:
        print("maps cached; run again with both splits to evaluate")
        return {}

    table: dict[str, Any] = {}
    for kind in KINDS:
        rows = {}
        for family in families(args):
            val_results = [(evaluate(*split_data["val"], reference, family, s, kind)["image_level"], i, s)
                           for i, s in enumerate(settings_of(family, args.z_timesteps, args.smoothing))]
            best_val, _, chosen = max(val_results, key=lambda r: (r[0], -r[1]))
            test = evaluate(*split_data["test"], reference, family, chosen, kind)
            rows[family] = {"setting": chosen, "val_image_level": best_val, **{f"test_{k}": v for k, v in test.items()},
                            "val_all": [{"setting": setting, "val_image_level": value} for value, _, setting in val_results]}
        best_baseline = max(rows[b]["test_image_level"] for b in BASELINES if b in rows)
        for row in rows.values():
            row["margin_over_best_baseline"] = row["test_image_level"] - best_baseline
        table[kind] = rows

    result = {
        "protocol": "OrganAMNIST liver (class 6); settings chosen on val (image-level ROC-AUC), reported on test",
        "prior": str(args.model),
        "n_val": args.n_val, "n_test": args.n_test, "n_views": args.n_views,
        "samples": args.samples, "steps": args.steps, "reference_samples": args.reference_samples,
        "z_timesteps": args.z_timesteps, "smoothing": args.smoothing, "draws": args.draws, "seed": args.seed,
        "lesion_contrast": args.lesion_contrast, "klip": not args.no_klip, "test_set": args.test_set,
        "device": args.device,
        "hardware": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch thread(s)"
                    + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "results": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for kind, rows in table.items():
        print(f"\n{kind}: family | setting (from val) | val image | test image | test dataset | margin")
        for family, row in rows.items():
            print(f"  {family:15s} {json.dumps(row['setting']):55s} {row['val_image_level']:.3f} "
                  f"{row['test_image_level']:.3f} {row['test_dataset_level']:.3f} {row['margin_over_best_baseline']:+.3f}")
    return result


if __name__ == "__main__":
    main()
