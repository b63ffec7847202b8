"""Trivial baseline maps and their image-level ROC-AUC (core.baselines, core.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_klip.core.baselines import (
    BASELINE_NAMES,
    baseline_maps,
    blob_contrast_map,
    body_depth_map,
    centre_map,
    local_contrast_map,
    residual_map,
)
from napari_klip.core.metrics import baseline_image_level_aucs


def test_centre_map_peaks_at_the_centre_and_falls_off_radially():
    values = centre_map((5, 7))
    assert values.shape == (5, 7)
    assert np.unravel_index(values.argmax(), values.shape) == (2, 3)
    assert values[0, 0] == values[4, 6] == values.min() == pytest.approx(-np.hypot(2, 3))


def test_local_contrast_is_absolute_difference_to_the_window_mean():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(12, 10))
    expected = np.abs(image - ndi.uniform_filter(image, size=3, mode="reflect"))
    np.testing.assert_allclose(local_contrast_map(image, window=3), expected)
    assert np.all(local_contrast_map(np.full((8, 8), 7.0)) == 0)


def test_blob_contrast_peaks_on_a_blob_of_its_scale_and_ignores_flat_and_linear_images():
    rows, columns = np.indices((41, 41), dtype=np.float64)
    blob = np.exp(-((rows - 14) ** 2 + (columns - 25) ** 2) / (2 * 2.0**2))
    values = blob_contrast_map(5.0 + blob, sigma=2.0)
    assert np.unravel_index(values.argmax(), values.shape) == (14, 25)
    assert values[14, 25] > 10 * values[35, 5]
    assert np.all(blob_contrast_map(np.full((9, 9), 3.0)) == 0)
    ramp = 0.5 * rows + 2.0 * columns  # Gaussian smoothing keeps a linear image: no contrast away from the edges
    np.testing.assert_allclose(blob_contrast_map(ramp, sigma=1.0)[12:-12, 12:-12], 0.0, atol=1e-9)
    # the two Gaussians are the independent reference: scipy's filter at σ and 3σ
    image = np.random.default_rng(2).normal(size=(16, 12))
    expected = np.abs(ndi.gaussian_filter(image, 1.5, mode="reflect") - ndi.gaussian_filter(image, 4.5, mode="reflect"))
    np.testing.assert_allclose(blob_contrast_map(image, sigma=1.5), expected)


def _brute_force_depth(body: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest pixel outside ``body`` or outside the image (independent reference)."""
    padded = np.pad(body, 1)
    outside = np.argwhere(~padded)
    depth = np.zeros(padded.shape)
    for pixel in np.argwhere(padded):
        depth[tuple(pixel)] = np.sqrt(((outside - pixel) ** 2).sum(axis=1)).min()
    return depth[1:-1, 1:-1]


def test_body_depth_is_the_distance_to_the_body_edge():
    rows, columns = np.indices((21, 25), dtype=np.float64)
    body = (rows - 10) ** 2 + (columns - 11) ** 2 <= 7**2
    image = np.where(body, 200.0, 10.0) + np.random.default_rng(3).normal(0, 2, body.shape)
    before = image.copy()
    depth = body_depth_map(image)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_allclose(depth, _brute_force_depth(body))
    assert np.unravel_index(depth.argmax(), depth.shape) == (10, 11)
    assert np.all(depth[~body] == 0)
    # a body filling the image: the depth is the distance to the image's edge
    np.testing.assert_allclose(body_depth_map(np.full((5, 6), 3.0)), _brute_force_depth(np.ones((5, 6), bool)))
    # no body (a constant image of value 0): nothing to rank
    assert np.all(body_depth_map(np.zeros((4, 4))) == 0)


def test_residual_map_and_inputs_untouched():
    image, reconstruction = np.arange(12.0).reshape(3, 4), np.ones((3, 4))
    before = image.copy(), reconstruction.copy()
    np.testing.assert_array_equal(residual_map(image, reconstruction), np.abs(image - 1))
    maps = baseline_maps(image, reconstruction)
    assert tuple(maps) == BASELINE_NAMES
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(reconstruction, before[1])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: local_contrast_map(np.zeros((4, 4)), window=4), "odd"),
        (lambda: local_contrast_map(np.zeros(5)), "2-D"),
        (lambda: local_contrast_map(np.full((4, 4), np.nan)), "NaN"),
        (lambda: residual_map(np.zeros((4, 4)), np.zeros((4, 5))), "shape"),
        (lambda: blob_contrast_map(np.zeros((4, 4)), sigma=0), "sigma"),
        (lambda: blob_contrast_map(np.zeros((4, 4)), sigma=float("nan")), "sigma"),
        (lambda: blob_contrast_map(np.zeros((4, 4)), sigma=True), "sigma"),
        (lambda: blob_contrast_map(np.full((4, 4), np.inf)), "NaN"),
        (lambda: body_depth_map(np.zeros(5)), "2-D"),
        (lambda: body_depth_map(np.full((4, 4), np.nan)), "NaN"),
    ],
)
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_baseline_aucs_follow_the_protocol():
    # A bright 2x2 spot in a flat image, away from the centre: local contrast finds it, the
    # centre map ranks it last, the residual to a reconstruction without the spot finds it.
    flat = np.full((8, 8), 10.0)
    spotted = flat.copy()
    spotted[0:2, 0:2] = 50.0
    label = np.zeros((8, 8), bool)
    label[0:2, 0:2] = True
    aucs = baseline_image_level_aucs([spotted], [flat], [label], block_size=2)
    assert set(aucs) == set(BASELINE_NAMES)
    assert aucs["residual"].mean_auc == 1.0
    assert aucs["local-contrast"].mean_auc > 0.9
    assert aucs["centre"].mean_auc == pytest.approx(1.5 / 15)  # a corner: ties only with the 3 other corners
    with pytest.raises(ValueError, match="divide"):
        baseline_image_level_aucs([spotted], [flat], [label], block_size=3)


def test_centre_baseline_alone_equals_the_centre_entry():
    from napari_klip.core.metrics import centre_baseline_auc

    rng = np.random.default_rng(1)
    labels = [rng.random((8, 8)) < 0.2 for _ in range(3)]
    images = [rng.normal(size=(8, 8)) for _ in range(3)]
    together = baseline_image_level_aucs(images, images, labels, block_size=2)["centre"]
    alone = centre_baseline_auc(labels, block_size=2)
    assert alone.per_image == together.per_image and np.isfinite(alone.mean_auc)
