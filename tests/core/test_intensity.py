"""Input intensities to a prior's units: the documented rule of napari_klip.core.intensity."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from napari_klip.core.errors import ImageDataError
from napari_klip.core.intensity import check_intensity, resolve_intensity, training_statistics
from napari_klip.core.prior import METADATA_FILE, PriorMetadata, create_prior, load_prior

CT_PRIOR = PriorMetadata(image_size=(16, 16), channels=1, intensity_range=(0.0, 255.0))


def _quiet(images, metadata=CT_PRIOR, intensity="auto"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these cases may warn
        return resolve_intensity(images, metadata, intensity)


def _hu_slice(seed: int = 0) -> np.ndarray:
    """A CT slice in Hounsfield units: air, soft tissue, bone, noise (int16)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    image = np.full((32, 32), -1000.0)
    image[(yy - 16) ** 2 + (xx - 16) ** 2 < 150] = 40.0
    image[(yy - 16) ** 2 + (xx - 20) ** 2 < 10] = 1200.0
    return np.rint(image + rng.normal(0, 15, image.shape)).astype(np.int16)


def test_hu_input_maps_its_percentiles_to_the_prior_range():
    image = _hu_slice()
    before = image.copy()
    mapping = resolve_intensity(image, CT_PRIOR)
    p1, p99 = np.percentile(image.astype(np.float64), [1, 99])
    assert mapping.mapped and mapping.mode == "auto"
    assert mapping.source == pytest.approx((p1, p99)) and mapping.target == (0.0, 255.0)
    mapped = mapping.apply(image)
    assert mapped.dtype == np.float32 and np.array_equal(image, before)  # input untouched
    np.testing.assert_allclose(mapping.apply(np.array([p1, p99])), [0.0, 255.0], atol=1e-3)
    np.testing.assert_allclose(mapping.invert(mapped), image, atol=0.05)  # back in HU
    assert mapping.outside_fraction == pytest.approx(np.mean((image < p1) | (image > p99)))  # the 1 % tails
    assert mapping.describe()["source"] == pytest.approx([p1, p99]) and "reason" in mapping.describe()


def test_recorded_training_percentiles_are_the_targets():
    rng = np.random.default_rng(1)
    training = rng.integers(20, 200, size=(5, 16, 16)).astype(np.uint8)
    stats = training_statistics(training)
    metadata = PriorMetadata(image_size=(16, 16), channels=1, intensity_range=(0.0, 255.0), intensity_stats=stats)
    image = (rng.random((16, 16)) * 40000).astype(np.uint16)
    mapping = resolve_intensity(image, metadata)
    expected = tuple(np.percentile(training.astype(np.float64), [1, 99]))
    assert mapping.target == pytest.approx(expected)
    assert mapping.target == pytest.approx((stats["percentiles"]["1"], stats["percentiles"]["99"]))
    source = np.percentile(image.astype(np.float64), [1, 99])
    np.testing.assert_allclose(mapping.apply(source), expected, rtol=1e-5)


def test_training_statistics_match_numpy():
    data = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    stats = training_statistics(data)
    values = data.astype(np.float64)
    assert stats["dtype"] == "uint16" and stats["min"] == 0.0 and stats["max"] == 999.0
    assert stats["mean"] == pytest.approx(values.mean()) and stats["std"] == pytest.approx(values.std())
    assert stats["percentiles"] == pytest.approx({k: np.percentile(values, float(k)) for k in ("0.5", "1", "50", "99", "99.5")})


@pytest.mark.parametrize(
    ("image", "mapped"),
    [
        (np.linspace(0, 255, 256).reshape(16, 16).astype(np.uint8), False),  # the prior's own units
        (np.linspace(10, 240, 256).reshape(16, 16).astype(np.float32), False),
        (np.linspace(0, 1, 256).reshape(16, 16).astype(np.float32), True),  # [0, 1] floats: under 1 % of the range
        (np.linspace(500, 4000, 256).reshape(16, 16).astype(np.uint16), True),  # 12-bit camera
        (np.linspace(-1000, 3000, 256).reshape(16, 16).astype(np.int16), True),  # Hounsfield units
    ],
    ids=["uint8-in-range", "float-in-range", "float-0-1", "uint16", "int16-hu"],
)
def test_auto_maps_only_inputs_clearly_in_other_units(image, mapped):
    mapping = _quiet(image)
    assert mapping.mapped is mapped
    if not mapped:
        np.testing.assert_array_equal(mapping.apply(image), image.astype(np.float32))
    else:  # only the tails beyond the 1st and 99th percentiles stay outside
        low, high = np.percentile(image.astype(np.float64), [1, 99])
        assert mapping.outside_fraction == pytest.approx(np.mean((image < low) | (image > high)))


def test_none_and_an_explicit_range():
    image = np.linspace(-1000, 3000, 256).reshape(16, 16).astype(np.int16)
    with pytest.warns(UserWarning, match="outside the prior's intensity range"):
        none = resolve_intensity(image, CT_PRIOR, "none")
    assert not none.mapped and none.outside_fraction > 0.5
    np.testing.assert_array_equal(none.apply(image), image.astype(np.float32))
    explicit = _quiet(image, intensity=(-1000, 3000))
    assert explicit.mode == "range" and explicit.source == (-1000.0, 3000.0) and explicit.target == (0.0, 255.0)
    np.testing.assert_allclose(explicit.apply(np.array([-1000.0, 1000.0, 3000.0])), [0.0, 127.5, 255.0])
    np.testing.assert_allclose(explicit.invert_spread(np.array([255.0 / 4000.0])), [1.0], rtol=1e-6)


def test_mostly_outside_after_mapping_warns_and_records_it():
    image = np.linspace(0, 255, 256).reshape(16, 16).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"of the pixels lie outside the prior's intensity range \[0, 255\]"):
        mapping = resolve_intensity(image, CT_PRIOR, (0, 10))
    assert mapping.outside_fraction == pytest.approx(np.mean(image > 10))
    assert "warning" in mapping.describe() and json.dumps(mapping.describe())


def test_constant_images():
    inside = np.full((8, 8), 100, np.uint8)
    assert not _quiet(inside).mapped
    with pytest.raises(ImageDataError, match="no spread to map automatically.*--intensity-range"):
        resolve_intensity(np.full((8, 8), 1000, np.uint16), CT_PRIOR)
    mapping = _quiet(np.full((8, 8), 1000, np.uint16), intensity=(0, 2000))  # explicit works
    assert mapping.apply(np.array([1000.0]))[0] == pytest.approx(127.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", ["auto", "none", (0.0, 1.0)])
def test_non_finite_values_are_an_error(bad, mode):
    image = np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8)
    image[3, 3] = bad
    with pytest.raises(ImageDataError, match="NaN or infinite"):
        resolve_intensity(image, CT_PRIOR, mode)


@pytest.mark.parametrize("bad", ["linear", (5, 5), (3, 1), (float("nan"), 1), (0, float("inf")), (1,), "5 6", None])
def test_bad_rules_are_value_errors(bad):
    with pytest.raises(ValueError, match="intensity"):
        check_intensity(bad)


def test_old_priors_load_without_statistics_and_new_ones_keep_them(tmp_path):
    prior = create_prior(16, network="tiny", intensity_range=(0.0, 255.0))
    folder = prior.save(tmp_path / "old")
    data = json.loads((folder / METADATA_FILE).read_text())
    data.pop("intensity_stats", None)  # as written before statistics were recorded
    (folder / METADATA_FILE).write_text(json.dumps(data))
    old = load_prior(folder, "cpu")
    assert old.metadata.intensity_stats == {}
    mapping = _quiet(np.linspace(500, 4000, 256).reshape(16, 16), old.metadata)
    assert mapping.target == (0.0, 255.0)  # falls back to intensity_range
    stats = training_statistics(np.arange(256, dtype=np.uint8))
    data["intensity_stats"] = stats
    (folder / METADATA_FILE).write_text(json.dumps(data))
    assert load_prior(folder, "cpu").metadata.intensity_stats == stats


def test_large_stacks_are_summarised_from_an_even_stride():
    from napari_klip.core.intensity import MAX_SAMPLED_PIXELS

    rng = np.random.default_rng(2)
    big = rng.integers(1000, 5000, size=(3, 2048, 2048), dtype=np.uint16)
    assert big.size > MAX_SAMPLED_PIXELS
    mapping = _quiet(big)
    np.testing.assert_allclose(mapping.source, np.percentile(big, [1, 99]), rtol=2e-3)
    stats = training_statistics(big)
    assert stats["mean"] == pytest.approx(big.mean()) and stats["max"] == float(big.max())
