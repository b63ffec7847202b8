"""Diffusion priors: save/load round trips, foreign diffusers folders, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, ScoreSdeVeScheduler, UNet2DModel

from napari_klip.core.networks import unet_config
from napari_klip.core.prior import METADATA_FILE, DiffusionPrior, PriorLoadError, create_prior, load_prior


@pytest.fixture
def tiny_prior() -> DiffusionPrior:
    return create_prior(16, channels=1, network="tiny", intensity_range=(0.0, 255.0), training_data="discs")


def _predictions(prior: DiffusionPrior) -> torch.Tensor:
    noisy = torch.randn(2, prior.channels, *prior.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return prior.predict_noise(noisy, torch.tensor([10, 900]))


def test_save_load_round_trip(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    loaded = load_prior(folder, device="cpu")
    assert loaded.metadata == tiny_prior.metadata
    assert loaded.metadata.assumed_defaults is False
    assert torch.equal(_predictions(loaded), _predictions(tiny_prior))
    assert torch.equal(loaded.scheduler.alphas_cumprod, tiny_prior.scheduler.alphas_cumprod)
    assert loaded.num_train_timesteps == 1000


def test_our_folder_is_a_diffusers_ddpm_pipeline(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    pipeline = DDPMPipeline.from_pretrained(folder, local_files_only=True)
    assert isinstance(pipeline.unet, UNet2DModel) and isinstance(pipeline.scheduler, DDPMScheduler)


def test_save_refuses_to_overwrite_without_flag(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    before = weights.read_bytes()
    other = create_prior(16, network="tiny", seed=1)
    with pytest.raises(FileExistsError, match="already holds a prior"):
        other.save(folder)
    assert weights.read_bytes() == before
    other.save(folder, overwrite=True)
    assert weights.read_bytes() != before


def test_bare_unet_folder_loads_with_documented_defaults(tmp_path):
    unet = UNet2DModel(**unet_config(16, 3, "tiny"))
    unet.save_pretrained(tmp_path / "bare")
    with pytest.warns(UserWarning, match="no napari_klip_prior.json: assuming"):
        prior = load_prior(tmp_path / "bare", device="cpu")
    assert prior.metadata.assumed_defaults is True
    assert prior.metadata.intensity_range == (0.0, 1.0)
    assert prior.channels == 3 and prior.image_size == (16, 16)
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    assert torch.allclose(prior.scheduler.alphas_cumprod, reference.alphas_cumprod)


def test_diffusers_pipeline_folder_with_its_own_schedule(tmp_path):
    """A DDPMPipeline saved by diffusers (the layout of google/ddpm-celebahq-256) loads as a prior."""
    unet = UNet2DModel(**unet_config(16, 1, "tiny"))
    scheduler = DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    with pytest.warns(UserWarning, match="no napari_klip_prior.json: assuming"):
        prior = load_prior(tmp_path / "pipe", device="cpu")
    assert prior.metadata.assumed_defaults is True
    assert prior.num_train_timesteps == 500
    assert torch.allclose(prior.scheduler.alphas_cumprod, scheduler.alphas_cumprod)
    noisy = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(prior.predict_noise(noisy, 3), unet.eval()(noisy, torch.tensor([3])).sample, atol=1e-5)


def test_intensity_mapping_round_trip(tiny_prior):
    images = np.array([[0, 127.5, 255]], dtype=np.float64)
    mapped = tiny_prior.to_model_range(images)
    np.testing.assert_allclose(mapped, [[-1, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(tiny_prior.from_model_range(mapped), images, atol=1e-4)
    assert images.tolist() == [[0, 127.5, 255]]
    tensor = torch.tensor([0.0, 255.0])
    assert torch.allclose(tiny_prior.to_model_range(tensor), torch.tensor([-1.0, 1.0]))


def test_missing_folder(tmp_path):
    with pytest.raises(PriorLoadError, match=r"cannot load a diffusion prior from '.*nowhere': the folder does not exist"):
        load_prior(tmp_path / "nowhere", device="cpu")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(PriorLoadError, match="this is a file"):
        load_prior(tmp_path / "model.bin", device="cpu")


def test_folder_without_unet(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorLoadError, match="no UNet found"):
        load_prior(tmp_path / "empty", device="cpu")


def test_missing_weights(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(PriorLoadError, match="UNet weights could not be read"):
        load_prior(folder, device="cpu")


def test_truncated_weights(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PriorLoadError, match="UNet weights could not be read"):
        load_prior(folder, device="cpu")


def test_corrupt_metadata_json(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    (folder / METADATA_FILE).write_text("{not json")
    with pytest.raises(PriorLoadError, match=f"'{METADATA_FILE}' is not readable JSON"):
        load_prior(folder, device="cpu")


def test_metadata_that_contradicts_the_network(tmp_path, tiny_prior):
    folder = tiny_prior.save(tmp_path / "prior")
    data = json.loads((folder / METADATA_FILE).read_text())
    data["channels"] = 3
    (folder / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(PriorLoadError, match="says 3 channel"):
        load_prior(folder, device="cpu")


def test_variance_exploding_schedule_is_rejected(tmp_path):
    unet = UNet2DModel(**unet_config(16, 1, "tiny"))
    unet.save_pretrained(tmp_path / "ve")
    ScoreSdeVeScheduler().save_pretrained(tmp_path / "ve")
    with pytest.raises(PriorLoadError, match="only variance-preserving"):
        load_prior(tmp_path / "ve", device="cpu")


def test_unknown_network_preset():
    with pytest.raises(ValueError, match="unknown network size 'huge'"):
        create_prior(16, network="huge")
    with pytest.raises(ValueError, match="multiple of 4"):
        create_prior(18, network="tiny")


def test_the_bundled_liver_prior_loads_by_name(tmp_path, monkeypatch):
    from napari_klip.core.prior import LIVER_PRIOR_NAME, bundled_prior_path, resolve_prior

    monkeypatch.chdir(tmp_path)  # no local folder of that name
    prior = resolve_prior(LIVER_PRIOR_NAME, device="cpu")
    assert prior.path == bundled_prior_path(LIVER_PRIOR_NAME)
    assert prior.image_size == (28, 28) and not prior.is_patch_prior and prior.metadata.intensity_range == (0.0, 255.0)
    assert prior.metadata.training["steps"] == 6000 and "liver" in prior.metadata.training_data
