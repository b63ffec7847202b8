"""Scoring at bf16 autocast and in channels_last layout against fp32, on the bundled prior (a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_klip.api import lmd_score_stack, score_stack
from napari_klip.core.klip import KlipConfig, iter_klip_batch
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.operators import build_operator
from napari_klip.core.prior import default_prior_path, load_prior

SAMPLES = default_prior_path().parents[1] / "samples" / "organamnist_ct_lesions.npz"


@pytest.fixture(scope="module")
def bundled():
    return load_prior(default_prior_path(), "cpu")


@pytest.fixture(scope="module")
def images():
    return np.load(SAMPLES)["images"][:2]


@pytest.fixture
def restore(bundled):
    yield bundled
    bundled.set_precision("fp32").set_channels_last(False)


def test_lmd_scores_at_bf16_within_2_percent_of_fp32(restore, images):
    config = LmdConfig(num_reconstructions=2, num_steps=4, distance="mse")
    fp32 = np.array([r.score for r in lmd_score_stack(images, restore.set_precision("fp32"), config=config, batch_images=2)])
    bf16 = lmd_score_stack(images, restore.set_precision("bf16"), config=config, batch_images=2)
    assert bf16[0].parameters["precision"] == "bf16"
    np.testing.assert_allclose([r.score for r in bf16], fp32, rtol=0.02)


def test_klip_first_step_energy_at_bf16_within_5_percent_of_fp32(restore, images):
    # The first step starts from the same noise at both precisions, so its energy differs only by
    # the network's bf16 error; later steps follow diverging trajectories (docs/benchmarks.md).
    operator = build_operator("ct", restore.image_size, {"n_views": 12})
    measurements = operator(restore.to_model_range(torch.from_numpy(np.pad(images, ((0, 0), (2, 2), (2, 2)))))[:, None])
    config = KlipConfig(num_samples=2, num_steps=10, stop_after_step=1)

    def first_energy(precision):
        restore.set_precision(precision)
        run = iter_klip_batch(restore, operator, measurements, config)
        while True:
            try:
                next(run)
            except StopIteration as done:
                return np.stack([trace.energy[0] for trace in done.value])

    fp32, bf16 = first_energy("fp32"), first_energy("bf16")
    assert not np.array_equal(fp32, bf16)
    assert np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32) < 0.05


def test_channels_last_scores_equal_fp32_to_rounding(restore, images):
    config = KlipConfig(num_samples=2, num_steps=6, seed=1)
    options = {"operator": "ct", "operator_params": {"n_views": 12}, "batch_images": 2}
    default = [r.score for r in score_stack(images, restore, config=config, **options)]
    restore.set_channels_last(True)
    assert restore.set_channels_last(True).channels_last
    np.testing.assert_allclose([r.score for r in score_stack(images, restore, config=config, **options)], default, rtol=1e-3)


def test_set_compile_routes_predictions_through_torch_compile(restore, monkeypatch):
    # torch.compile itself takes minutes here (docs/benchmarks.md); a recording stand-in checks the wiring.
    calls = []

    def recording_compile(module):
        def compiled(*args, **kwargs):
            calls.append(args[0].shape[0])
            return module(*args, **kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    noisy = torch.randn((3, 1, *restore.image_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = restore.predict_noise(noisy, 400)
        assert restore.set_compile(True).predict_noise(noisy, 400).equal(eager) and calls == [3]
        restore.set_compile(False).predict_noise(noisy, 400)
    assert calls == [3] and restore.compiled is None
