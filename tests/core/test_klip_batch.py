"""Batched KLIP sampling (``iter_klip_batch``): N images in one network call per step, each as if alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_klip.core.klip import KlipConfig, iter_klip_batch, iter_klip_sampling
from napari_klip.core.operators import build_operator
from napari_klip.core.prior import create_prior
from napari_klip.core.progress import drive

CONFIG = KlipConfig(num_samples=3, num_steps=5, seed=7)
FIELDS = ("energy", "coherent_energy", "reconstruction", "reconstruction_std")


@pytest.fixture(scope="module")
def prior():
    return create_prior(16, channels=1, network="tiny", intensity_range=(0.0, 1.0), seed=3)


@pytest.fixture(scope="module")
def ct_measurements():
    operator = build_operator("ct", (16, 16), {"n_views": 6})
    images = torch.rand((3, 1, 16, 16), generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return operator, operator(images)


def _alone(prior, operator, measurements, config):
    """Each measurement sampled by itself with seed ``config.seed + i`` (the per-image path)."""
    return [drive(iter_klip_sampling(prior, operator, measurements[i : i + 1], replace(config, seed=config.seed + i)))
            for i in range(measurements.shape[0])]


@pytest.mark.parametrize("guidance", ["jacobian-free", "dps", "consistency"])
def test_batch_equals_per_image_bit_for_bit_when_the_network_sees_the_same_rows(prior, ct_measurements, guidance, monkeypatch):
    # With the network evaluated in per-image chunks of S rows, everything else the batch does
    # (per-image generators, step sizes, operator, energies, reconstructions) must be exact.
    operator, measurements = ct_measurements
    config = replace(CONFIG, guidance=guidance)
    alone = _alone(prior, operator, measurements, config)
    network = prior.predict_noise
    calls = []

    def per_image_chunks(state, timestep):
        calls.append(state.shape[0])
        return torch.cat([network(state[i : i + config.num_samples], timestep) for i in range(0, state.shape[0], config.num_samples)])

    monkeypatch.setattr(prior, "predict_noise", per_image_chunks)
    together = drive(iter_klip_batch(prior, operator, measurements, config))
    assert calls == [9] * 5  # one call per step, holding all 3 images × 3 samples
    for single, batched in zip(alone, together, strict=True):
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(single, name), getattr(batched, name), err_msg=name)
        assert single.config == batched.config and np.array_equal(single.timesteps, batched.timesteps)


def test_batch_matches_per_image_within_float_rounding(prior, ct_measurements):
    # The real batched call: the network's CPU kernels may sum in another order at another batch
    # size (measured ~1e-6 relative per forward), which is all that may differ.
    operator, measurements = ct_measurements
    alone = _alone(prior, operator, measurements, CONFIG)
    together = drive(iter_klip_batch(prior, operator, measurements, CONFIG))
    for single, batched in zip(alone, together, strict=True):
        for name in FIELDS:
            expected = getattr(single, name)
            np.testing.assert_allclose(getattr(batched, name), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max(), err_msg=name)
    # and different images really got different noise: their traces differ
    assert not np.allclose(together[0].energy, together[1].energy)


def test_explicit_seeds_and_their_checks(prior, ct_measurements):
    operator, measurements = ct_measurements
    traces = drive(iter_klip_batch(prior, operator, measurements[:2], CONFIG, seeds=[7, 7]))
    assert [t.config["seed"] for t in traces] == [7, 7]
    np.testing.assert_allclose(traces[0].reconstruction.std(), traces[1].reconstruction.std(), rtol=0.5)  # same noise, other data
    with pytest.raises(ValueError, match="2 seed"):
        drive(iter_klip_batch(prior, operator, measurements, CONFIG, seeds=[1, 2]))
    with pytest.raises(TypeError, match="seed must be an integer"):
        drive(iter_klip_batch(prior, operator, measurements[:1], CONFIG, seeds=["1"]))
    with pytest.raises(ValueError, match=r"shaped \(N, C, ...\)"):
        drive(iter_klip_batch(prior, operator, measurements[0], CONFIG))


def test_closing_the_batch_mid_run_stops_the_network(prior, ct_measurements, monkeypatch):
    operator, measurements = ct_measurements
    network, calls = prior.predict_noise, []
    monkeypatch.setattr(prior, "predict_noise", lambda state, t: calls.append(t) or network(state, t))
    run = iter_klip_batch(prior, operator, measurements, CONFIG)
    assert [next(run).step for _ in range(2)] == [1, 2]
    run.close()
    assert len(calls) == 2
