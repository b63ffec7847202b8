"""Network precision: resolution rules and bf16 autocast against fp32 (core.precision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_klip.core.precision import autocast, cpu_has_amx_bf16, resolve_precision
from napari_klip.core.training import TrainingConfig, iter_training


def test_resolution_rules_on_the_cpu():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_amx_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    assert isinstance(autocast("fp32", "cpu"), type(autocast("fp32", "cpu")))


def test_bf16_prediction_is_close_to_fp32_and_comes_back_as_float32(prior):
    noisy = torch.randn((4, 1, *prior.image_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = prior.set_precision("fp32").predict_noise(noisy, 500)
        low = prior.set_precision("bf16").predict_noise(noisy, 500)
    prior.set_precision("fp32")
    assert low.dtype == torch.float32 and not torch.equal(low, reference)
    relative = float((low - reference).norm() / reference.norm())
    assert relative < 0.05, relative  # bf16 keeps 8 bits of mantissa: ~1 % here


def test_bf16_training_runs_and_records_its_precision(disc_images, tmp_path):
    config = TrainingConfig(image_size=16, network="tiny", steps=3, batch_size=4, device="cpu", precision="bf16", log_every=1)
    steps = iter_training(disc_images, tmp_path / "bf16", config)
    losses = []
    while True:
        try:
            losses.append(next(steps).loss)
        except StopIteration as done:
            result = done.value
            break
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    import json

    summary = json.loads((tmp_path / "bf16" / "training_log.json").read_text())["summary"]
    assert summary["precision"] == "bf16" and result.steps_done == 3
    with pytest.raises(ValueError, match="precision"):
        TrainingConfig(precision="half").validate()
