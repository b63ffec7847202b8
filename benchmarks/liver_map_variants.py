"""Prior z-map variants on the liver-lesion **val** split only: does another form of the map do better?

The exploration behind ``docs/benchmarks.md`` ("A stronger trivial baseline", the table of map
variants). Nothing here is chosen for the product and nothing touches the test split; each
variant is reported at every smoothing and at its best one, beside the shipped map and the
baselines on the same slices.

Per val slice (``--n-val`` clean + lesion slices of :func:`liver_lesions.build_split`, or with
``--anomaly star`` clean + star-artefact slices) the observed image — the filtered
back-projection of noiseless 24-view CT, or with ``--source truth`` the slice itself — is noised
``--draws`` times at each of nine timesteps (25 … 750) and denoised in one Tweedie step (the
recipe of :mod:`napari_klip.core.prior_z`); the signed mean ``m_t`` and the spread ``s_t`` of
the residual ``x − x̂0`` are kept. Variants:

* ``shipped`` — ``mean_t |m_t| / s_t`` over the shipped seven timesteps (the prior z-map);
  ``shipped-low`` the same over the five timesteps 25–250;
* ``signed`` / ``signed-low`` — ``|G_σ * mean_t (m_t / s_t)|``: smoothed before the absolute
  value, a matched filter for a blob whose residual has one sign;
* ``calibrated`` — ``Σ_t (G_σ * z_t / c_t)²`` with ``c_t`` the spread of ``G_σ * z_t`` over the
  body pixels of the clean val slices (per-noise-level calibration, in the spirit of MSMA,
  Mahmood et al., ICLR 2021);
* ``z-minus-surround`` — ``G_σ c − G_3σ c`` of the shipped map ``c``;
* ``shipped-times-depth`` — the shipped map times the body depth (a soft body restriction:
  lesions lie inside organs, edges of the body are where texture maps fire);
* ``ensemble`` (``--extra-model``) — the shipped map averaged over two priors;
* ``reference`` (``--extra-model``) — the second prior's own shipped map;
* ``ratio-z`` / ``ratio-z2`` (``--extra-model``) — the likelihood-ratio idea of Ren et al.
  (NeurIPS 2019) and Schirrmeister et al. (NeurIPS 2020) per pixel: the shipped map (mean ``|z_t|``,
  or mean ``z_t²``) of the liver prior minus that of a reference prior trained on all organs, so
  that what is hard for any CT prior (edges, texture) cancels and what is unlike *liver* remains;
* ``ratio-error`` / ``ratio-error-low`` (``--extra-model``) — the same difference on the
  denoising-ELBO terms: ``Σ_t SNR_t (E_liver[(x − x̂0)²] − E_reference[(x − x̂0)²])`` (ε-error with
  the uniform weighting the priors were trained with; ``E[r²] = m_t² + s_t²``), over the shipped
  or the low timesteps;
* ``inpainting-z-gG`` / ``inpainting-residual-gG`` (``--inpainting``) — LMD's lift: alternating
  ``G × G`` checkerboards, 16 inpaintings × 20 respaced steps, ``|x − mean| / std`` (or ``|x −
  mean|``) over the inpaintings that hid each pixel;
* baselines ``centre``, ``body-depth`` (since session 23) and ``blob-contrast`` (σ 1, 2, 3).

Example (the documented runs; one torch thread each, ≈ 2–15 min on the 2-core Xeon)::

    M=src/napari_klip/data/priors/organamnist-liver28-tiny-cpu
    .venv/bin/python benchmarks/liver_map_variants.py --model $M --extra-model runs/liver28-v-edm-2k --inpainting \\
        --out benchmarks/results/liver_map_variants_faint.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import liver_lesions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMESTEPS = (25, 50, 100, 175, 250, 400, 500, 600, 750)
SHIPPED = (50, 100, 250, 400, 500, 600, 750)
LOW = (25, 50, 100, 175, 250)
SMOOTHINGS = (0.0, 1.0, 1.5, 2.0, 3.0)
SPREAD_FLOOR = 1e-3
INPAINTING_GRIDS = (4, 7)
INPAINTINGS, INPAINTING_STEPS = 16, 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="28² liver prior")
    parser.add_argument("--extra-model", type=Path, default=None, help="a second prior for the ensemble variant")
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "organamnist.npz")
    parser.add_argument("--n-val", type=int, nargs=2, default=[40, 80], metavar=("ID", "OOD"))
    parser.add_argument("--lesion-contrast", type=float, default=None, help="as in liver_lesions.py (default: ±0.10-0.25)")
    parser.add_argument("--anomaly", choices=("lesion", "star"), default="lesion", help="the OOD slices scored")
    parser.add_argument("--source", choices=("fbp", "truth"), default="fbp",
                        help="the image the maps see: the filtered back-projection, or the slice itself")
    parser.add_argument("--draws", type=int, default=16)
    parser.add_argument("--inpainting", action="store_true", help="also the inpainting variants (≈ 6× the cost)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def residual_statistics(prior: Any, image_model: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, H, W)`` signed mean and spread of ``x − x̂0`` over ``draws`` noisings at each of :data:`TIMESTEPS`."""
    import torch

    from napari_klip.core.prior_z import denoising_residuals

    generator = torch.Generator().manual_seed(seed)
    clean = torch.from_numpy(image_model)[None, None]
    means, spreads = [], []
    for timestep in TIMESTEPS:
        residual = denoising_residuals(prior, clean, timestep, draws, generator)[:, 0]
        means.append(residual.mean(axis=0))
        spreads.append(residual.std(axis=0))
    return np.array(means), np.array(spreads)


def inpainting_statistics(prior: Any, image_model: np.ndarray, grid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread, per pixel, of the inpaintings that hid it (alternating ``grid × grid`` checkerboards)."""
    import torch

    from napari_klip.core.lmd.inpaint import iter_reconstructions
    from napari_klip.core.lmd.masks import checkerboard_masks
    from napari_klip.core.progress import drive

    masks = checkerboard_masks(prior.image_size, INPAINTINGS, grid=grid)
    images = torch.from_numpy(image_model)[None, None]
    reconstructions = drive(iter_reconstructions(prior, images, masks, INPAINTING_STEPS, seed=seed))[0, :, 0].cpu().numpy()
    hidden = masks.astype(np.float64)
    count = hidden.sum(axis=0)
    mean = (reconstructions * hidden).sum(axis=0) / count
    spread = np.sqrt((((reconstructions - mean) ** 2) * hidden).sum(axis=0) / (count - 1))
    return mean, spread


def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(values, sigma) if sigma else values


def z_scores(raw: dict[str, Any], timesteps: tuple[int, ...], key: str = "") -> np.ndarray:
    rows = [TIMESTEPS.index(t) for t in timesteps]
    return raw[f"mean{key}"][rows] / (raw[f"spread{key}"][rows] + SPREAD_FLOOR)


def calibration(raws: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[float, np.ndarray]:
    """Per smoothing, the spread of each shipped timestep's smoothed signed z over the clean slices' body pixels."""
    out = {}
    for sigma in SMOOTHINGS:
        pooled = [[] for _ in SHIPPED]
        for raw, record in zip(raws, records, strict=True):
            if record["kind"] == "id":
                for row, z in enumerate(z_scores(raw, SHIPPED)):
                    pooled[row].append(smooth(z, sigma)[record["body"]])
        out[sigma] = np.array([np.concatenate(values).std() for values in pooled])
    return out


def variant_map(name: str, raw: dict[str, Any], sigma: float, calibrated: dict[float, np.ndarray]) -> np.ndarray:
    """The pixel map of one variant at smoothing ``sigma`` (each variant applies it where its definition says)."""
    from napari_klip.core.baselines import blob_contrast_map, body_depth_map, centre_map

    if name in ("shipped", "shipped-low"):
        return smooth(np.abs(z_scores(raw, SHIPPED if name == "shipped" else LOW)).mean(axis=0), sigma)
    if name in ("signed", "signed-low"):
        return np.abs(smooth(z_scores(raw, SHIPPED if name == "signed" else LOW).mean(axis=0), sigma))
    if name == "calibrated":
        return sum((smooth(z, sigma) / spread) ** 2 for z, spread in zip(z_scores(raw, SHIPPED), calibrated[sigma], strict=True))
    if name == "z-minus-surround":
        shipped = np.abs(z_scores(raw, SHIPPED)).mean(axis=0)
        return smooth(shipped, sigma) - smooth(shipped, 3 * max(sigma, 1.0))
    if name == "ensemble":
        both = np.concatenate([np.abs(z_scores(raw, SHIPPED)), np.abs(z_scores(raw, SHIPPED, "_extra"))])
        return smooth(both.mean(axis=0), sigma)
    if name == "reference":
        return smooth(np.abs(z_scores(raw, SHIPPED, "_extra")).mean(axis=0), sigma)
    if name in ("ratio-z", "ratio-z2"):
        power = 1 if name == "ratio-z" else 2
        liver, reference = (np.abs(z_scores(raw, SHIPPED, key)) ** power for key in ("", "_extra"))
        return smooth(liver.mean(axis=0) - reference.mean(axis=0), sigma)
    if name in ("ratio-error", "ratio-error-low"):
        rows = [TIMESTEPS.index(t) for t in (SHIPPED if name == "ratio-error" else LOW)]
        error = {key: raw[f"mean{key}"][rows] ** 2 + raw[f"spread{key}"][rows] ** 2 for key in ("", "_extra")}
        snr = raw["snr"][rows][:, None, None]
        return smooth((snr * (error[""] - error["_extra"])).sum(axis=0), sigma)
    if name.startswith("inpainting-"):
        grid = name.rsplit("-g", 1)[1]
        residual = np.abs(raw["observed_model"] - raw[f"inpainted_mean{grid}"])
        if name.startswith("inpainting-z"):
            residual = residual / (raw[f"inpainted_spread{grid}"] + SPREAD_FLOOR)
        return smooth(residual, sigma)
    if name == "centre":
        return centre_map(raw["observed_model"].shape)
    if name == "body-depth":
        return smooth(body_depth_map(raw["observed_model"]), sigma)
    if name == "shipped-times-depth":
        return smooth(np.abs(z_scores(raw, SHIPPED)).mean(axis=0), sigma) * body_depth_map(raw["observed_model"])
    if name.startswith("blob-contrast"):
        return smooth(blob_contrast_map(raw["observed_model"], float(name.rsplit("-", 1)[1])), sigma)
    raise KeyError(name)


def evaluate(name: str, raws: list[dict[str, Any]], records: list[dict[str, Any]], sigma: float,
             calibrated: dict[float, np.ndarray]) -> dict[str, float]:
    """Image-level (OOD slices, body pixels) and dataset-level (largest body pixel) ROC-AUC."""
    from napari_klip.core.metrics import dataset_roc_auc, image_level_roc_auc

    clean_scores, ood_scores, maps, masks, bodies = [], [], [], [], []
    for raw, record in zip(raws, records, strict=True):
        values = variant_map(name, raw, sigma, calibrated)
        (clean_scores if record["kind"] == "id" else ood_scores).append(float(values[record["body"]].max()))
        if record["kind"] != "id":
            maps.append(values)
            masks.append(record["mask"])
            bodies.append(record["body"])
    return {"image_level": image_level_roc_auc(maps, masks, 1, bodies).mean_auc, "dataset_level": dataset_roc_auc(clean_scores, ood_scores)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from napari_klip.core.operators import build_operator
    from napari_klip.core.prior import load_prior

    torch.set_num_threads(1)
    started = time.perf_counter()
    prior = load_prior(args.model)
    extra = load_prior(args.extra_model) if args.extra_model else None
    operator = build_operator("ct", prior.image_size, {"n_views": 24})
    alpha_bar = prior.scheduler.alphas_cumprod.double().numpy()
    if extra is not None and not np.allclose(extra.scheduler.alphas_cumprod.double().numpy(), alpha_bar):
        raise SystemExit("--extra-model must share the prior's noise schedule (the ratio variants compare the same noise levels)")
    snr = np.array([alpha_bar[t] / (1 - alpha_bar[t]) for t in TIMESTEPS])
    records = [r for r in liver_lesions.build_split(args.data, "val", tuple(args.n_val), args.seed, args.lesion_contrast)
               if r["kind"] in ("id", args.anomaly)]
    raws = []
    for number, record in enumerate(records):
        if args.source == "truth":
            observed = record["image"].astype(np.float32)
        else:
            image = torch.from_numpy(record["image"].astype(np.float64))[None, None]
            observed = operator.approximate_inverse(operator(image))[0, 0].numpy().astype(np.float32)
        observed_model = prior.to_model_range(observed)
        raw: dict[str, Any] = {"observed_model": observed_model, "snr": snr}
        raw["mean"], raw["spread"] = residual_statistics(prior, observed_model, args.draws, 10_000 + number)
        if extra is not None:
            raw["mean_extra"], raw["spread_extra"] = residual_statistics(extra, extra.to_model_range(observed), args.draws, 10_000 + number)
        if args.inpainting:
            for grid in INPAINTING_GRIDS:
                raw[f"inpainted_mean{grid}"], raw[f"inpainted_spread{grid}"] = inpainting_statistics(prior, observed_model, grid, 20_000 + number)
        raws.append(raw)
        if (number + 1) % 20 == 0:
            print(f"  {number + 1}/{len(records)} slices, {time.perf_counter() - started:.0f} s", flush=True)

    names = ["centre", "body-depth", "blob-contrast-1", "blob-contrast-2", "blob-contrast-3", "shipped", "shipped-low", "signed", "signed-low",
             "calibrated", "z-minus-surround", "shipped-times-depth"]
    names += ["ensemble", "reference", "ratio-z", "ratio-z2", "ratio-error", "ratio-error-low"] if extra is not None else []
    names += [f"inpainting-{kind}-g{grid}" for grid in INPAINTING_GRIDS for kind in ("z", "residual")] if args.inpainting else []
    calibrated = calibration(raws, records)
    table = {}
    for name in names:
        smoothings = (0.0,) if name == "centre" else SMOOTHINGS
        rows = {str(sigma): evaluate(name, raws, records, sigma, calibrated) for sigma in smoothings}
        best = max(rows, key=lambda sigma: rows[sigma]["image_level"])
        table[name] = {"best_smoothing": float(best), "best_image_level": rows[best]["image_level"], "by_smoothing": rows}
        print(f"  {name:24s} best σ {best:>4s}: image-level {rows[best]['image_level']:.3f}  "
              + " ".join(f"{row['image_level']:.3f}" for row in rows.values()), flush=True)
    result = {
        "protocol": "OrganAMNIST liver val split only (lesion and clean slices); exploration, no test numbers",
        "model": str(args.model), "extra_model": str(args.extra_model) if args.extra_model else None,
        "n_val": args.n_val, "anomaly": args.anomaly, "lesion_contrast": args.lesion_contrast, "source": args.source, "draws": args.draws,
        "timesteps": list(TIMESTEPS), "shipped_timesteps": list(SHIPPED), "smoothings": list(SMOOTHINGS),
        "hardware": f"{platform.processor() or platform.machine()} CPU, 1 torch thread",
        "wall_time_s": round(time.perf_counter() - started, 1),
        "variants": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
