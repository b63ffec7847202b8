"""ε-, v- and x0-prediction: conversions to the noise, training targets and Min-SNR weights.

References are independent of the module under test: diffusers' ``DDPMScheduler.step`` for each
``prediction_type`` (the reverse step our samplers take on the converted noise must equal it),
and the Min-SNR paper's statement that each weighted loss is ``min(SNR, γ)`` times the clean-image
error.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDPMScheduler

from napari_klip.core.diffusion import clean_estimate, ddpm_reverse_step
from napari_klip.core.errors import PriorLoadError
from napari_klip.core.parameterization import loss_weights, noise_from_output, training_target
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
