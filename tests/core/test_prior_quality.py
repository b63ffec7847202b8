"""Held-out denoising loss per timestep band (core.prior_quality)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_klip.core.prior import load_prior
from napari_klip.core.prior_quality import DEFAULT_BANDS, heldout_denoising_loss

REPO = Path(__file__).resolve().parents[2]
MNIST_PRIOR = REPO / "priors" / "mnist32-tiny-cpu"


def _mnist_on_grid(size: int) -> np.ndarray:
    from napari_klip.core.data import resize_stack

    images = np.load(REPO / "tests" / "data" / "mnist_test_first8.npy").astype(np.float32)
    return resize_stack(images[:, None], size)[:, 0]


def test_a_trained_prior_beats_an_untrained_one_in_every_band():
    from napari_klip.core.prior import create_prior

    trained = load_prior(MNIST_PRIOR, device="cpu")
    untrained = create_prior(32, channels=1, network="tiny", intensity_range=trained.metadata.intensity_range, seed=0)
    images = _mnist_on_grid(32)
    good, bad = heldout_denoising_loss(trained, images, draws_per_band=2), heldout_denoising_loss(untrained, images, draws_per_band=2)
    assert [b.band for b in good] == list(DEFAULT_BANDS)
    for ours, theirs in zip(good, bad, strict=True):
        assert ours.loss < 0.5 * theirs.loss, (ours, theirs)
        assert ours.standard_error > 0


def test_same_seed_same_numbers_and_inputs_untouched(prior):
    images = np.random.default_rng(0).uniform(0, 255, size=(3, *prior.image_size)).astype(np.float32)
    before = images.copy()
    first = heldout_denoising_loss(prior, images, bands=((0, 500),), draws_per_band=1, seed=3)
    again = heldout_denoising_loss(prior, images, bands=((0, 500),), draws_per_band=1, seed=3)
    other = heldout_denoising_loss(prior, images, bands=((0, 500),), draws_per_band=1, seed=4)
    assert first == again and first != other
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((2, 8, 8)), {}, "expected grey images"),
        (np.full((2, 16, 16), np.nan), {}, "NaN"),
        (np.zeros((2, 16, 16)), {"bands": ((0, 2000),)}, "outside"),
        (np.zeros((2, 16, 16)), {"draws_per_band": 0}, "positive"),
    ],
)
def test_bad_inputs(prior, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        heldout_denoising_loss(prior, images, **kwargs)
