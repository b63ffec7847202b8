"""Simulated measurements: the operator survives the trip through layer metadata, geometry, slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_klip.api.layers import stack_parts
from napari_klip.plugin.stacks import ResultStack, SliceSelection, stack_shape_of
from napari_klip.api import score_image, score_measurement
from napari_klip.core.klip import KlipConfig
from napari_klip.api.measurements import MeasurementInfo, OperatorSettings, random_known_mask, simulate_measurement

FAST = KlipConfig(num_samples=1, num_steps=3, seed=3)


@pytest.fixture
def image():
    yy, xx = np.mgrid[:16, :16]
    return (((yy - 8) ** 2 + (xx - 7) ** 2 < 30) * 170.0 + 20.0).astype(np.float32)


def _info(settings: OperatorSettings, **overrides) -> MeasurementInfo:
    values = dict(operator=settings, grid=(16, 16), noise_sigma=2.0, seed=5, image_shape=(32, 32), image_scale=(0.5, 0.5),
                  image_translate=(10.0, 20.0), image_units=("millimeter", "millimeter"), image_axis_labels=("y", "x"), source="ct")
    values.update(overrides)
    return MeasurementInfo(**values)


@pytest.mark.parametrize(
    "settings",
    [OperatorSettings("ct", n_views=6), OperatorSettings("blur", kernel_size=5, sigma=1.5), OperatorSettings("inpaint", known_fraction=0.3, mask_seed=4),
     OperatorSettings("downsample", factor=4)],
    ids=lambda s: s.name,
)
def test_scoring_a_simulated_measurement_equals_score_image(prior, image, settings):
    """The contract between the Simulate and KLIP widgets: metadata → operator → the same result."""
    measurement = simulate_measurement(image, settings, (16, 16), noise_sigma=2.0, seed=FAST.seed)
    info = MeasurementInfo.from_metadata({"napari_klip": json.loads(json.dumps(_info(settings).to_metadata()))})
    assert info == _info(settings)
    assert measurement.shape == info.measurement_shape()
    operator = info.operator.build(prior.image_size)
    given = score_measurement(measurement, operator, prior=prior, config=FAST, output_shape=image.shape)
    simulated = score_image(image, prior=prior, operator=settings.name, operator_params=settings.operator_params((16, 16)),
                            noise_sigma=2.0, config=FAST)
    np.testing.assert_allclose(given.trace.energy, simulated.trace.energy, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(given.heatmap, simulated.heatmap, rtol=1e-3, atol=1e-6)


def test_simulation_resizes_to_the_grid_and_is_seeded(image):
    settings = OperatorSettings("ct", n_views=8)
    big = np.kron(image, np.ones((2, 2), np.float32))
    first = simulate_measurement(big, settings, (16, 16), noise_sigma=1.0, seed=1)
    assert first.shape == (8, 23) and first.dtype == np.float32
    np.testing.assert_array_equal(first, simulate_measurement(big, settings, (16, 16), noise_sigma=1.0, seed=1))
    assert not np.array_equal(first, simulate_measurement(big, settings, (16, 16), noise_sigma=1.0, seed=2))
    clean = simulate_measurement(big, settings, (16, 16))
    assert 0.5 < np.std(first - clean) < 1.5
    with pytest.raises(ValueError, match="image"):
        simulate_measurement(np.zeros((4, 16, 16)), settings, (16, 16))


def test_inpainting_mask_is_seeded_and_has_the_known_fraction():
    mask = random_known_mask((64, 64), 0.25, seed=7)
    assert mask.dtype == bool and abs(mask.mean() - 0.25) < 0.03
    np.testing.assert_array_equal(mask, random_known_mask((64, 64), 0.25, seed=7))
    with pytest.raises(ValueError, match="known_fraction"):
        random_known_mask((4, 4), 0.0, seed=0)


def test_measurement_geometry_covers_the_source_image():
    # image pixels of 0.5 mm starting at (10, 20); a 16² grid has 1 mm pixels over the same field
    blur = _info(OperatorSettings("blur")).geometry()
    assert blur["scale"] == (1.0, 1.0) and blur["translate"] == (10.25, 20.25)
    assert blur["units"] == ("millimeter", "millimeter")
    down = _info(OperatorSettings("downsample", factor=4)).geometry()
    assert down["scale"] == (4.0, 4.0) and down["translate"] == (11.75, 21.75)
    # a sinogram is drawn beside the image (field y 9.75–25.75, x 19.75–35.75), as tall as it, one
    # row per view, one grid pixel (1 mm) per detector bin, with the image's axis labels and units
    ct = _info(OperatorSettings("ct", n_views=12)).geometry()
    assert ct["scale"] == (pytest.approx(16 / 12), 1.0) and ct["axis_labels"] == ("y", "x") and ct["units"] == ("millimeter",) * 2
    assert ct["translate"][0] - ct["scale"][0] / 2 == pytest.approx(9.75)  # top edges aligned
    assert ct["translate"][1] - 0.5 == pytest.approx(35.75 + 16 / 8)  # left edge: a gap of 1/8 of the width after the image
    stacked = _info(OperatorSettings("ct", n_views=12)).measurement_geometry(
        {"scale": (3.0, 0.5, 0.5), "translate": (1.0, 10.0, 20.0), "units": ("mm",) * 3, "axis_labels": ("z", "y", "x")}
    )
    assert stacked["scale"] == (3.0, pytest.approx(16 / 12), 1.0) and stacked["axis_labels"] == ("z", "y", "x")


def test_not_a_measurement_and_unknown_settings():
    assert MeasurementInfo.from_metadata({}) is None
    assert MeasurementInfo.from_metadata({"napari_klip": {"kind": "klip-heatmap"}}) is None
    with pytest.raises(ValueError, match="does not describe a measurement"):
        MeasurementInfo.from_metadata({"napari_klip": {"kind": "measurement", "measurement": {"grid": [16, 16]}}})
    with pytest.raises(ValueError, match="unknown operator settings"):
        OperatorSettings.from_dict({"name": "ct", "angles": [0, 1]})
    with pytest.raises(ValueError, match="unknown operator"):
        OperatorSettings("radon").operator_params((16, 16))


def test_slice_selection_and_result_stack():
    assert stack_shape_of((5, 28, 28)) == (5,) and stack_shape_of((2, 3, 28, 28, 3), rgb=True) == (2, 3)
    everything = SliceSelection.choose((2, 3), "all slices")
    assert everything.indices == ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    current = SliceSelection.choose((2, 3), "current slice", (1.4, 7.0))
    assert current.indices == ((1, 2),) and current.seed_for(10, (1, 2)) == 15
    assert SliceSelection.choose((), "current slice").indices == ((),)
    data = np.arange(2 * 3 * 4).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(current.read(data)[0], data[1, 2])

    results = ResultStack()
    results.store("a", current, ["r12"])
    results.store("a", SliceSelection.choose((2, 3), "current slice", (0, 0)), ["r00"])
    assert results.results == ["r00", None, None, None, None, "r12"]
    results.store("b", current, ["new"])  # another input: start over
    assert results.computed() == ["new"]

    stacked = stack_parts([np.ones((2, 2)), None, None, None, None, 2 * np.ones((2, 2))], (2, 3))
    assert stacked.shape == (2, 3, 2, 2) and stacked[0, 1].sum() == 0 and stacked[1, 2, 0, 0] == 2
    with pytest.raises(ValueError, match="no slice"):
        stack_parts([None, None], (2,))
