"""The prior z-map against the closed form of an exact Gaussian prior, its determinism and bad inputs.

For data ``x0 ~ N(μ, s²)`` per pixel the exact denoiser is linear, and the z-score of the
residual ``x − x̂0(x_t)`` over noise draws has the closed form ``|x − μ| σ_t / s²`` with
``σ_t = √((1 − ᾱ_t) / ᾱ_t)`` (mean ``(x − μ)(1 − ᾱ)/(ᾱ s² + 1 − ᾱ)``, spread
``√ᾱ s² √(1 − ᾱ)/(ᾱ s² + 1 − ᾱ)``; the map's 10⁻³ floor added to the spread): the reference
these tests compare with, worked out by hand, not by the module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from napari_klip.core.patches import TiledPrior
from napari_klip.core.prior import DEFAULT_SCHEDULE
from napari_klip.core.prior_z import (
    DEFAULT_Z_DRAWS,
    DEFAULT_Z_SMOOTHING,
    DEFAULT_Z_TIMESTEPS,
    PriorZSettings,
    iter_prior_z_maps,
    prior_z_map,
    resolve_prior_z,
    smooth_z_map,
)

MEAN, SPREAD = 0.2, 0.5


class GaussianPrior:
    """The exact ε-predictor of data that is N(MEAN, SPREAD²) in every pixel, independently."""

    device = torch.device("cpu")

    def __init__(self, size=(12, 10), patch_size=None):
        self.scheduler = DDPMScheduler(**DEFAULT_SCHEDULE)
        self.image_size = size
        self.metadata = type("Metadata", (), {"patch_size": patch_size})()
        self.calls = 0

    def predict_noise(self, noisy, timesteps):
        self.calls += 1
        timesteps = torch.as_tensor(timesteps)
        alpha_bar = self.scheduler.alphas_cumprod[timesteps].float()
        if alpha_bar.ndim == 1:
            alpha_bar = alpha_bar.view(-1, 1, 1, 1)
        gain = alpha_bar.sqrt() * SPREAD**2 / (alpha_bar * SPREAD**2 + 1 - alpha_bar)
        clean = MEAN + gain * (noisy - alpha_bar.sqrt() * MEAN)
        return (noisy - alpha_bar.sqrt() * clean) / (1 - alpha_bar).sqrt()


def _image(size=(12, 10)) -> np.ndarray:
    image = np.full(size, MEAN, dtype=np.float32)
    image[3:6, 4:7] = MEAN + 0.6  # the anomaly
    image[8, 1] = MEAN - 0.3
    return image


def _expected_z(image: np.ndarray, timestep: int) -> np.ndarray:
    """``|mean r| / (spread r + 10⁻³)`` with the hand-derived mean and spread (the floor matters at high noise)."""
    alpha_bar = float(DDPMScheduler(**DEFAULT_SCHEDULE).alphas_cumprod[timestep])
    denominator = alpha_bar * SPREAD**2 + 1 - alpha_bar
    mean = np.abs(image - MEAN) * (1 - alpha_bar) / denominator
    spread = np.sqrt(alpha_bar) * SPREAD**2 * np.sqrt(1 - alpha_bar) / denominator
    return mean / (spread + 1e-3)


@pytest.mark.parametrize("timestep", [100, 400, 750])
def test_the_z_map_of_an_exact_gaussian_prior_has_the_closed_form(timestep):
    image = _image()
    maps = iter_prior_z_maps(GaussianPrior(), image, timesteps=[timestep], draws=4000, seed=0)
    while True:
        try:
            next(maps)
        except StopIteration as stop:
            z = stop.value[timestep]
            break
    expected = _expected_z(image, timestep)
    anomalous = expected > 0
    np.testing.assert_allclose(z[anomalous], expected[anomalous], rtol=0.06)
    # where the image is the prior's mean, only the sampling error of 4000 draws remains (~1/√4000 standard deviations)
    assert np.abs(z[~anomalous]).max() < 0.08


def test_the_map_is_the_mean_over_timesteps_and_ranks_the_anomaly_first():
    image = _image()
    z = prior_z_map(GaussianPrior(), image, timesteps=(100, 400), draws=2000, seed=1)
    expected = (_expected_z(image, 100) + _expected_z(image, 400)) / 2
    np.testing.assert_allclose(z[expected > 0], expected[expected > 0], rtol=0.06)
    assert z.dtype == np.float32 and z.shape == image.shape
    assert np.argmax(z) in np.flatnonzero(np.abs(image - MEAN) == 0.6)


def test_same_seed_same_map_other_seed_another_and_the_input_is_not_changed():
    image = _image()
    copy = image.copy()
    prior = GaussianPrior()
    first = prior_z_map(prior, image, seed=3)
    assert np.array_equal(first, prior_z_map(prior, image, seed=3))
    assert not np.array_equal(first, prior_z_map(prior, image, seed=4))
    assert np.array_equal(image, copy)
    assert prior.calls == 3 * len(DEFAULT_Z_TIMESTEPS)  # one network call per noise level (all draws at once)


def test_a_patch_prior_by_tiles_gives_the_whole_image_map():
    """A pixel-wise exact denoiser does not care how the image is tiled: same map, by 4×4 tiles."""
    image = _image((12, 12))
    whole = prior_z_map(GaussianPrior((12, 12)), image, timesteps=(250,), seed=5)
    tiled = prior_z_map(TiledPrior(GaussianPrior((4, 4), patch_size=4), (12, 12), patch_batch=5), image, timesteps=(250,), seed=5)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)


def test_progress_after_every_noise_level_and_cancel():
    from napari_klip.core.errors import Cancelled

    updates = []
    prior_z_map(GaussianPrior(), _image(), timesteps=(10, 20, 30), seed=0, progress=updates.append)
    assert [(u.step, u.total) for u in updates] == [(1, 3), (2, 3), (3, 3)]
    with pytest.raises(Cancelled):
        prior_z_map(GaussianPrior(), _image(), timesteps=(10, 20, 30), seed=0, should_cancel=lambda: True)


@pytest.mark.parametrize(
    ("options", "image", "message"),
    [
        ({"timesteps": ()}, None, "at least one timestep"),
        ({"timesteps": (100, 1000)}, None, r"timesteps must be integers in \[0, 1000\), got 1000"),
        ({"timesteps": (-1,)}, None, "got -1"),
        ({"timesteps": (2.5,)}, None, "got 2.5"),
        ({"draws": 1}, None, "draws must be an integer >= 2"),
        ({}, np.full((12, 10), np.nan, dtype=np.float32), "finite"),
        ({}, np.zeros((2, 3, 12, 10), dtype=np.float32), "finite"),
        ({}, np.zeros((16, 16), dtype=np.float32), "the prior's grid"),
    ],
)
def test_bad_settings_and_images_are_clear_errors(options, image, message):
    prior = GaussianPrior()
    with pytest.raises(ValueError, match=message):
        prior_z_map(prior, _image() if image is None else image, **options)
    assert prior.calls == 0


def test_settings_resolve_validate_record_and_smooth():
    assert resolve_prior_z(True) == PriorZSettings() and resolve_prior_z(False) is None and resolve_prior_z(None) is None
    custom = PriorZSettings(timesteps=[np.int64(10), 20], draws=3, smoothing=1)
    assert resolve_prior_z(custom) is custom
    checked = custom.validated(1000)
    assert checked.timesteps == (10, 20) and isinstance(checked.timesteps[0], int) and checked.smoothing == 1.0
    assert PriorZSettings().record() == {"timesteps": list(DEFAULT_Z_TIMESTEPS), "draws": DEFAULT_Z_DRAWS, "smoothing_px": DEFAULT_Z_SMOOTHING}
    for bad, message in ((PriorZSettings(smoothing=-0.5), "smoothing"), (PriorZSettings(smoothing=True), "smoothing"),
                         (PriorZSettings(smoothing=float("inf")), "smoothing"), (PriorZSettings(timesteps=()), "at least one"),
                         (PriorZSettings(draws=1), "draws")):
        with pytest.raises(ValueError, match=message):
            bad.validated(1000)
    with pytest.raises(TypeError, match="prior_z"):
        resolve_prior_z("yes")
    from scipy import ndimage as ndi

    z = np.random.default_rng(0).random((9, 7)).astype(np.float32)
    before = z.copy()
    np.testing.assert_array_equal(smooth_z_map(z, 0), z)
    np.testing.assert_allclose(smooth_z_map(z, 1.5), ndi.gaussian_filter(z, 1.5))
    np.testing.assert_array_equal(z, before)
