"""KLIP / LMD results as napari layer data, added to and updated in a viewer (no Qt needed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_klip.api import lmd_score, score_image
from napari_klip.core.klip import KlipConfig
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.prior import create_prior
from napari_klip.api.layers import add_to_viewer, inpainted_estimate, klip_layer_data, layer_data, lmd_layer_data


@pytest.fixture(scope="module")
def prior():
    return create_prior(16, channels=1, network="tiny", intensity_range=(0.0, 255.0))


@pytest.fixture(scope="module")
def image():
    yy, xx = np.mgrid[:20, :24]
    return (((yy - 10) ** 2 + (xx - 12) ** 2 < 40) * 180.0).astype(np.float32)


@pytest.fixture(scope="module")
def klip_result(prior, image):
    return score_image(image, prior=prior, operator="blur", config=KlipConfig(num_samples=1, num_steps=4, seed=0))


@pytest.fixture(scope="module")
def lmd_result(prior, image):
    return lmd_score(image, prior=prior, config=LmdConfig(num_reconstructions=2, num_steps=3, mask_grid=4, distance="mse"))


def test_klip_layer_data_names_styles_and_geometry(klip_result, image):
    data = klip_layer_data(klip_result, "ct", scale=(0.5, 0.7), translate=(1, 2), units=("mm", "mm"))
    by_name = {kwargs["name"]: (array, kwargs, kind) for array, kwargs, kind in data}
    assert list(by_name) == ["ct KLIP reconstruction", "ct KLIP heatmap", "ct KLIP labels"]
    heatmap, kwargs, kind = by_name["ct KLIP heatmap"]
    assert kind == "image" and heatmap.shape == image.shape and heatmap.dtype == np.float32
    assert kwargs["blending"] == "translucent" and 0 < kwargs["opacity"] <= 1
    colormap = kwargs["colormap"]  # inferno whose alpha rises from 0 (low: the anatomy shows) to 1 (high)
    assert colormap["name"] == "inferno (low transparent)"
    assert colormap["colors"][0, 3] == 0 and colormap["colors"][-1, 3] == 1 and np.all(np.diff(colormap["colors"][:, 3]) > 0)
    assert kwargs["contrast_limits"] == (pytest.approx(float(heatmap.min())), pytest.approx(float(heatmap.max())))
    assert kwargs["scale"] == (0.5, 0.7) and kwargs["translate"] == (1, 2) and kwargs["units"] == ("mm", "mm")
    assert kwargs["metadata"]["napari_klip"] == {"kind": "klip-heatmap", "source": "ct", "output": "KLIP heatmap", "scores": [klip_result.score]}
    labels, _, kind = by_name["ct KLIP labels"]
    assert kind == "labels" and np.array_equal(labels, klip_result.labels)
    np.testing.assert_array_equal(by_name["ct KLIP reconstruction"][0], klip_result.reconstruction)


def test_a_prior_z_map_is_one_more_hidden_layer_zero_where_a_slice_has_none(klip_result, image):
    from dataclasses import replace

    with_z = replace(klip_result, prior_z=np.arange(image.size, dtype=np.float32).reshape(image.shape))
    data = klip_layer_data([with_z, klip_result], "s", scale=(3, 0.5, 0.5))
    assert [kwargs["name"] for _, kwargs, _ in data][-1] == "s prior z-map"
    z_map, kwargs, kind = data[-1]
    assert kind == "image" and z_map.shape == (2, *image.shape) and kwargs["visible"] is False
    np.testing.assert_array_equal(z_map[0], with_z.prior_z)
    assert not z_map[1].any() and kwargs["scale"] == (3, 0.5, 0.5)
    assert kwargs["metadata"]["napari_klip"]["kind"] == "prior-z" and kwargs["colormap"]["name"] == "viridis (low transparent)"
    assert len(klip_layer_data(klip_result, "s")) == 3  # no map asked for: no layer


def test_stacks_fill_unscored_slices_with_zeros(klip_result, lmd_result, image):
    data = klip_layer_data([None, klip_result, None, None], "s", stack_shape=(2, 2), scale=(3, 1, 0.5, 0.5))
    heatmap = data[1][0]
    assert heatmap.shape == (2, 2, *image.shape)
    np.testing.assert_array_equal(heatmap[0, 1], klip_result.heatmap)
    assert not heatmap[0, 0].any() and not heatmap[1].any()
    reconstruction, kwargs, _ = lmd_layer_data([lmd_result, None], "s", scale=(3, 0.5, 0.5), units=("mm",) * 3)[0]
    # input-shaped: no reconstruction axis in front of the image's axes
    assert reconstruction.shape == (2, *image.shape)
    np.testing.assert_array_equal(reconstruction[0], inpainted_estimate(lmd_result.reconstructions, lmd_result.masks))
    assert kwargs["scale"] == (3, 0.5, 0.5) and kwargs["units"] == ("mm", "mm", "mm")
    with pytest.raises(ValueError, match="no result"):
        klip_layer_data([None, None], "s")
    with pytest.raises(ValueError, match="scale has 2 entries"):
        klip_layer_data([klip_result], "s", scale=(1.0, 1.0))  # a stack of one has 3 axes


def test_layer_data_dispatches_on_the_result_type(klip_result, lmd_result):
    assert [kwargs["name"] for _, kwargs, _ in layer_data(lmd_result, "x")] == ["x LMD reconstruction", "x LMD heatmap"]
    assert len(layer_data([klip_result, klip_result], "x")) == 3
    with pytest.raises(TypeError, match="KlipResult or LmdResult"):
        layer_data(object(), "x")


def test_add_to_viewer_updates_its_own_layers_and_leaves_others_alone(klip_result, image):
    napari = pytest.importorskip("napari")
    viewer = napari.components.ViewerModel()
    user_layer = viewer.add_image(np.ones(image.shape), name="ct KLIP heatmap")  # same name, not ours
    first = add_to_viewer(viewer, klip_result, "ct", scale=(2.0, 2.0))
    assert len(viewer.layers) == 4 and user_layer in viewer.layers and first[1] is not user_layer
    assert np.all(user_layer.data == 1)
    heatmap_layer = first[1]
    assert tuple(heatmap_layer.scale) == (2.0, 2.0) and heatmap_layer.blending == "translucent"
    assert heatmap_layer.colormap.name == "inferno (low transparent)" and heatmap_layer.colormap.colors[0, 3] == 0
    heatmap_layer.opacity = 0.9  # a user's change survives updates

    coarser = klip_result.rescore(block_size=4, window=(0, 4))  # 4 input pixels: divides 20 and 24
    second = add_to_viewer(viewer, coarser, "ct", scale=(2.0, 2.0))
    assert len(viewer.layers) == 4 and second[1] is heatmap_layer
    np.testing.assert_array_equal(heatmap_layer.data, coarser.heatmap)
    assert heatmap_layer.opacity == 0.9
    assert heatmap_layer.contrast_limits == [pytest.approx(float(coarser.heatmap.min())), pytest.approx(float(coarser.heatmap.max()))]

    position = list(viewer.layers).index(heatmap_layer)
    stacked = add_to_viewer(viewer, [klip_result, coarser], "ct")  # another dimensionality: replaced in place
    assert len(viewer.layers) == 4 and stacked[1].data.shape == (2, *image.shape)
    assert heatmap_layer not in viewer.layers and list(viewer.layers).index(stacked[1]) == position


def test_scripting_modules_import_neither_napari_nor_qt_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_klip.layers, napari_klip.api.layers, napari_klip.api.measurements, napari_klip.plugin.sample_data; "
        "print(','.join(m for m in ('napari', 'qtpy', 'PyQt5', 'magicgui', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_measurements_of_two_operators_are_two_layers_and_reruns_update_them():
    napari = pytest.importorskip("napari")
    from napari_klip.api.layers import add_layer_data, measurement_layer_data
    from napari_klip.api.measurements import MeasurementInfo, OperatorSettings

    viewer = napari.components.ViewerModel()
    geometry = {"scale": (2.0, 0.5, 0.5), "translate": (0.0, 0.0, 0.0), "units": ("mm",) * 3, "axis_labels": ("z", "y", "x")}
    for name, shape in (("ct", (6, 23)), ("blur", (16, 16)), ("ct", (6, 23))):
        info = MeasurementInfo(OperatorSettings(name, n_views=6), grid=(16, 16), noise_sigma=0.0, seed=0, image_shape=(32, 32), image_scale=(0.5, 0.5))
        add_layer_data(viewer, measurement_layer_data([np.ones(shape), None], "slices", info=info, **geometry))
    assert [layer.name for layer in viewer.layers] == ["slices ct measurement", "slices blur measurement"]
    sinogram = viewer.layers["slices ct measurement"]
    assert sinogram.data.shape == (2, 6, 23) and tuple(sinogram.scale) == pytest.approx((2.0, 16 / 6, 1.0))  # as tall as the image
    assert MeasurementInfo.from_metadata(sinogram.metadata).operator.n_views == 6


def test_inpainted_estimate_averages_the_reconstructions_that_inpainted_each_pixel():
    rng = np.random.default_rng(3)
    reconstructions = rng.normal(size=(3, 4, 5)).astype(np.float32)
    masks = rng.random((3, 4, 5)) < 0.4
    masks[:, 0, 0] = False  # a pixel no reconstruction inpainted
    estimate = inpainted_estimate(reconstructions, masks)
    for y in range(4):
        for x in range(5):
            chosen = reconstructions[masks[:, y, x], y, x]
            expected = chosen.mean() if chosen.size else np.median(reconstructions[:, y, x])
            assert estimate[y, x] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    rgb = inpainted_estimate(np.repeat(reconstructions[..., None], 3, axis=-1), masks)
    assert rgb.shape == (4, 5, 3) and np.allclose(rgb[..., 1], estimate)
    assert np.array_equal(reconstructions, reconstructions.copy())  # inputs unchanged
