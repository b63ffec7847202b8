"""Helpers of the reliability catalogue's tests (imported by name: this folder is on ``sys.path``); the fixtures are imported into the test modules that use them."""

from __future__ import annotations

import pytest
import tifffile

from napari_klip.core.training import TrainingConfig

#: Sampler options that keep a CLI run to a fraction of a second on a 16×16 tiny prior.
FAST = ["--samples", "2", "--steps", "4", "--device", "cpu"]


def tiny_training(**overrides) -> TrainingConfig:
    """A 16×16 tiny-network training run of a few steps on the CPU."""
    settings = dict(image_size=16, network="tiny", steps=4, batch_size=4, warmup_steps=1, learning_rate=1e-3,
                    checkpoint_every=100, log_every=1, device="cpu", seed=0)
    settings.update(overrides)
    return TrainingConfig(**settings)


def folder_snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def saved_prior(tmp_path_factory):
    """A tiny grey 16×16 prior (random weights, intensities 0–255) saved as a folder."""
    from napari_klip.core.prior import create_prior

    return create_prior(16, network="tiny", intensity_range=(0.0, 255.0)).save(tmp_path_factory.mktemp("prior") / "prior")


@pytest.fixture
def image_file(tmp_path, disc_images):
    """Two 16×16 grey images as a TIFF stack."""
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, disc_images[:2], photometric="minisblack")
    return path


def shared_weights():
    """The float32 AlexNet weights in ../shared/data (skips the test where they are absent)."""
    from conftest import shared_file

    return shared_file("weights/alexnet_features_imagenet.npz")
