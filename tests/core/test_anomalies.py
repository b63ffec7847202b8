"""Behaviour of the synthetic anomaly generators (lesions, star artefacts, foreground masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_klip.core.anomalies import (
    LESION_AREA_RANGE,
    LESION_CONTRAST_RANGE,
    STAR_MASK_FRACTION,
    Anomaly,
    foreground_mask,
    insert_anomaly,
    insert_lesion,
    insert_star_artifact,
)

ORGANAMNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "organamnist.npz"
SEEDS = range(20)


def disc_phantom(size: int, seed: int = 0) -> np.ndarray:
    """A textured disc of mean intensity 0.6 on a zero background, float64 size×size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    disc = (yy - centre) ** 2 + (xx - centre) ** 2 < (0.4 * size) ** 2
    return np.where(disc, 0.6 + 0.05 * rng.standard_normal((size, size)), 0.0)


@pytest.fixture(params=[64, 28], ids=["64x64", "28x28"])
def phantom(request) -> np.ndarray:
    return disc_phantom(request.param)


def foreground_scale(image: np.ndarray, foreground: np.ndarray) -> float:
    low, high = np.percentile(image[foreground], [2, 98])
    return float(high - low)


# --------------------------------------------------------------------------- foreground


def test_foreground_of_phantom_is_the_disc(phantom):
    fg = foreground_mask(phantom)
    assert fg.dtype == bool and fg.shape == phantom.shape
    np.testing.assert_array_equal(fg, phantom > 0)


def test_foreground_fills_holes_and_keeps_largest_component():
    image = np.zeros((40, 40))
    image[5:30, 5:30] = 1.0
    image[15:20, 15:20] = 0.0  # a hole
    image[35:38, 35:38] = 1.0  # a small separate blob
    fg = foreground_mask(image)
    assert fg[17, 17] and fg[5:30, 5:30].all()
    assert not fg[35:38, 35:38].any()


def test_foreground_with_explicit_threshold():
    image = np.linspace(0, 1, 100).reshape(10, 10)
    assert foreground_mask(image, threshold=2.0).sum() == 0
    assert foreground_mask(image, threshold=0.5).sum() == 50


@pytest.mark.parametrize(("value", "expected"), [(0.0, False), (-3.0, False), (5.0, True)])
def test_foreground_of_constant_image(value, expected):
    fg = foreground_mask(np.full((8, 8), value))
    assert fg.dtype == bool and (fg == expected).all()


# --------------------------------------------------------------------------- lesion


def test_lesion_area_range_and_mask_inside_foreground(phantom):
    fg = foreground_mask(phantom)
    low, high = LESION_AREA_RANGE
    for seed in SEEDS:
        result = insert_lesion(phantom, seed=seed)
        assert isinstance(result, Anomaly)
        assert result.mask.dtype == bool and result.mask.shape == phantom.shape
        assert not (result.mask & ~fg).any()
        fraction = result.mask.sum() / fg.sum()
        assert low - 1 / fg.sum() <= fraction <= high + 1 / fg.sum()
        assert 0.01 <= fraction <= 0.06  # the "roughly 1-6 %" promised to users


def test_lesion_outside_mask_is_bit_identical(phantom):
    for seed in SEEDS:
        result = insert_lesion(phantom, seed=seed)
        assert result.image.dtype == phantom.dtype
        np.testing.assert_array_equal(result.image[~result.mask], phantom[~result.mask])


def test_lesion_change_is_non_zero_and_subtle(phantom):
    scale = foreground_scale(phantom, foreground_mask(phantom))
    bound = LESION_CONTRAST_RANGE[1] * scale
    for seed in SEEDS:
        result = insert_lesion(phantom, seed=seed)
        change = (result.image - phantom)[result.mask]
        assert (change != 0).all()
        assert np.all(np.sign(change) == np.sign(change[0]))  # one direction: brighter or darker
        assert 0 < abs(change.mean()) <= bound
        assert np.abs(change).max() <= bound * (1 + 1e-9)


def test_lesion_explicit_contrast_sets_the_largest_change():
    image = disc_phantom(64)
    scale = foreground_scale(image, foreground_mask(image))
    result = insert_lesion(image, contrast=-0.2, texture=0.0, seed=1)
    change = (result.image - image)[result.mask]
    assert change.max() < 0
    assert np.abs(change).max() == pytest.approx(0.2 * scale)
    assert np.abs(change.mean()) <= 0.2 * scale


def test_lesion_explicit_radius_and_foreground():
    image = disc_phantom(64)
    fg = np.zeros(image.shape, dtype=bool)
    fg[10:40, 10:40] = True
    result = insert_lesion(image, foreground=fg, radius=5.0, seed=2)
    assert not (result.mask & ~fg).any()
    assert 0.5 * np.pi * 5**2 <= result.mask.sum() <= 1.6 * np.pi * 5**2


def test_lesion_on_integer_image_returns_float32_in_same_units():
    image = (disc_phantom(28) * 255).clip(0, 255).astype(np.uint8)
    result = insert_lesion(image, seed=0)
    assert result.image.dtype == np.float32
    np.testing.assert_array_equal(result.image[~result.mask], image[~result.mask].astype(np.float32))
    assert result.image.max() <= 300  # same units, not rescaled to [0, 1]


def test_lesion_on_flat_disc_uses_image_range():
    image = disc_phantom(32)
    image[image > 0] = 0.6  # no texture: zero percentile range inside the foreground
    result = insert_lesion(image, contrast=0.1, texture=0.0, seed=0)
    assert np.abs(result.image - image).max() == pytest.approx(0.06)


# --------------------------------------------------------------------------- star artefact


def test_star_is_bright_with_bounded_changes_outside_mask(phantom):
    peak = 0.5 * (phantom.max() - phantom.min())
    for seed in range(5):
        result = insert_star_artifact(phantom, seed=seed)
        change = result.image - phantom
        assert result.mask.any() and result.image.dtype == phantom.dtype
        assert change[result.mask].mean() > 0
        assert (change >= 0).all()
        assert change[~result.mask].max() <= STAR_MASK_FRACTION * peak * (1 + 1e-9)
        assert (change[result.mask] > STAR_MASK_FRACTION * peak).all()
        assert change.max() == pytest.approx(peak)
        # the brightest point, the centre, lies in the foreground
        assert foreground_mask(phantom).ravel()[np.argmax(change)]


def test_star_explicit_parameters():
    image = np.zeros((64, 64), dtype=np.float32)
    image[8:56, 8:56] = 1.0
    result = insert_star_artifact(image, n_rays=1, length=10.0, intensity=2.0, width=0.5, seed=3)
    change = result.image - image
    assert result.image.dtype == np.float32
    assert change.max() == pytest.approx(2.0)
    assert 10 <= result.mask.sum() <= 60  # one thin segment of length ~20
    far = ~(np.abs(change) > 0)
    assert far.sum() > 0.9 * image.size  # compact: most of the image is untouched


# --------------------------------------------------------------------------- shared behaviour

INSERTERS = [insert_lesion, insert_star_artifact]


@pytest.mark.parametrize("insert", INSERTERS)
def test_same_seed_same_output_and_different_seeds_differ(insert):
    image = disc_phantom(64)
    first, again, other = insert(image, seed=7), insert(image, seed=7), insert(image, seed=8)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)
    assert not np.array_equal(first.image, other.image)
    from_generator = insert(image, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(first.image, from_generator.image)


@pytest.mark.parametrize("insert", INSERTERS)
def test_inputs_are_not_mutated(insert):
    image = disc_phantom(32)
    fg = foreground_mask(image)
    image_copy, fg_copy = image.copy(), fg.copy()
    result = insert(image, foreground=fg, seed=0)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(fg, fg_copy)
    assert not np.shares_memory(result.image, image)
    foreground_mask(image)
    np.testing.assert_array_equal(image, image_copy)


def test_insert_anomaly_dispatches():
    image = disc_phantom(32)
    for kind, function in [("lesion", insert_lesion), ("star", insert_star_artifact)]:
        expected = function(image, seed=4)
        got = insert_anomaly(image, kind, seed=4)
        np.testing.assert_array_equal(got.image, expected.image)
        np.testing.assert_array_equal(got.mask, expected.mask)
    with pytest.raises(ValueError, match=r"kind must be one of \['lesion', 'star'\]"):
        insert_anomaly(image, "scar")


# --------------------------------------------------------------------------- bad input

GOOD = disc_phantom(16)


@pytest.mark.parametrize("function", [foreground_mask, insert_lesion, insert_star_artifact])
@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (GOOD > 0, TypeError, "2-D real numeric array, got a boolean"),
        (GOOD.astype(complex), TypeError, "got complex dtype"),
        (np.array([["a", "b"]], dtype=object), TypeError, "got dtype object"),
        (GOOD[0], ValueError, r"2-D \(H, W\) array, got 1 dimension"),
        (np.stack([GOOD, GOOD]), ValueError, r"2-D \(H, W\) array, got 3 dimension"),
        (np.zeros((0, 5)), ValueError, "must not be empty"),
        (np.where(GOOD > 0, np.nan, 0.0), ValueError, "NaN or infinite"),
        (np.where(GOOD > 0, np.inf, 0.0), ValueError, "NaN or infinite"),
    ],
    ids=["bool", "complex", "object", "1d", "3d", "empty", "nan", "inf"],
)
def test_bad_images_raise(function, image, error, message):
    with pytest.raises(error, match=message):
        function(image)


@pytest.mark.parametrize("insert", INSERTERS)
def test_empty_foreground_raises(insert):
    with pytest.raises(ValueError, match="no foreground"):
        insert(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="no foreground"):
        insert(GOOD, foreground=np.zeros(GOOD.shape, dtype=bool))


@pytest.mark.parametrize("insert", INSERTERS)
@pytest.mark.parametrize(
    ("foreground", "error", "message"),
    [
        (np.ones(GOOD.shape, dtype=np.uint8), TypeError, "foreground must be a boolean array"),
        (np.ones((4, 4), dtype=bool), ValueError, r"foreground must have the image's shape \(16, 16\)"),
    ],
    ids=["not-bool", "wrong-shape"],
)
def test_bad_foreground_raises(insert, foreground, error, message):
    with pytest.raises(error, match=message):
        insert(GOOD, foreground=foreground)


@pytest.mark.parametrize("insert", INSERTERS)
@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [("1", TypeError, "seed must be None, an int or a numpy.random.Generator"), (-1, ValueError, "non-negative")],
)
def test_bad_seed_raises(insert, seed, error, message):
    with pytest.raises(error, match=message):
        insert(GOOD, seed=seed)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"radius": 0}, ValueError, "radius must be greater than 0"),
        ({"radius": "3"}, TypeError, "radius must be a real number"),
        ({"contrast": 0.0}, ValueError, "contrast must be non-zero"),
        ({"contrast": np.nan}, ValueError, "contrast must be finite"),
        ({"texture": 1.0}, ValueError, r"texture must be in \[0, 1\)"),
        ({"texture": -0.1}, ValueError, r"texture must be in \[0, 1\)"),
        ({"texture": True}, TypeError, "texture must be a real number"),
    ],
)
def test_bad_lesion_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        insert_lesion(GOOD, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_rays": 0}, ValueError, "n_rays must be at least 1"),
        ({"n_rays": 2.5}, TypeError, "n_rays must be an int"),
        ({"length": -1.0}, ValueError, "length must be greater than 0"),
        ({"intensity": 0.0}, ValueError, "intensity must be greater than 0"),
        ({"width": np.inf}, ValueError, "width must be finite"),
    ],
)
def test_bad_star_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        insert_star_artifact(GOOD, **kwargs)


def test_bad_threshold_raises():
    with pytest.raises(TypeError, match="threshold must be a real number"):
        foreground_mask(GOOD, threshold="0.5")
    with pytest.raises(ValueError, match="threshold must be finite"):
        foreground_mask(GOOD, threshold=np.nan)


def test_too_faint_lesion_raises():
    image = np.full((16, 16), 1.0, dtype=np.float16)
    with pytest.raises(ValueError, match="too small or too faint"):
        insert_lesion(image, contrast=1e-6, texture=0.0, seed=0)


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_lesions_in_organamnist_slices():
    if not ORGANAMNIST.is_file():
        pytest.skip(f"real data 'organamnist.npz' not found at {ORGANAMNIST} (only present in the project's workspace)")
    with np.load(ORGANAMNIST) as data:
        images = data["test_images"][:10]
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    for seed, image in enumerate(images):
        fg = foreground_mask(image)
        result = insert_lesion(image, seed=seed)
        assert result.image.dtype == np.float32
        assert not (result.mask & ~fg).any()
        assert 0.01 <= result.mask.sum() / fg.sum() <= 0.10
        np.testing.assert_array_equal(result.image[~result.mask], image[~result.mask])
