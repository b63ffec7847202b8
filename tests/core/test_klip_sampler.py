"""KLIP sampling: energy bookkeeping against a brute-force re-implementation, windows, seeds, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_klip.core.klip import (
    KlipConfig,
    block_score_map,
    default_block_size,
    default_window,
    heatmap_from_blocks,
    image_score,
    iter_klip_sampling,
    measurement_to_model_range,
    run_klip,
)
from napari_klip.core.errors import Cancelled
from napari_klip.core.operators import GaussianBlur, ShapeMismatchError, SparseViewCT
from napari_klip.core.prior import create_prior


@pytest.fixture(scope="module")
def prior():
    return create_prior(16, channels=1, network="tiny", intensity_range=(0.0, 1.0), seed=2)


@pytest.fixture(scope="module")
def truth():
    yy, xx = np.mgrid[:16, :16]
    return ((yy - 8) ** 2 + (xx - 7) ** 2 < 30).astype(np.float32) * 0.8


def _brute_force_updates(prior, operator, measurement, config):
    """Straightforward re-implementation keeping every normalised update u (K, S, C, H, W)."""
    scheduler = copy.deepcopy(prior.scheduler)
    scheduler.set_timesteps(config.num_steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.randn((config.num_samples, 1, 16, 16), generator=generator)
    abar = scheduler.alphas_cumprod
    updates = []
    for k, t in enumerate(timesteps):
        t_prev = timesteps[k + 1] if k + 1 < len(timesteps) else None
        beta = 1 - abar[t] / (abar[t_prev] if t_prev is not None else torch.tensor(1.0))
        if config.guidance == "dps":
            x_req = x.clone().requires_grad_(True)
            eps = prior.predict_noise(x_req, t)
            x0 = (x_req - torch.sqrt(1 - abar[t]) * eps) / torch.sqrt(abar[t])
            r = measurement - operator(x0)
            loss = (r**2).sum() / (2 * config.sigma_y**2)
            direction = -torch.autograd.grad(loss, x_req)[0]
            eps, r = eps.detach(), r.detach()
        else:
            with torch.no_grad():
                eps = prior.predict_noise(x, t)
                x0 = (x - torch.sqrt(1 - abar[t]) * eps) / torch.sqrt(abar[t])
                r = measurement - operator(x0)
                direction = operator.adjoint(r) / config.sigma_y**2 / torch.sqrt(abar[t])
        if config.guidance == "consistency":
            # move x̂0 by λ B r at fixed ε: x_t = √ᾱ x̂0 + √(1-ᾱ) ε moves by √ᾱ λ B r
            delta = config.consistency_weight * torch.sqrt(abar[t]) * operator.approximate_inverse(r)
        else:
            norms = torch.stack([r[s].norm() for s in range(config.num_samples)])
            delta = config.zeta / norms.mean() * direction
        x = x + delta
        updates.append((delta / torch.sqrt(beta)).detach().numpy())
        with torch.no_grad():
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return np.stack(updates), x.numpy()


def _brute_force_block_scores(updates, block, window):
    k0, k1 = window
    rows, cols = updates.shape[-2] // block, updates.shape[-1] // block
    scores = np.zeros((rows, cols))
    for i in range(rows):
        for j in range(cols):
            patch = updates[k0:k1, :, :, i * block : (i + 1) * block, j * block : (j + 1) * block]
            scores[i, j] = np.mean([np.mean([np.sum(patch[k, s] ** 2) for s in range(patch.shape[1])]) for k in range(k1 - k0)])
    return scores


@pytest.mark.parametrize("guidance", ["jacobian-free", "dps", "consistency"])
def test_energy_trace_matches_brute_force(prior, truth, guidance):
    operator = SparseViewCT(16, n_views=6)
    measurement = operator(torch.from_numpy(prior.to_model_range(truth))[None, None])
    config = KlipConfig(num_samples=3, num_steps=6, guidance=guidance, consistency_weight=0.7, seed=11)
    trace = run_klip(prior, operator, measurement, config)
    updates, final = _brute_force_updates(prior, operator, measurement, config)
    expected_energy = (updates**2).sum(axis=2).mean(axis=1)
    np.testing.assert_allclose(trace.energy, expected_energy, rtol=2e-4, atol=1e-7)
    expected_coherent = (updates.mean(axis=1) ** 2).sum(axis=1)  # energy of the sample-mean update
    np.testing.assert_allclose(trace.coherent_energy, expected_coherent, rtol=2e-4, atol=1e-7)
    assert np.all(trace.coherent_energy <= trace.energy * (1 + 1e-5) + 1e-9)
    np.testing.assert_allclose(trace.reconstruction, final.mean(axis=0), rtol=1e-4, atol=1e-5)
    for block, window in ((1, (0, 6)), (2, (2, 5)), (4, (3, 4)), (8, (0, 1))):
        np.testing.assert_allclose(
            block_score_map(trace.energy, block, window), _brute_force_block_scores(updates, block, window), rtol=2e-4, atol=1e-7
        )
    assert trace.network_calls == 6 and trace.energy.dtype == np.float32


def test_rederived_maps_equal_a_fresh_run(prior, truth):
    """Changing window or block on a stored trace equals sampling again with those settings."""
    operator = GaussianBlur(5, 1.0)
    measurement = operator(torch.from_numpy(prior.to_model_range(truth))[None, None])
    full = run_klip(prior, operator, measurement, KlipConfig(num_samples=2, num_steps=10, seed=4))
    stopped = run_klip(prior, operator, measurement, KlipConfig(num_samples=2, num_steps=10, seed=4, stop_after_step=7))
    assert stopped.energy.shape == (7, 16, 16)
    np.testing.assert_allclose(stopped.energy, full.energy[:7], rtol=1e-5)
    for block, window in ((2, (3, 7)), (4, (0, 7)), (16, (6, 7))):
        np.testing.assert_allclose(block_score_map(stopped.energy, block, window), block_score_map(full.energy, block, window), rtol=1e-5)


def test_same_seed_same_trace(prior, truth):
    operator = SparseViewCT(16, n_views=4)
    measurement = operator(torch.from_numpy(prior.to_model_range(truth))[None, None])
    config = KlipConfig(num_samples=2, num_steps=4, seed=5)
    first, again = run_klip(prior, operator, measurement, config), run_klip(prior, operator, measurement, config)
    other = run_klip(prior, operator, measurement, KlipConfig(num_samples=2, num_steps=4, seed=6))
    assert np.array_equal(first.energy, again.energy)
    assert not np.array_equal(first.energy, other.energy)


def test_measurement_in_intensity_units_converts_exactly():
    prior = create_prior(16, network="tiny", intensity_range=(100.0, 4000.0))
    operator = SparseViewCT(16, n_views=5)
    image = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 3900 + 100
    converted = measurement_to_model_range(prior, operator, operator(image))
    assert torch.allclose(converted, operator(prior.to_model_range(image)), rtol=1e-9, atol=1e-9)


def test_progress_and_cancel(prior, truth):
    operator = GaussianBlur(3, 1.0)
    measurement = operator(torch.from_numpy(truth)[None, None])
    seen = []
    with pytest.raises(Cancelled, match="after step 3"):
        run_klip(prior, operator, measurement, KlipConfig(num_samples=1, num_steps=8), progress=seen.append, should_cancel=lambda: len(seen) == 3)
    assert [p.step for p in seen] == [1, 2, 3] and seen[0].total == seen[0].total_steps == 8


def test_scores_helpers():
    energy = np.zeros((10, 8, 8), np.float32)
    energy[6:8, 4:6, 2:4] = 1.0
    scores = block_score_map(energy, 2, (6, 8))
    assert scores.shape == (4, 4) and scores[2, 1] == 4.0 and scores.sum() == 4.0
    assert image_score(scores) == 4.0
    heat = heatmap_from_blocks(scores, 2)
    assert heat.shape == (8, 8) and heat[4, 2] == 4.0 and heat[0, 0] == 0.0
    assert default_window(100) == (65, 85) and default_window(20) == (13, 17)
    assert default_block_size((512, 512)) == 32 and default_block_size((28, 28)) == 1 and default_block_size((32, 32)) == 2


@pytest.mark.parametrize(
    ("window", "block", "message"),
    [((5, 5), 2, "window"), ((-1, 3), 2, "window"), ((0, 11), 2, "window"), ((0, 5), 3, "block_size"), ((0, 5), 0, "block_size")],
)
def test_bad_windows_and_blocks(window, block, message):
    with pytest.raises(ValueError, match=message):
        block_score_map(np.zeros((10, 8, 8)), block, window)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (KlipConfig(num_samples=0), "num_samples"),
        (KlipConfig(num_steps=0), "num_steps"),
        (KlipConfig(zeta=-1.0), "zeta"),
        (KlipConfig(sigma_y=0.0), "sigma_y"),
        (KlipConfig(guidance="full"), "guidance"),
        (KlipConfig(num_steps=10, stop_after_step=11), "stop_after_step"),
        (KlipConfig(consistency_weight=float("nan")), "consistency_weight"),
        (KlipConfig(guidance="consistency"), "'blur' has none"),
    ],
)
def test_bad_configs(prior, config, message):
    operator = GaussianBlur(3, 1.0)
    with pytest.raises(ValueError, match=message):
        next(iter_klip_sampling(prior, operator, torch.zeros(1, 1, 16, 16), config))


def test_bad_measurements(prior):
    operator = SparseViewCT(16, n_views=4)
    with pytest.raises(ShapeMismatchError, match="expected a measurement batch"):
        next(iter_klip_sampling(prior, operator, torch.zeros(1, 1, 4, 10), KlipConfig()))
    bad = torch.zeros(1, 1, 4, operator.n_detectors)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        next(iter_klip_sampling(prior, operator, bad, KlipConfig()))
    with pytest.raises(ValueError, match="one measurement"):
        next(iter_klip_sampling(prior, operator, torch.zeros(2, 1, 4, operator.n_detectors), KlipConfig()))
