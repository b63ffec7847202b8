"""Training: loss goes down, seeded runs repeat, resume continues exactly, cancel saves, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_klip.core.data import ImageDataError
from napari_klip.core.intensity import training_statistics
from napari_klip.core.prior import load_prior
from napari_klip.core.training import (
    CHECKPOINT_FILE,
    LOG_FILE,
    TrainingCancelled,
    TrainingConfig,
    iter_training,
    train_prior,
)


def _config(**overrides) -> TrainingConfig:
    settings = dict(image_size=16, network="tiny", steps=6, batch_size=8, warmup_steps=1, learning_rate=1e-3,
                    checkpoint_every=3, log_every=2, device="cpu", seed=0)
    settings.update(overrides)
    return TrainingConfig(**settings)


def _weights(folder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_prior(folder, device="cpu").unet.state_dict().items()}


def test_training_writes_a_loadable_prior_and_log(tmp_path, disc_images):
    before = disc_images.copy()
    updates = []
    result = train_prior(disc_images, tmp_path / "p", _config(), progress=updates.append)
    assert [u.step for u in updates] == list(range(1, 7))
    assert np.array_equal(disc_images, before)
    prior = load_prior(tmp_path / "p", device="cpu")
    assert prior.image_size == (16, 16) and prior.metadata.intensity_range == (0.0, 255.0)
    assert prior.metadata.training["steps"] == 6
    assert prior.metadata.intensity_stats == training_statistics(disc_images)  # in the data's own units
    assert prior.metadata.intensity_stats["dtype"] == "uint8"
    log = json.loads((tmp_path / "p" / LOG_FILE).read_text())
    assert log["finished"] is True and [h["step"] for h in log["history"]] == [2, 4, 6]
    assert result.final_loss == log["history"][-1]["loss"]
    assert (tmp_path / "p" / CHECKPOINT_FILE).is_file()


@pytest.mark.slow
def test_loss_decreases(tmp_path, disc_images):
    """60 steps on discs take the epsilon-MSE from ~1 (untrained) well down; a broken loop stays near 1."""
    updates = []
    result = train_prior(
        disc_images, tmp_path / "p", _config(steps=60, log_every=10, checkpoint_every=100, ema_decay=0.0), progress=updates.append
    )
    first = np.mean([u.loss for u in updates[:3]])
    last = result.history[-1]["loss"]
    assert first > 0.5, first
    assert last < 0.5 * first, (first, last)


def test_same_seed_same_weights_other_seed_differs(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "a", _config())
    train_prior(disc_images, tmp_path / "b", _config())
    train_prior(disc_images, tmp_path / "c", _config(seed=1))
    a, b, c = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_exactly(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "straight", _config(steps=6))
    train_prior(disc_images, tmp_path / "split", _config(steps=3))
    result = train_prior(disc_images, tmp_path / "split", _config(steps=6), resume=True)
    assert result.steps_done == 6
    straight, split = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.allclose(straight[k], split[k], atol=1e-6) for k in straight)


def test_cancel_saves_a_resumable_checkpoint(tmp_path, disc_images):
    seen = []
    with pytest.raises(TrainingCancelled, match="cancelled at step 2"):
        train_prior(disc_images, tmp_path / "p", _config(steps=50), progress=seen.append, should_cancel=lambda: len(seen) >= 2)
    state = torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=False)
    assert state["step"] == 2
    log = json.loads((tmp_path / "p" / LOG_FILE).read_text())
    assert log["cancelled"] is True and log["finished"] is False
    result = train_prior(disc_images, tmp_path / "p", _config(steps=4), resume=True)
    assert result.steps_done == 4


def test_closing_the_generator_saves_a_checkpoint(tmp_path, disc_images):
    steps = iter_training(disc_images, tmp_path / "p", _config(steps=50))
    next(steps)
    next(steps)
    steps.close()
    assert torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=False)["step"] == 2


def test_existing_output_is_not_overwritten_without_flag(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", _config(steps=2))
    weights = tmp_path / "p" / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.read_bytes()
    (tmp_path / "p" / "my_notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="already holds training output"):
        train_prior(disc_images, tmp_path / "p", _config(steps=2, seed=5))
    assert weights.read_bytes() == before
    train_prior(disc_images, tmp_path / "p", _config(steps=2, seed=5), overwrite=True)
    assert weights.read_bytes() != before
    assert (tmp_path / "p" / "my_notes.txt").read_text() == "keep me"


def test_resume_without_checkpoint_and_with_other_network(tmp_path, disc_images):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train_prior(disc_images, tmp_path / "none", _config(), resume=True)
    train_prior(disc_images, tmp_path / "p", _config(steps=2))
    with pytest.raises(ValueError, match="network='tiny'"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, network="small"), resume=True)


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (np.zeros((0, 16, 16), np.uint8), ImageDataError, "empty"),
        (np.full((4, 16, 16), np.nan), ImageDataError, "NaN"),
        (np.zeros((16, 16, 16, 16, 2)), ImageDataError, "expected an image"),
        (np.full((4, 16, 16), 3.0), ImageDataError, "constant"),
    ],
)
def test_bad_images_fail_before_anything_is_written(tmp_path, images, error, message):
    with pytest.raises(error, match=message):
        train_prior(images, tmp_path / "out", _config())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"batch_size": -1}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"size_mode": "stretch"}, "size_mode"),
        ({"image_size": 18}, "multiple of 4"),
        ({"prediction_type": "x0"}, "unknown prediction_type 'x0'"),
        ({"loss_weighting": "snr"}, "unknown loss_weighting 'snr'"),
        ({"min_snr_gamma": 0.0}, "min_snr_gamma must be > 0"),
        ({"timestep_sampling": "lognormal"}, "unknown timestep_sampling 'lognormal'"),
    ],
)
def test_bad_settings(tmp_path, disc_images, overrides, message):
    with pytest.raises(ValueError, match=message):
        train_prior(disc_images, tmp_path / "out", _config(**overrides))
    assert not (tmp_path / "out").exists()


def test_random_crop_mode(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, size=(8, 24, 20), dtype=np.uint8)
    train_prior(images, tmp_path / "p", _config(size_mode="random-crop", steps=2))
    assert load_prior(tmp_path / "p", device="cpu").image_size == (16, 16)
    with pytest.raises(ValueError, match="random 32"):
        train_prior(images, tmp_path / "q", _config(size_mode="random-crop", image_size=32))


def test_a_time_limit_writes_a_usable_prior_and_resume_finishes_the_run(tmp_path, disc_images):
    # a limit every step exceeds: the run stops after its first step, with a loadable prior
    result = train_prior(disc_images, tmp_path / "p", _config(steps=6, time_limit_s=1e-9))
    assert result.time_limit_reached and result.steps_done == 1
    prior = load_prior(tmp_path / "p", device="cpu")
    assert prior.metadata.training["steps"] == 1 and prior.metadata.training["time_limit_reached"] is True
    log = json.loads((tmp_path / "p" / LOG_FILE).read_text())
    assert log["finished"] is False and log["history"][-1]["step"] == 1
    # resumed with the same limit it makes one more step (each run makes at least one), then without a limit it ends
    assert train_prior(disc_images, tmp_path / "p", _config(steps=6, time_limit_s=1e-9), resume=True).steps_done == 2
    finished = train_prior(disc_images, tmp_path / "p", _config(steps=6), resume=True)
    assert finished.steps_done == 6 and not finished.time_limit_reached
    train_prior(disc_images, tmp_path / "straight", _config(steps=6))
    straight, split = _weights(tmp_path / "straight"), _weights(tmp_path / "p")
    assert all(torch.allclose(straight[k], split[k], atol=1e-6) for k in straight)  # stopping early loses nothing


@pytest.mark.parametrize("limit", [0.0, -5.0, float("inf"), float("nan")])
def test_a_bad_time_limit_fails_before_anything_is_written(tmp_path, disc_images, limit):
    with pytest.raises(ValueError, match="time_limit_s must be > 0"):
        train_prior(disc_images, tmp_path / "out", _config(time_limit_s=limit))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("prediction_type", "weighting"), [("v_prediction", "min-snr"), ("sample", "uniform"), ("epsilon", "min-snr")])
def test_a_v_or_x0_prior_is_a_diffusers_folder_whose_noise_prediction_is_converted(tmp_path, disc_images, prediction_type, weighting):
    """The scheduler config records what the network predicts; ``predict_noise`` returns ε for every type."""
    train_prior(disc_images, tmp_path / "p", _config(prediction_type=prediction_type, loss_weighting=weighting))
    config = json.loads((tmp_path / "p" / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == prediction_type
    prior = load_prior(tmp_path / "p", device="cpu")
    assert prior.prediction_type == prediction_type
    assert prior.metadata.training["prediction_type"] == prediction_type
    assert prior.metadata.training["loss_weighting"].startswith(weighting)
    noisy, timesteps = torch.randn((3, 1, 16, 16), generator=torch.Generator().manual_seed(0)), torch.tensor([5, 400, 990])
    with torch.no_grad():
        output = prior.unet(noisy, timesteps).sample
        noise = prior.predict_noise(noisy, timesteps)
    alpha_bar = prior.scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    # written out here rather than through the module under test
    expected = {
        "epsilon": output,
        "v_prediction": alpha_bar.sqrt() * output + (1 - alpha_bar).sqrt() * noisy,
        "sample": (noisy - alpha_bar.sqrt() * output) / (1 - alpha_bar).sqrt(),
    }[prediction_type]
    assert torch.allclose(noise, expected, atol=1e-5)


def test_resume_refuses_another_prediction_type_or_weighting(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", _config(steps=2))
    with pytest.raises(ValueError, match="prediction_type='epsilon'"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, prediction_type="v_prediction"), resume=True)
    with pytest.raises(ValueError, match="loss_weighting='uniform'"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, loss_weighting="min-snr"), resume=True)
    with pytest.raises(ValueError, match="timestep_sampling='uniform'"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, timestep_sampling="edm"), resume=True)
    # γ plays no part in a uniform run: another γ is no reason to refuse
    assert train_prior(disc_images, tmp_path / "p", _config(steps=4, min_snr_gamma=2.0), resume=True).steps_done == 4


def test_resume_of_a_min_snr_run_refuses_another_gamma(tmp_path, disc_images):
    train_prior(disc_images, tmp_path / "p", _config(steps=2, loss_weighting="min-snr"))
    with pytest.raises(ValueError, match="min_snr_gamma=5.0"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, loss_weighting="min-snr", min_snr_gamma=2.0), resume=True)


def test_edm_timestep_sampling_is_recorded_resumes_exactly_and_changes_the_training(tmp_path, disc_images):
    edm = _config(steps=4, prediction_type="v_prediction", timestep_sampling="edm")
    train_prior(disc_images, tmp_path / "straight", edm)
    assert load_prior(tmp_path / "straight", device="cpu").metadata.training["timestep_sampling"] == "edm"
    train_prior(disc_images, tmp_path / "split", _config(steps=2, prediction_type="v_prediction", timestep_sampling="edm"))
    train_prior(disc_images, tmp_path / "split", edm, resume=True)
    straight, split = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.allclose(straight[k], split[k], atol=1e-6) for k in straight)
    train_prior(disc_images, tmp_path / "uniform", _config(steps=4, prediction_type="v_prediction"))
    uniform = _weights(tmp_path / "uniform")
    assert any(not torch.allclose(straight[k], uniform[k]) for k in straight)


def test_a_checkpoint_from_before_prediction_types_resumes_as_epsilon(tmp_path, disc_images):
    """Checkpoints written before the setting existed hold no ``prediction_type``: they were ε-prediction runs."""
    train_prior(disc_images, tmp_path / "p", _config(steps=2))
    state = torch.load(tmp_path / "p" / CHECKPOINT_FILE, weights_only=False)
    for key in ("prediction_type", "loss_weighting", "min_snr_gamma", "timestep_sampling"):
        del state["config"][key]
    torch.save(state, tmp_path / "p" / CHECKPOINT_FILE)
    assert train_prior(disc_images, tmp_path / "p", _config(steps=3), resume=True).steps_done == 3
    with pytest.raises(ValueError, match="prediction_type='epsilon'"):
        train_prior(disc_images, tmp_path / "p", _config(steps=4, prediction_type="v_prediction"), resume=True)
