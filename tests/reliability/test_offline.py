"""Offline completeness: every default works on a fresh install with no network, cache or env var."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_klip.core.lmd import lpips_distance
from napari_klip.core.lmd.lpips_distance import ALEXNET_WEIGHTS_ENV, PACKAGED_ALEXNET_WEIGHTS, find_alexnet_weights, load_lpips

#: Largest |LPIPS(float16 weights) − LPIPS(float32 weights)| accepted (LPIPS values are ~0.01–0.7).
FLOAT16_LPIPS_TOLERANCE = 1e-3


@pytest.fixture
def fresh_install(tmp_path, monkeypatch):
    """No weights environment variable and an empty torch hub cache."""
    monkeypatch.delenv(ALEXNET_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-torch-hub"))


def test_the_package_ships_the_alexnet_weights_with_provenance():
    assert PACKAGED_ALEXNET_WEIGHTS.is_file()
    assert (PACKAGED_ALEXNET_WEIGHTS.parent / "PROVENANCE.md").read_text().count("BSD") >= 2
    features = lpips_distance.read_alexnet_features(PACKAGED_ALEXNET_WEIGHTS)
    assert all(tensor.dtype == torch.float32 for tensor in features.values())


def test_package_data_includes_the_weights():
    """pyproject's package-data globs cover the weights and their provenance (so the wheel has them)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["napari_klip"]
    package = root / "src" / "napari_klip"
    for shipped in (PACKAGED_ALEXNET_WEIGHTS, PACKAGED_ALEXNET_WEIGHTS.parent / "PROVENANCE.md"):
        relative = shipped.resolve().relative_to(package.resolve()).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern.replace("**/", "*")) for pattern in globs), relative


def test_lmd_default_distance_works_offline(fresh_install, disc_images):
    from napari_klip.api.lmd import score_image
    from napari_klip.core.options import LmdConfig
    from napari_klip.core.prior import create_prior

    prior = create_prior(32, network="tiny", intensity_range=(0.0, 255.0))  # LPIPS needs 31 px or more

    assert LmdConfig().distance == "lpips"
    assert find_alexnet_weights() == PACKAGED_ALEXNET_WEIGHTS
    result = score_image(disc_images[0], prior, config=LmdConfig(num_reconstructions=2, num_steps=3, mask_grid=4))
    assert np.isfinite(result.score) and result.parameters["distance"].startswith("lpips")


def test_float16_weights_give_lpips_within_tolerance_of_float32(tmp_path):
    from reliability_helpers import shared_weights

    exact, packaged = load_lpips(shared_weights()), load_lpips(PACKAGED_ALEXNET_WEIGHTS)
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand((6, 3, 64, 64), generator=generator) * 2 - 1
    candidate = (reference + 0.3 * torch.randn(reference.shape, generator=generator)).clamp(-1, 1)
    with torch.no_grad():
        exact_values, packaged_values = exact(reference, candidate).flatten(), packaged(reference, candidate).flatten()
    assert exact_values.min() > 0.01
    assert torch.max(torch.abs(exact_values - packaged_values)) < FLOAT16_LPIPS_TOLERANCE
