"""The napari plugin items of the reliability catalogue (issue 15), in a real headless viewer.

Mixed settings across runs, the dock layout, the heatmap's look, the sinogram's and LMD's place in
the viewer's world, the score line, missing LPIPS weights, a cancelled overwrite training and a
broken prior. Rows of ``docs/reliability.md`` name these tests.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from plugin_helpers import RUN_TIMEOUT_MS, WIDGETS, dock, fast_klip, folder_snapshot, names, new_errors, new_notifications
from plugin_helpers import notification_manager, run_and_wait, viewer  # noqa: F401 (the viewer fixture)

CT = "CT slices with lesions"
#: Bounds the layout tests hold the docks to (px): four docked widgets fit a 1080-pixel screen.
DOCK_MIN_HEIGHT = 300
WINDOW_MIN_HEIGHT = 1080
DOCK_WIDTH = 600


def go_to_slice(viewer, layer, index):
    viewer.dims.set_point(0, layer.data_to_world((index, 0, 0))[0])


def edges(layer):
    """World coordinates of the top-left and bottom-right pixel edges of a layer's image axes."""
    shape = layer.data.shape
    first = layer.data_to_world((0,) * (len(shape) - 2) + (-0.5, -0.5))[-2:]
    last = layer.data_to_world((0,) * (len(shape) - 2) + (shape[-2] - 0.5, shape[-1] - 0.5))[-2:]
    return tuple(first), tuple(last)


def fast_lmd(widget, layer, reconstructions=2):
    widget.input.value = layer
    widget.reconstructions.value, widget.steps.value, widget.distance.value = reconstructions, 3, "mse"
    widget.slice_mode.value = "current slice"
    return widget


# --- results of earlier runs with other settings ----------------------------------------------


@pytest.mark.slow
def test_klip_runs_with_other_settings_keep_each_slices_own_settings(viewer, qtbot):
    viewer.open_sample("napari-klip", "ct_lesions")
    image = viewer.layers[CT]
    widget = fast_klip(dock(viewer, "KLIP detector"), image, "current slice")
    go_to_slice(viewer, image, 2)
    run_and_wait(qtbot, widget)
    heatmap = viewer.layers[f"{CT} KLIP heatmap"]
    first, first_map = widget.results.results[2], heatmap.data[2].copy()

    go_to_slice(viewer, image, 5)
    widget.steps.value = 6  # another trace length, hence another default window
    since = len(notification_manager.records)
    run_and_wait(qtbot, widget)
    assert new_errors(since) == []
    assert widget.results.results[2] is first  # slice 2 kept its result, score and window
    np.testing.assert_array_equal(heatmap.data[2], first_map)
    assert heatmap.data[5].any() and "Slice 2 keeps the settings it was scored with" in widget.status.value
    assert f"2: {first.score:.3g}" in widget.score.value

    widget.block_size.value = 14  # block sizes count input pixels (28² slices); a rescore touches the last run's slice only
    assert widget.results.results[2] is first and widget.results.results[5].block_size == 14
    np.testing.assert_array_equal(heatmap.data[2], first_map)
    assert "Rescored slice 5" in widget.status.value


@pytest.mark.slow
def test_lmd_runs_with_other_settings_keep_each_slices_own_settings(viewer, qtbot):
    viewer.open_sample("napari-klip", "ct_lesions")
    image = viewer.layers[CT]
    widget = fast_lmd(dock(viewer, "LMD detector"), image, reconstructions=2)
    go_to_slice(viewer, image, 1)
    run_and_wait(qtbot, widget)
    heatmap = viewer.layers[f"{CT} LMD heatmap"]
    first, first_map = widget.results.results[1], heatmap.data[1].copy()

    go_to_slice(viewer, image, 4)
    widget.reconstructions.value = 3  # used to fail: "slices differ in shape", the result lost
    since = len(notification_manager.records)
    run_and_wait(qtbot, widget)
    assert new_errors(since) == []
    assert widget.results.results[1] is first and widget.results.results[4].reconstructions.shape[0] == 3
    np.testing.assert_array_equal(heatmap.data[1], first_map)
    assert heatmap.data[4].any() and "Slice 1 keeps the settings it was scored with" in widget.status.value
    assert f"1: {first.score:.3g}" in widget.score.value and f"4: {widget.results.results[4].score:.3g}" in widget.score.value


def test_simulate_with_other_settings_simulates_the_earlier_slices_again(viewer, qtbot):
    from napari_klip.api.measurements import MeasurementInfo, simulate_measurement

    viewer.open_sample("napari-klip", "ct_lesions")
    image = viewer.layers[CT]
    widget = dock(viewer, "Simulate measurement")
    widget.input.value, widget.slice_mode.value = image, "current slice"
    widget.operator.n_views.value = 12
    go_to_slice(viewer, image, 1)
    run_and_wait(qtbot, widget)
    assert viewer.layers[f"{CT} ct measurement"].data.shape[1] == 12

    widget.operator.n_views.value = 24  # used to fail: "slices differ in shape", the result lost
    go_to_slice(viewer, image, 3)
    since = len(notification_manager.records)
    run_and_wait(qtbot, widget)
    assert new_errors(since) == []
    sinogram = viewer.layers[f"{CT} ct measurement"]
    info = MeasurementInfo.from_metadata(sinogram.metadata)
    assert info.operator.n_views == 24 and sinogram.data.shape[:2] == (8, 24)
    for index in (1, 3):  # both slices with the layer's one set of settings (slice i: seed + i)
        expected = simulate_measurement(image.data[index], info.operator, info.grid, info.noise_sigma, info.seed + index)
        np.testing.assert_allclose(sinogram.data[index], expected, rtol=1e-5, atol=1e-4)
    assert not np.delete(sinogram.data, [1, 3], axis=0).any()
    assert "simulated again" in widget.status.value


# --- layout ------------------------------------------------------------------------------------


def test_four_docked_widgets_fit_a_screen_and_long_text_does_not_widen_them(viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer.open_sample("napari-klip", "ct_lesions")
    docks = {name: viewer.window.add_plugin_dock_widget("napari-klip", name) for name in WIDGETS}
    QApplication.processEvents()
    heights = {name: dock_widget.minimumSizeHint().height() for name, (dock_widget, _) in docks.items()}
    assert max(heights.values()) <= DOCK_MIN_HEIGHT, heights
    assert viewer.window._qt_window.minimumSizeHint().height() <= WINDOW_MIN_HEIGHT  # was 1777 px and more
    for name, (_, widget) in docks.items():  # because the settings scroll: the whole form is taller
        assert widget.form.native.minimumSizeHint().height() > widget.form_scroll.minimumSizeHint().height(), name

    dock_widget, widget = docks["KLIP detector"]
    before = dock_widget.sizeHint().width(), dock_widget.minimumSizeHint().width()
    viewer.add_image(np.zeros((28, 28)), name="a layer with a very long name " * 7)
    long_error = "cannot write '/" + "folder/" * 40 + "' " + "because of a long explanation " * 10
    assert len(long_error) > 500
    since = len(notification_manager.records)
    widget._report_error(ValueError(long_error))
    QApplication.processEvents()
    assert new_errors(since) and long_error in widget.status.value
    after = dock_widget.sizeHint().width(), dock_widget.minimumSizeHint().width()
    assert after[0] <= max(before[0], DOCK_WIDTH) and after[1] <= max(before[1], DOCK_WIDTH)


# --- how results are shown -----------------------------------------------------------------------


def test_heatmap_keeps_the_anatomy_visible(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)  # shown (under Xvfb), so that screenshots render
    viewer.open_sample("napari-klip", "ct_lesions")
    image = viewer.layers[CT]
    state = (image.data.copy(), image.opacity, image.blending, image.colormap.name, image.contrast_limits, image.visible)
    widget = fast_klip(dock(viewer, "KLIP detector"), image, "current slice")
    run_and_wait(qtbot, widget)
    heatmap = viewer.layers[f"{CT} KLIP heatmap"]
    assert heatmap.blending == "translucent" and 0.5 <= heatmap.opacity <= 1  # not additive: no brightening
    alpha = heatmap.colormap.colors[:, 3]
    assert alpha[0] == 0 and alpha[-1] == 1 and np.all(np.diff(alpha) >= 0)  # low values transparent
    assert heatmap.colormap.map(np.array([0.0]))[0, 3] == 0
    after = (image.data, image.opacity, image.blending, image.colormap.name, image.contrast_limits, image.visible)
    np.testing.assert_array_equal(after[0], state[0])
    assert after[1:] == state[1:]

    # rendered: where the heatmap sits at its lower contrast limit the anatomy shows unchanged,
    # where it is high the heatmap covers it
    viewer.layers[f"{CT} KLIP labels"].visible = False
    heatmap.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)
    heatmap.visible, heatmap.contrast_limits = True, (0.0, 1.0)
    heatmap.data = np.zeros_like(heatmap.data)
    low = viewer.screenshot(canvas_only=True, flash=False)
    heatmap.data = np.ones_like(heatmap.data)
    high = viewer.screenshot(canvas_only=True, flash=False)
    assert low.shape == without.shape and without[..., :3].std() > 0  # the anatomy is drawn
    assert np.abs(low.astype(int) - without.astype(int)).max() <= 1
    assert np.abs(high.astype(int) - without.astype(int)).max() > 100


def test_sinogram_leaves_the_image_axes_and_view_alone(viewer, qtbot):
    viewer.open_sample("napari-klip", "brain_mri")
    brain = viewer.layers["brain MRI"]
    viewer.scene.camera.center, viewer.scene.camera.zoom = (0.0, 80.0, 120.0), 4.0
    viewer.dims.set_point(0, brain.data_to_world((3, 0, 0))[0])
    labels, ndim, point = viewer.dims.axis_labels, viewer.dims.ndim, viewer.dims.point
    center, zoom, extent = viewer.scene.camera.center, viewer.scene.camera.zoom, brain.extent.world.copy()
    widget = dock(viewer, "Simulate measurement")
    widget.input.value, widget.slice_mode.value = brain, "current slice"
    run_and_wait(qtbot, widget)
    sinogram = viewer.layers["brain MRI ct measurement"]
    assert viewer.dims.axis_labels == labels and viewer.dims.ndim == ndim and viewer.dims.point[0] == point[0]
    assert viewer.scene.camera.center == pytest.approx(center) and viewer.scene.camera.zoom == pytest.approx(zoom)
    np.testing.assert_allclose(brain.extent.world, extent)
    (top, left), (bottom, right) = edges(brain)
    (sinogram_top, sinogram_left), (sinogram_bottom, _) = edges(sinogram)
    assert sinogram_left > right  # beside the image, not over it, and as tall as it
    assert (sinogram_top, sinogram_bottom) == (pytest.approx(top), pytest.approx(bottom))


def test_lmd_adds_no_axis_to_the_viewer(viewer, qtbot):
    viewer.open_sample("napari-klip", "ct_lesions")
    image = viewer.layers[CT]
    labels, ndim = viewer.dims.axis_labels, viewer.dims.ndim
    widget = fast_lmd(dock(viewer, "LMD detector"), image)
    run_and_wait(qtbot, widget)
    reconstruction = viewer.layers[f"{CT} LMD reconstruction"]
    assert viewer.dims.ndim == ndim == 3 and viewer.dims.axis_labels == labels
    assert reconstruction.data.shape == image.data.shape and reconstruction.axis_labels == image.axis_labels
    assert tuple(reconstruction.scale) == tuple(image.scale)


def test_score_line_lists_the_slices_just_scored(viewer, qtbot):
    viewer.open_sample("napari-klip", "ct_lesions")
    ct = viewer.layers[CT].data
    stack = viewer.add_image(np.concatenate([ct, ct, ct]), name="24 slices")
    widget = fast_klip(dock(viewer, "KLIP detector"), stack, "current slice")
    for index in (15, 20):  # past the 12 slices a stack's score line used to show
        go_to_slice(viewer, stack, index)
        run_and_wait(qtbot, widget)
    scores = {index: widget.results.results[index].score for index in (15, 20)}
    assert f"20: {scores[20]:.3g}*" in widget.score.value  # the slice just scored, marked
    assert f"15: {scores[15]:.3g}" in widget.score.value and "(2 of 24 scored)" in widget.score.value


# --- LPIPS weights, training, broken priors ------------------------------------------------------


def test_lmd_says_so_when_the_lpips_weights_are_missing(viewer, qtbot, monkeypatch, tmp_path):
    from napari_klip.core.lmd import lpips_distance

    missing = tmp_path / "alexnet_features_imagenet_fp16.npz"
    monkeypatch.setattr(lpips_distance, "PACKAGED_ALEXNET_WEIGHTS", missing)  # a broken install
    monkeypatch.delenv(lpips_distance.ALEXNET_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    viewer.open_sample("napari-klip", "ct_lesions")
    before, since = names(viewer), len(notification_manager.records)
    widget = dock(viewer, "LMD detector")
    assert widget.distance.value == "lpips"  # not silently mse
    warnings = new_notifications(since, "warning")
    assert any(str(missing) in message and "reinstall napari-klip" in message for message in warnings)
    assert widget.status.value.startswith("Warning") and str(missing) in widget.status.value

    widget.input.value = widget.viewer.layers[CT]
    since = len(notification_manager.records)
    widget.run()
    assert not widget.is_running  # refused before any work
    assert any(str(missing) in message for message in new_errors(since)) and names(viewer) == before


def test_cancelled_overwrite_training_keeps_the_finished_prior(viewer, qtbot, tmp_path):
    viewer.open_sample("napari-klip", "ct_lesions")
    train = dock(viewer, "Train prior")
    train.layers.value = [viewer.layers[CT]]
    train.output.value = tmp_path / "prior"
    train.image_size.value, train.steps.value, train.batch_size.value = 16, 3, 4
    run_and_wait(qtbot, train)
    finished = folder_snapshot(tmp_path / "prior")
    assert "napari_klip_prior.json" in finished

    train.overwrite.value, train.steps.value = True, 100_000
    train.run()
    qtbot.waitUntil(lambda: train.steps_done >= 2, timeout=RUN_TIMEOUT_MS)
    train.run_button.changed.emit(True)  # Cancel
    qtbot.waitUntil(lambda: not train.is_running, timeout=60_000)
    assert folder_snapshot(tmp_path / "prior") == finished  # byte for byte
    assert (tmp_path / "prior.new" / "checkpoint.pt").is_file()  # the core's staged overwrite, as in the CLI
    assert train.status.value.startswith("Cancelled") and "is unchanged" in train.status.value


def test_klip_refuses_a_prior_with_nan_weights(viewer, qtbot, tmp_path):
    from safetensors.torch import load_file, save_file

    from napari_klip.core.prior import default_prior_path

    folder = shutil.copytree(default_prior_path(), tmp_path / "nan-prior")
    weights_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    first = sorted(weights)[0]
    weights[first] = weights[first] * float("nan")  # what a training whose loss became NaN leaves
    save_file(weights, weights_file)

    viewer.open_sample("napari-klip", "ct_lesions")
    before = names(viewer)
    klip = fast_klip(dock(viewer, "KLIP detector"), viewer.layers[CT], "current slice")
    klip.prior.source.value, klip.prior.folder.value = "folder", folder
    since = len(notification_manager.records)
    run_and_wait(qtbot, klip)
    assert any("NaN or infinite" in message and "nan-prior" in message for message in new_errors(since))
    assert names(viewer) == before and klip.status.value.startswith("Error")
