"""``train --patch-size``: a prior trained on random crops that records it is a patch prior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_klip.core.prior import METADATA_FILE, PriorMetadata, load_prior
from napari_klip.core.training import TrainingConfig, train_prior


def _textures(count: int = 2, shape=(40, 56)) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.stack([(2000 + 1000 * np.sin(xx / 3 + k) * np.cos(yy / 5) + rng.normal(0, 50, shape)).astype(np.uint16) for k in range(count)])


def test_a_patch_prior_trains_on_crops_of_any_size_and_records_its_patch_size(tmp_path):
    images = _textures()
    config = TrainingConfig(patch_size=16, network="tiny", steps=2, batch_size=6, warmup_steps=1, checkpoint_every=100, seed=0)
    assert config.image_size == 16 and config.size_mode == "random-crop"
    result = train_prior(images, tmp_path / "p", config)  # batch 6 > 2 images: crops, not repeats — no lowering
    prior = load_prior(tmp_path / "p", device="cpu")
    assert result.steps_done == 2
    assert prior.is_patch_prior and prior.metadata.patch_size == 16 and prior.image_size == (16, 16)
    assert prior.metadata.intensity_range == (float(images.min()), float(images.max()))
    log = json.loads((tmp_path / "p" / "training_log.json").read_text())
    assert log["config"]["patch_size"] == 16 and log["config"]["batch_size"] == 6
    assert images.dtype == np.uint16 and images.shape == (2, 40, 56)  # input untouched


def test_patches_larger_than_the_images_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"32² patches from 40×24"):
        train_prior(_textures(shape=(40, 24)), tmp_path / "p", TrainingConfig(patch_size=32, network="tiny", steps=1))
    assert not (tmp_path / "p").exists()


def test_metadata_without_patch_size_is_a_whole_image_prior_and_round_trips():
    old = {"image_size": [32, 32], "channels": 1, "intensity_range": [0, 255], "training_data": "x", "format_version": 1}
    metadata = PriorMetadata(**{**old, "image_size": tuple(old["image_size"]), "intensity_range": tuple(old["intensity_range"])})
    assert not metadata.is_patch_prior and "patch_size" not in metadata.to_json()
    patch = PriorMetadata(image_size=(32, 32), channels=1, patch_size=32)
    assert patch.is_patch_prior and patch.to_json()["patch_size"] == 32
    with pytest.raises(ValueError, match="patch_size"):
        PriorMetadata(image_size=(32, 16), channels=1, patch_size=32)


def test_an_older_prior_folder_loads_as_a_whole_image_prior(tmp_path):
    from napari_klip.core.prior import create_prior

    folder = create_prior(16, network="tiny").save(tmp_path / "old")
    data = json.loads((folder / METADATA_FILE).read_text())
    assert "patch_size" not in data  # what napari-klip wrote before patch priors
    assert not load_prior(folder, device="cpu").is_patch_prior


def test_resume_refuses_another_patch_size(tmp_path):
    images = _textures()
    train_prior(images, tmp_path / "p", TrainingConfig(patch_size=16, network="tiny", steps=1, batch_size=2, checkpoint_every=100))
    with pytest.raises(ValueError, match="patch_size"):
        train_prior(images, tmp_path / "p", TrainingConfig(patch_size=8, network="tiny", steps=2, batch_size=2), resume=True)


def test_the_bundled_microscopy_patch_prior_loads_by_name(tmp_path, monkeypatch):
    from napari_klip.core.prior import MICROSCOPY_PRIOR_NAME, bundled_prior_path, resolve_prior

    monkeypatch.chdir(tmp_path)  # no local folder of that name
    prior = resolve_prior(MICROSCOPY_PRIOR_NAME, device="cpu")
    assert prior.path == bundled_prior_path(MICROSCOPY_PRIOR_NAME)
    assert prior.is_patch_prior and prior.metadata.patch_size == 32 and prior.metadata.intensity_range == (0.0, 255.0)
    assert "skimage.data.cell()" in prior.metadata.training_data
    with pytest.raises(ValueError, match="bundled"):
        bundled_prior_path("nope")
