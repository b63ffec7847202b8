"""Fixtures of the reliability catalogue: a tiny saved prior and an image file."""

from __future__ import annotations

import pytest
import tifffile


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
