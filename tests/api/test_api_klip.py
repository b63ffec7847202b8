"""The Python API: score an image or a given measurement; rescore without sampling; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_klip.api import build_operator, score_image, score_measurement
from napari_klip.core.data import ImageDataError
from napari_klip.core.klip import KlipConfig, block_score_map
from napari_klip.core.operators import SparseViewCT
from napari_klip.core.prior import PriorLoadError

FAST = KlipConfig(num_samples=2, num_steps=8, seed=1)


@pytest.fixture
def image():
    yy, xx = np.mgrid[:20, :20]
    return (((yy - 10) ** 2 + (xx - 9) ** 2 < 40) * 180).astype(np.uint8)


def test_score_image_shapes_and_consistency(prior, image):
    before = image.copy()
    result = score_image(image, prior=prior, operator="ct", operator_params={"n_views": 6}, config=FAST, block_size=4, window=(2, 6))
    assert np.array_equal(image, before)
    assert result.heatmap.shape == image.shape == result.labels.shape == result.reconstruction.shape
    # blocks count input pixels: 4-px blocks of the 20² input (the 16² prior's energy resized to 20²)
    assert result.block_size == 4 and result.score_map.shape == (5, 5)
    np.testing.assert_allclose(result.score_map, block_score_map(result.trace.energy, 4, (2, 6), shape=(20, 20)))
    assert result.parameters["resized"] == {"from": [20, 20], "to": [16, 16]}
    assert any("resized" in note for note in result.parameters["notes"])
    assert result.score == pytest.approx(result.score_map.max())
    assert result.labels.dtype == np.uint8 and set(np.unique(result.labels)) <= {0, 1}
    assert result.parameters["operator"]["name"] == "ct" and result.parameters["network_calls"] == 8
    flagged_blocks = result.score_map > result.threshold_value
    assert (result.labels.sum() > 0) == flagged_blocks.any()


def test_observed_is_what_the_measurement_shows(prior, image):
    from napari_klip.core.grid import to_input_grid, to_prior_grid

    denoised = score_image(image, prior=prior, operator="denoise", config=FAST)
    assert denoised.observed.shape == image.shape
    # identity operator: the observed image is the input on the prior's 16² grid, brought back to 20²
    on_grid = prior.from_model_range(to_prior_grid(image, prior))[0]
    np.testing.assert_allclose(denoised.observed, to_input_grid(on_grid, image.shape, order=1), rtol=1e-5, atol=1e-3)
    ct = score_image(image, prior=prior, operator="ct", operator_params={"n_views": 90}, config=FAST)
    # CT: the filtered back-projection, which with many views is close to the image
    correlation = np.corrcoef(ct.observed.ravel(), image.ravel().astype(float))[0, 1]
    assert correlation > 0.9, correlation


def test_rescore_equals_scoring_again(prior, image):
    result = score_image(image, prior=prior, operator="blur", operator_params={"kernel_size": 3, "sigma": 1.0}, config=FAST)
    again = score_image(image, prior=prior, operator="blur", operator_params={"kernel_size": 3, "sigma": 1.0}, config=FAST, block_size=10, window=(0, 8), threshold="percentile:50")
    rescored = result.rescore(block_size=10, window=(0, 8), threshold="percentile:50")
    np.testing.assert_allclose(rescored.score_map, again.score_map, rtol=1e-6)
    np.testing.assert_array_equal(rescored.labels, again.labels)
    assert result.block_size == 1 and result.window == (5, 7)  # defaults for 20² on a 16² prior, 8 steps; unchanged by rescore


def test_score_measurement_ingests_a_sinogram(prior, image):
    from skimage.transform import resize

    angles = [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]
    operator = SparseViewCT(16, angles=angles)
    image16 = resize(image.astype(np.float64), (16, 16), order=1, anti_aliasing=True, preserve_range=True)
    sinogram = operator(torch.from_numpy(image16)[None, None])[0, 0].numpy()
    given = score_measurement(sinogram, operator, prior=prior, config=FAST, block_size=4, window=(2, 6))
    simulated = score_image(image, prior=prior, operator=operator, config=FAST, block_size=4, window=(2, 6))
    np.testing.assert_allclose(given.trace.energy, simulated.trace.energy, rtol=1e-3, atol=1e-6)
    assert given.heatmap.shape == (16, 16)


def test_bad_inputs(prior, image):
    with pytest.raises(ImageDataError, match=r"expected one image shaped \(H, W\)"):
        score_image(np.zeros((2, 16, 16)), prior=prior, config=FAST)
    with pytest.raises(ImageDataError, match="NaN"):
        score_image(np.full((16, 16), np.nan), prior=prior, config=FAST)
    with pytest.raises(PriorLoadError, match="does not exist"):
        score_image(image, prior="/no/such/prior")
    with pytest.raises(ValueError, match="needs a mask"):
        build_operator("inpaint", (16, 16))
    with pytest.raises(ValueError, match="threshold rule"):
        score_image(image, prior=prior, config=FAST, threshold="top:3")
    with pytest.raises(ValueError, match="block_size"):
        score_image(image, prior=prior, config=FAST, block_size=3)
    with pytest.raises(ValueError, match="one 2-D array"):
        score_measurement(np.zeros((1, 6, 23)), SparseViewCT(16, 6), prior=prior, config=FAST)


def test_default_prior_is_bundled_and_loads():
    from napari_klip.api import default_prior_path, resolve_prior

    folder = default_prior_path()
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = resolve_prior(None, device="cpu")
    assert loaded.path == folder
    assert loaded.image_size == (32, 32) and loaded.channels == 1
    assert loaded.metadata.intensity_range == (0.0, 255.0)


def test_the_brain_sample_with_the_default_prior_says_it_mapped_and_resized():
    """The 256² int16 MRI (0 to about 3000) on the bundled 32² 0–255 CT prior: mapped, resized, said, and back in MRI units."""
    from napari_klip.core.samples import BRAIN_FILE, load_sample

    image = load_sample(BRAIN_FILE)["image"][2]
    result = score_image(image, operator="ct", config=KlipConfig(num_samples=1, num_steps=3, seed=0), device="cpu")
    intensity = result.parameters["intensity"]
    assert intensity["mode"] == "auto" and intensity["mapped"]
    assert intensity["source"] == pytest.approx(list(np.percentile(image.astype(np.float64), [1, 99])))
    assert result.parameters["resized"] == {"from": [256, 256], "to": [32, 32]}
    notes = result.parameters["notes"]
    assert any(note.startswith("intensities mapped (auto)") for note in notes) and any("resized" in note for note in notes)
    assert result.heatmap.shape == result.reconstruction.shape == (256, 256)
    assert result.block_size == 16 and result.score_map.shape == (16, 16)  # the prior's 2-px default, in image pixels
    assert result.reconstruction.max() > 255 and np.isfinite(result.score)


def test_prior_z_map_of_the_observed_image_on_the_input_grid(prior, image):
    from scipy import ndimage as ndi

    from napari_klip.core.grid import to_input_grid, to_prior_grid
    from napari_klip.core.prior_z import prior_z_map

    plain = score_image(image, prior=prior, operator="denoise", config=FAST)
    assert plain.prior_z is None and "prior_z" not in plain.parameters
    result = score_image(image, prior=prior, operator="denoise", config=FAST, prior_z=True)
    assert result.prior_z.shape == image.shape and result.prior_z.dtype == np.float32
    # identity operator: the observed image is the input on the prior's 16² grid; its map (seeded by the image's
    # seed), smoothed by 2 px there and brought back to the 20² input
    expected = to_input_grid(ndi.gaussian_filter(prior_z_map(prior, to_prior_grid(image, prior), seed=FAST.seed), 2.0), image.shape, order=1)
    np.testing.assert_allclose(result.prior_z, expected, rtol=1e-5, atol=1e-5)
    assert result.parameters["prior_z"] == {"timesteps": [50, 100, 250, 400, 500, 600, 750], "draws": 16, "smoothing_px": 2.0, "seed": 1}
    np.testing.assert_array_equal(result.heatmap, plain.heatmap)  # the KLIP maps do not change
    assert result.rescore(block_size=10).prior_z is result.prior_z


def test_prior_z_settings_choose_timesteps_and_smoothing_and_bad_ones_fail_before_sampling(prior, image):
    from napari_klip.core.grid import to_input_grid, to_prior_grid
    from napari_klip.core.prior_z import PriorZSettings, prior_z_map

    settings = PriorZSettings(timesteps=(100, 300), draws=4, smoothing=0)
    result = score_image(image, prior=prior, operator="denoise", config=FAST, prior_z=settings)
    expected = to_input_grid(prior_z_map(prior, to_prior_grid(image, prior), timesteps=(100, 300), draws=4, seed=FAST.seed), image.shape, order=1)
    np.testing.assert_allclose(result.prior_z, expected, rtol=1e-5, atol=1e-5)  # unsmoothed
    assert result.parameters["prior_z"] == {"timesteps": [100, 300], "draws": 4, "smoothing_px": 0.0, "seed": 1}
    calls = []
    original = prior.predict_noise
    prior.predict_noise = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        for bad, message in ((PriorZSettings(timesteps=(100, 5000)), "timesteps"), (PriorZSettings(draws=1), "draws"),
                             (PriorZSettings(smoothing=-1.0), "smoothing"), (PriorZSettings(smoothing=float("nan")), "smoothing")):
            with pytest.raises(ValueError, match=message):
                score_image(image, prior=prior, operator="denoise", config=FAST, prior_z=bad)
        with pytest.raises(TypeError, match="prior_z"):
            score_image(image, prior=prior, operator="denoise", config=FAST, prior_z=2.0)
    finally:
        prior.predict_noise = original
    assert not calls  # nothing was sampled
