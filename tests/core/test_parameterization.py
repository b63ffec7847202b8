"""ε-, v- and x0-prediction: conversions to the noise, training targets and Min-SNR weights.

References are independent of the module under test: diffusers' ``DDPMScheduler.step`` for each
``prediction_type`` (the reverse step our samplers take on the converted noise must equal it),
the Min-SNR paper's statement that each weighted loss is ``min(SNR, γ)`` times the clean-image
error, and EDM's preconditioning formulas and log-normal noise levels written out from the paper.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import DDPMScheduler

from napari_klip.core.diffusion import clean_estimate, ddpm_reverse_step
from napari_klip.core.errors import PriorLoadError
from napari_klip.core.parameterization import loss_weights, noise_from_output, sample_timesteps, training_target
from napari_klip.core.prior import DEFAULT_SCHEDULE, create_prior, load_prior

TYPES = ("epsilon", "v_prediction", "sample")


def _draw(seed: int, shape=(4, 1, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def alpha_bar() -> torch.Tensor:
    schedule = DDPMScheduler(**DEFAULT_SCHEDULE).alphas_cumprod
    return schedule[torch.tensor([0, 100, 500, 999])].view(-1, 1, 1, 1)


@pytest.mark.parametrize("prediction_type", TYPES)
def test_the_exact_target_converts_back_to_the_noise(alpha_bar, prediction_type):
    clean, noise = _draw(0), _draw(1)
    noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    target = training_target(clean, noise, alpha_bar, prediction_type)
    torch.testing.assert_close(noise_from_output(target, noisy, alpha_bar, prediction_type), noise, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction_type", TYPES)
def test_our_step_on_the_converted_noise_equals_diffusers_step_on_the_raw_output(prediction_type):
    """A v- or x0-network's output goes through diffusers' own step; ours takes ε from the conversion."""
    scheduler = DDPMScheduler(**{**DEFAULT_SCHEDULE, "prediction_type": prediction_type})
    scheduler.set_timesteps(20)
    timesteps = [int(t) for t in scheduler.timesteps]
    state, output = _draw(2), 0.5 * _draw(3)
    for index in (0, 9, 18):
        timestep, previous = timesteps[index], timesteps[index + 1]
        expected = scheduler.step(output, timestep, state, generator=torch.Generator().manual_seed(7)).prev_sample
        alpha_bar = scheduler.alphas_cumprod[timestep]
        noise = noise_from_output(output, state, alpha_bar, prediction_type)
        ours = ddpm_reverse_step(
            state, noise, alpha_bar, scheduler.alphas_cumprod[previous], torch.randn(state.shape, generator=torch.Generator().manual_seed(7))
        )
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction_type", TYPES)
def test_min_snr_makes_every_loss_min_snr_gamma_times_the_clean_image_error(alpha_bar, prediction_type):
    gamma = 5.0
    clean, noise = _draw(4), _draw(5)
    noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    output = training_target(clean, noise, alpha_bar, prediction_type) + 0.1 * _draw(6)  # an imperfect network
    clean_error = ((clean_estimate(noisy, noise_from_output(output, noisy, alpha_bar, prediction_type), alpha_bar) - clean) ** 2).flatten(1).mean(1)
    raw = ((output - training_target(clean, noise, alpha_bar, prediction_type)) ** 2).flatten(1).mean(1)
    weights = loss_weights(alpha_bar.flatten(), prediction_type, "min-snr", gamma)
    snr = alpha_bar.flatten() / (1 - alpha_bar.flatten())
    torch.testing.assert_close(weights * raw, snr.clamp(max=gamma) * clean_error, rtol=2e-3, atol=1e-6)
    assert torch.equal(loss_weights(alpha_bar.flatten(), prediction_type, "uniform", gamma), torch.ones(4))


def test_bad_names_and_gamma_are_clear_errors(alpha_bar):
    with pytest.raises(ValueError, match="unknown prediction_type 'x0'"):
        noise_from_output(alpha_bar, alpha_bar, alpha_bar, "x0")
    with pytest.raises(ValueError, match="unknown loss_weighting 'snr'"):
        loss_weights(alpha_bar, "epsilon", "snr", 5.0)
    with pytest.raises(ValueError, match="min_snr_gamma must be > 0"):
        loss_weights(alpha_bar, "epsilon", "min-snr", 0.0)


def test_a_folder_with_an_unknown_prediction_type_is_refused_by_name(tmp_path):
    create_prior(16, network="tiny").save(tmp_path / "p")
    path = tmp_path / "p" / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "prediction_type": "flow"}))
    with pytest.raises(PriorLoadError, match="prediction_type 'flow'"):
        load_prior(tmp_path / "p", device="cpu")


def _schedule() -> torch.Tensor:
    return DDPMScheduler(**DEFAULT_SCHEDULE).alphas_cumprod


def test_uniform_timesteps_are_the_draws_training_always_made():
    """Runs trained before the option existed reproduce (and resume) draw for draw."""
    ours = sample_timesteps(64, _schedule(), "uniform", torch.Generator().manual_seed(3))
    assert torch.equal(ours, torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3)))


def test_edm_timesteps_follow_the_log_normal_noise_levels():
    """Each timestep's share equals the normal probability of the ``ln σ`` interval nearest to it."""
    alpha_bar = _schedule().double()
    log_sigma = [0.5 * math.log((1 - float(a)) / float(a)) for a in alpha_bar]
    edges = [-math.inf] + [(a + b) / 2 for a, b in zip(log_sigma, log_sigma[1:])] + [math.inf]

    def normal_cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x + 1.2) / (1.2 * math.sqrt(2))))

    draws = 200_000
    timesteps = sample_timesteps(draws, alpha_bar.float(), "edm", torch.Generator().manual_seed(0))
    assert timesteps.dtype == torch.int64 and int(timesteps.min()) >= 0 and int(timesteps.max()) <= 999
    for low, high in [(0, 10), (10, 50), (50, 100), (100, 300), (300, 600), (600, 1000)]:
        expected = normal_cdf(edges[high]) - normal_cdf(edges[low])
        observed = float(((timesteps >= low) & (timesteps < high)).double().mean())
        assert abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / draws) + 1e-4, (low, high, observed, expected)
    # most of the training lands where the anomaly maps look (t < 300), little at high noise
    assert float((timesteps < 300).double().mean()) > 0.85 and float((timesteps >= 600).double().mean()) < 0.01


def test_edm_preconditioning_at_sigma_data_one_is_v_prediction(alpha_bar):
    """Karras et al. (2022), Table 1: c_skip, c_out, c_in and λ at σ_data = 1, in VP terms."""
    clean, noise = _draw(8), _draw(9)
    noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    sigma = ((1 - alpha_bar) / alpha_bar).sqrt()
    x_sigma = clean + sigma * noise  # = noisy / √ᾱ
    c_skip, c_out, c_in = 1 / (sigma**2 + 1), sigma / (sigma**2 + 1).sqrt(), 1 / (sigma**2 + 1).sqrt()
    edm_target = (clean - c_skip * x_sigma) / c_out
    torch.testing.assert_close(edm_target, -training_target(clean, noise, alpha_bar, "v_prediction"), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(c_in * x_sigma, noisy, rtol=1e-4, atol=1e-4)  # the network sees x_t, as in a DDPMPipeline
    weight = (sigma**2 + 1) / sigma**2  # λ(σ)
    torch.testing.assert_close(weight * c_out**2, torch.ones_like(weight))  # so EDM's loss is the uniform v-loss


def test_an_unknown_timestep_sampling_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown timestep_sampling 'lognormal'"):
        sample_timesteps(4, _schedule(), "lognormal", torch.Generator())
