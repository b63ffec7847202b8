"""``train --patch-size`` and ``score`` with a patch prior: a 256×320 uint16 image scored at its native size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_klip.cli import main
from napari_klip.core.baselines import BASELINE_NAMES

SRC = Path(__file__).resolve().parents[2] / "src"


def _uint16_texture(shape, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (20_000 + 8_000 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + rng.normal(0, 300, shape)).astype(np.uint16)


@pytest.mark.slow
def test_score_with_a_patch_prior_returns_a_native_resolution_heatmap(tmp_path):
    training = np.stack([_uint16_texture((48, 64), seed) for seed in range(2)])
    tifffile.imwrite(tmp_path / "train.tif", training, photometric="minisblack")
    assert main(["train", "--data", str(tmp_path / "train.tif"), "--out", str(tmp_path / "prior"), "--patch-size", "16",
                 "--network", "tiny", "--steps", "2", "--batch-size", "4", "--device", "cpu"]) == 0
    metadata = json.loads((tmp_path / "prior" / "napari_klip_prior.json").read_text())
    assert metadata["patch_size"] == 16 and metadata["image_size"] == [16, 16]

    image = _uint16_texture((256, 320), seed=5)
    tifffile.imwrite(tmp_path / "in.tif", image, photometric="minisblack")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "napari_klip.cli", "score", "--model", str(tmp_path / "prior"), "--input", str(tmp_path / "in.tif"),
               "--operator", "denoise", "--samples", "1", "--steps", "2", "--window", "0", "2", "--patch-batch", "50",
               "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "2"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    heatmap = tifffile.imread(out / "heatmap.tif")
    assert heatmap.shape == (256, 320) and np.isfinite(heatmap).all()
    energy = np.load(out / "trace.npz")["energy"]
    assert energy.shape == (1, 2, 256, 320)  # the trace itself lives on the input's grid: no resize anywhere
    result = json.loads((out / "result.json").read_text())
    tiling = result["parameters"]["patch_prior"]
    assert tiling["working_grid"] == [256, 320] and tiling["patch_size"] == 16 and tiling["patch_batch"] == 50
    assert tiling["tiles_per_image_per_step"] == (256 // 16 + 1) * (320 // 16 + 1)
    assert tiling["network_batches"] == 2 * -(-tiling["tiles_per_image_per_step"] // 50)
    assert result["block_size"] == 16 and tifffile.imread(out / "reconstruction.tif").shape == (256, 320)


def test_evaluate_with_a_patch_prior_measures_on_the_native_grid(tmp_path):
    from dataclasses import replace

    from napari_klip.core.prior import create_prior

    prior = create_prior(16, network="tiny", intensity_range=(0.0, 255.0))
    prior.metadata = replace(prior.metadata, patch_size=16)
    prior.save(tmp_path / "patch")
    rng = np.random.default_rng(1)
    clean = rng.uniform(60, 80, (2, 24, 40)).astype(np.float32)
    damaged, labels = clean.copy(), np.zeros(clean.shape, np.uint8)
    damaged[:, 8:12, 20:26], labels[:, 8:12, 20:26] = 250.0, 1
    for name, array in (("id", clean), ("ood", damaged), ("labels", labels)):
        tifffile.imwrite(tmp_path / f"{name}.tif", array, photometric="minisblack")
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tmp_path / "patch"), "--id", str(tmp_path / "id.tif"), "--ood", str(tmp_path / "ood.tif"),
                 "--ood-labels", str(tmp_path / "labels.tif"), "--operator", "denoise", "--samples", "1", "--steps", "2",
                 "--window", "0", "2", "--block-size", "4", "--device", "cpu", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"]["patch_prior"]["working_grid"] == [24, 40]
    assert metrics["parameters"]["prior_image_size"] == [16, 16]
    assert len(metrics["image_level_per_image"]) == 2 and 0.0 <= metrics["image_level_auc"] <= 1.0
    assert set(metrics["baseline_image_level_auc"]) == set(BASELINE_NAMES)
