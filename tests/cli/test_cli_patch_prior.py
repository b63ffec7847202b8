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
