"""The napari plugin, headless: manifest, widgets from the Plugins menu, sample data, runs, cancel, errors.

Runs under Xvfb (pytest-xvfb starts it when there is no display) with napari's
``make_napari_viewer`` fixture and pytest-qt's ``qtbot``. Runs use the bundled prior with one
posterior sample and a few steps.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from plugin_helpers import (  # noqa: F401 (the viewer fixture)
    PLUGIN,
    RUN_TIMEOUT_MS,
    WIDGETS,
    dock,
    fast_klip,
    names,
    napari,
    new_errors,
    notification_manager,
    run_and_wait,
    viewer,
)


def test_manifest_is_valid_and_its_python_names_import():
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", PLUGIN, "--imports"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_every_widget_opens_from_the_plugins_menu(viewer):
    for name in WIDGETS:
        widget = dock(viewer, name)
        assert widget.title == name and widget.run_button.text in ("Run", "Train") and not widget.is_running
    assert len(viewer.window.dock_widgets) == len(WIDGETS)


def test_sample_data_opens_as_image_and_labels(viewer):
    viewer.open_sample(PLUGIN, "ct_lesions")
    viewer.open_sample(PLUGIN, "brain_mri")
    layers = {layer.name: layer for layer in viewer.layers}
    assert layers["CT slices with lesions"].data.shape == (8, 28, 28)
    assert isinstance(layers["lesion masks"], napari.layers.Labels)
    assert tuple(layers["brain MRI"].scale) == pytest.approx((6.5, 0.78125, 0.78125))
    assert [str(u) for u in layers["tumour mask"].units] == ["millimeter"] * 3


def test_klip_current_slice_then_all_slices_then_rescore(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    image = viewer.layers["CT slices with lesions"]
    image.scale, image.translate = (2.0, 0.5, 0.5), (0.0, 3.0, 4.0)
    original = image.data.copy()
    viewer.dims.set_point(0, 2 * 5.0)  # slice 5
    widget = fast_klip(dock(viewer, "KLIP detector"), image, "current slice")

    run_and_wait(qtbot, widget)
    outputs = [f"CT slices with lesions KLIP {what}" for what in ("reconstruction", "heatmap", "labels")]
    assert names(viewer) == ["CT slices with lesions", "lesion masks", *outputs]
    heatmap = viewer.layers[outputs[1]]
    assert heatmap.data.shape == (8, 28, 28) and tuple(heatmap.scale) == (2.0, 0.5, 0.5) and tuple(heatmap.translate) == (0.0, 3.0, 4.0)
    assert heatmap.colormap.name == "inferno (low transparent)" and heatmap.blending == "translucent"
    assert heatmap.data[5].max() > 0 and not np.delete(heatmap.data, 5, axis=0).any()
    assert isinstance(viewer.layers[outputs[2]], napari.layers.Labels)
    assert "score" in widget.score.value

    widget.slice_mode.value = "all slices"
    run_and_wait(qtbot, widget)
    assert names(viewer) == ["CT slices with lesions", "lesion masks", *outputs]  # updated, not added
    assert viewer.layers[outputs[1]] is heatmap and all(heatmap.data[i].max() > 0 for i in range(8))
    assert widget.score.value.startswith("scores per slice") and "–" not in widget.score.value
    np.testing.assert_array_equal(image.data, original)

    before, steps = heatmap.data.copy(), widget.steps_done
    widget.block_size.value = 14
    assert not widget.is_running and widget.steps_done == steps  # no sampling
    assert not np.array_equal(heatmap.data, before)
    assert all(result.score_map.shape == (2, 2) for result in widget.results.computed())  # blocks of 14 image pixels of 28²
    widget.window_start.value, widget.window_stop.value = 0, 4
    assert "window 0–4" in widget.status.value
    viewer.add_image(np.zeros((4, 4)), name="another layer")  # napari resets the widget's choices
    assert widget.block_size.value == 14 and widget.block_size.choices == (1, 2, 4, 7, 14, 28)  # image pixels


def test_sample_data_microscopy_opens_at_full_resolution(viewer):
    viewer.open_sample(PLUGIN, "cell_artifacts")
    image, masks = viewer.layers["cell with artefacts"], viewer.layers["artefact masks"]
    assert image.data.shape == masks.data.shape == (660, 550) and image.data.dtype == np.uint8
    assert isinstance(masks, napari.layers.Labels) and set(np.unique(masks.data)) == {0, 1, 2, 3}
    assert tuple(image.scale) == pytest.approx((0.107, 0.107))


def test_klip_on_the_brain_sample_says_it_mapped_and_resized(viewer, qtbot):
    from napari.utils.notifications import notification_manager as manager

    viewer.open_sample(PLUGIN, "brain_mri")
    brain = viewer.layers["brain MRI"]
    assert brain.data.dtype == np.int16 and brain.data.max() > 2000  # the scanner's own range
    widget = fast_klip(dock(viewer, "KLIP detector"), brain, "current slice")
    widget.steps.value = 2
    since = len(manager.records)
    run_and_wait(qtbot, widget)
    messages = [str(n.message) for n in manager.records[since:]]
    assert any("intensities mapped (auto)" in m for m in messages), messages
    assert any("input 256×256 resized to the prior's 32×32" in m for m in messages), messages
    assert widget.block_size.value == 16 and 256 in widget.block_size.choices and 32 in widget.block_size.choices
    result = widget.results.computed()[0]
    assert result.score_map.shape == (16, 16) and result.parameters["intensity"]["mapped"]
    assert result.reconstruction.max() > 255  # back in the MRI's units


def test_a_bad_intensity_range_is_a_notification_and_nothing_runs(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = dock(viewer, "LMD detector")
    widget.input.value = viewer.layers["CT slices with lesions"]
    assert widget.intensity.low.native.isHidden() and widget.intensity.high.native.isHidden()
    widget.intensity.mode.value = "range"
    assert not widget.intensity.low.native.isHidden() and not widget.intensity.high.native.isHidden()
    widget.intensity.low.value, widget.intensity.high.value = 10.0, 10.0
    since, layers = len(notification_manager.records), names(viewer)
    widget.run()
    assert not widget.is_running and names(viewer) == layers
    assert any("LOW < HIGH" in m for m in new_errors(since))


def test_simulated_ct_measurement_is_scored_with_its_own_operator(viewer, qtbot):
    viewer.open_sample(PLUGIN, "brain_mri")
    brain = viewer.layers["brain MRI"]
    simulate = dock(viewer, "Simulate measurement")
    simulate.input.value = brain
    simulate.operator.n_views.value = 12
    run_and_wait(qtbot, simulate)
    sinogram = viewer.layers["brain MRI ct measurement"]
    assert sinogram.data.shape == (5, 12, 46)
    assert sinogram.axis_labels == brain.axis_labels and sinogram.scale[1] == pytest.approx(brain.data.shape[1] * brain.scale[1] / 12)
    run_and_wait(qtbot, simulate)  # a re-run updates the measurement
    assert names(viewer).count("brain MRI ct measurement") == 1

    klip = fast_klip(dock(viewer, "KLIP detector"), sinogram, "current slice")
    assert "Measurement of 'brain MRI'" in klip.input_kind.value and not klip.operator.enabled
    run_and_wait(qtbot, klip)
    heatmap = viewer.layers["brain MRI ct measurement KLIP heatmap"]
    assert heatmap.data.shape == brain.data.shape  # image space, not measurement space
    assert tuple(heatmap.scale) == pytest.approx(tuple(brain.scale)) and [str(u) for u in heatmap.units] == ["millimeter"] * 3
    jacobian_free = heatmap.data.copy()
    klip.guidance.value = "consistency"  # filtered back-projection of the residual: another map, same layer
    run_and_wait(qtbot, klip)
    assert names(viewer).count("brain MRI ct measurement KLIP heatmap") == 1
    assert not np.array_equal(viewer.layers["brain MRI ct measurement KLIP heatmap"].data, jacobian_free)


def test_lmd_gives_a_heatmap_and_reconstructions(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = dock(viewer, "LMD detector")
    widget.input.value = viewer.layers["CT slices with lesions"]
    widget.reconstructions.value, widget.steps.value, widget.distance.value = 2, 3, "mse"
    run_and_wait(qtbot, widget)
    heatmap = viewer.layers["CT slices with lesions LMD heatmap"]
    reconstruction = viewer.layers["CT slices with lesions LMD reconstruction"]
    assert heatmap.data.shape == (8, 28, 28) and reconstruction.data.shape == (8, 28, 28)
    assert widget.score.value.startswith("scores per slice")
    assert "mse" in widget.status.value


def train_then_klip(viewer, qtbot, folder, **fields):
    """Train a prior on the CT sample with the Train widget (``fields`` set on it), then run KLIP with it."""
    viewer.open_sample(PLUGIN, "ct_lesions")
    train = dock(viewer, "Train prior")
    train.layers.value = [viewer.layers["CT slices with lesions"]]
    train.output.value = folder
    for name, value in fields.items():
        getattr(train, name).value = value
    run_and_wait(qtbot, train)
    assert (folder / "napari_klip_prior.json").is_file() and "Prior saved" in train.status.value
    klip = fast_klip(dock(viewer, "KLIP detector"), viewer.layers["CT slices with lesions"], "current slice")
    klip.prior.source.value = "folder"
    klip.prior.folder.value = folder
    run_and_wait(qtbot, klip)
    assert viewer.layers["CT slices with lesions KLIP heatmap"].data.shape == (8, 28, 28)
    return klip


def test_train_a_prior_and_detect_with_it(viewer, qtbot, tmp_path):
    """Also with EDM's noise levels: recorded with the prior."""
    klip = train_then_klip(viewer, qtbot, tmp_path / "prior", image_size=16, steps=3, batch_size=4, timestep_sampling="edm")
    assert json.loads((tmp_path / "prior" / "napari_klip_prior.json").read_text())["training"]["timestep_sampling"] == "edm"
    # image pixels of the 28² slices; default: the 16² prior's 1-px block scaled to 28² (1.75), nearest divisor
    assert klip.block_size.choices == (1, 2, 4, 7, 14, 28) and klip.block_size.value == 2


def test_train_a_patch_prior_and_score_at_native_size(viewer, qtbot, tmp_path):
    """Also a v-predicting prior trained with Min-SNR weighting: KLIP runs it like any other."""
    klip = train_then_klip(viewer, qtbot, tmp_path / "patch", patch_size=16, steps=2, batch_size=4,
                           prediction_type="v_prediction", loss_weighting="min-snr", min_snr_gamma=2.5, ema_decay=0.995, precision="fp32")
    metadata = json.loads((tmp_path / "patch" / "napari_klip_prior.json").read_text())
    config = json.loads((tmp_path / "patch" / "training_log.json").read_text())["config"]
    assert (config["min_snr_gamma"], config["ema_decay"], config["precision"]) == (2.5, 0.995, "fp32")
    assert metadata["training"]["loss_weighting"] == "min-snr (gamma 2.5)" and metadata["training"]["precision"] == "fp32"
    assert metadata["patch_size"] == 16 and metadata["image_size"] == [16, 16]
    assert metadata["training"]["prediction_type"] == "v_prediction" and metadata["training"]["loss_weighting"].startswith("min-snr")
    assert json.loads((tmp_path / "patch" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert klip.block_size.choices == (1, 2, 4, 7, 14, 28)  # blocks of the slices' own 28² grid, not the 16² patch


def test_train_widget_offers_min_snr_gamma_only_with_min_snr_weighting_and_keeps_four_decimals_of_ema(viewer):
    train = dock(viewer, "Train prior")
    assert not train.min_snr_gamma.enabled and train.ema_decay.value == pytest.approx(0.999)
    train.loss_weighting.value = "min-snr"
    assert train.min_snr_gamma.enabled
    train.loss_weighting.value = "uniform"
    assert not train.min_snr_gamma.enabled
    train.ema_decay.value = 0.9995
    assert train.ema_decay.value == pytest.approx(0.9995)
    assert list(train.precision.choices) == ["auto", "fp32", "bf16"]


def start_long_klip_run(viewer):
    """Dock the KLIP widget on the CT sample and start a 1000-step run; returns it and the layer names before."""
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = fast_klip(dock(viewer, "KLIP detector"), viewer.layers["CT slices with lesions"])
    widget.steps.value = 1000
    before = names(viewer)
    widget.run()
    return widget, before


def test_cancel_stops_early_and_adds_nothing(viewer, qtbot):
    widget, before = start_long_klip_run(viewer)
    qtbot.waitUntil(lambda: widget.steps_done >= 2, timeout=RUN_TIMEOUT_MS)
    assert widget.run_button.text == "Cancel"
    widget.run_button.changed.emit(True)  # the user clicks Cancel
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    assert names(viewer) == before
    assert widget.steps_done < 8 * 1000 and widget.status.value.startswith("Cancelled")
    assert widget.run_button.text == "Run" and widget.run_button.enabled


def test_klip_labels_threshold_rescores_from_the_trace(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = fast_klip(dock(viewer, "KLIP detector"), viewer.layers["CT slices with lesions"])
    run_and_wait(qtbot, widget)
    labels = viewer.layers["CT slices with lesions KLIP labels"]
    assert widget.threshold.value == "median-multiple:3" and all(r.threshold == "median-multiple:3" for r in widget.results.computed())
    first, before, steps = list(widget.results.results), labels.data.copy(), widget.steps_done

    widget.threshold.value = "percentile:50"  # rescored as typed, no sampling
    assert not widget.is_running and widget.steps_done == steps
    assert viewer.layers["CT slices with lesions KLIP labels"] is labels
    expected = np.stack([r.rescore(threshold="percentile:50").labels for r in first])
    np.testing.assert_array_equal(labels.data, expected)
    assert not np.array_equal(labels.data, before)
    assert 0.25 < labels.data.astype(bool).mean() < 0.75  # about half of the blocks flagged
    assert all(r.threshold == "percentile:50" for r in widget.results.computed()) and "threshold percentile:50" in widget.status.value

    since, rescored = len(notification_manager.records), labels.data.copy()
    widget.threshold.value = "percentile:150"
    widget.threshold.native.editingFinished.emit()  # the user pressed Enter on a bad rule
    assert any("percentile must be in [0, 100]" in message for message in new_errors(since))
    np.testing.assert_array_equal(labels.data, rescored)
    assert all(r.threshold == "percentile:50" for r in widget.results.computed())

    widget.threshold.value = "percentile:50"
    widget.slice_mode.value = "current slice"
    run_and_wait(qtbot, widget)  # the next run uses the widget's threshold
    assert all(r.threshold == "percentile:50" for r in widget.results.computed())


def test_klip_with_the_prior_z_map_adds_it_as_a_hidden_layer(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = fast_klip(dock(viewer, "KLIP detector"), viewer.layers["CT slices with lesions"], "current slice")
    assert widget.prior_z.value is False
    widget.prior_z.value = True
    run_and_wait(qtbot, widget)
    layer = viewer.layers["CT slices with lesions prior z-map"]
    assert layer.data.shape == (8, 28, 28) and not layer.visible
    current = viewer.dims.current_step[0]
    assert layer.data[current].max() > 0 and not np.delete(layer.data, current, axis=0).any()
    np.testing.assert_array_equal(layer.data[current], widget.results.computed()[0].prior_z)
    assert widget.results.computed()[0].parameters["prior_z"]["smoothing_px"] == 2.0
    # the smoothing box follows the check box and reaches the next run
    assert widget.prior_z_smoothing.enabled
    widget.prior_z.value = False
    assert not widget.prior_z_smoothing.enabled
    widget.prior_z.value = True
    widget.prior_z_smoothing.value = 0.0
    run_and_wait(qtbot, widget)
    assert widget.results.computed()[0].parameters["prior_z"]["smoothing_px"] == 0.0


def test_closing_the_dock_mid_run_cancels_and_adds_nothing(viewer, qtbot):
    widget, before = start_long_klip_run(viewer)
    worker = widget._worker
    qtbot.waitUntil(lambda: widget.steps_done >= 1, timeout=RUN_TIMEOUT_MS)
    viewer.window.remove_dock_widget(widget.native)  # what the dock's close button does
    qtbot.waitUntil(lambda: not worker.is_running and not widget.is_running, timeout=60_000)
    qtbot.wait(100)  # let any queued result arrive
    assert names(viewer) == before
    assert widget.steps_done < 8 * 1000 and not viewer.window.dock_widgets


@pytest.mark.parametrize("detector", ["KLIP detector", "LMD detector"])
def test_rgb_layer_to_a_grey_prior_is_a_notification(viewer, qtbot, detector):
    rgb = viewer.add_image(np.random.default_rng(0).uniform(0, 255, (28, 28, 3)).astype(np.float32), name="colour", rgb=True)
    original = rgb.data.copy()
    widget = dock(viewer, detector)
    widget.input.value = rgb
    since = len(notification_manager.records)
    run_and_wait(qtbot, widget)
    assert any("RGB" in message for message in new_errors(since))
    assert names(viewer) == ["colour"] and np.array_equal(rgb.data, original)
    assert widget.run_button.text == "Run" and widget.status.value.startswith("Error")


def test_measurement_of_the_wrong_shape_is_a_notification(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    simulate = dock(viewer, "Simulate measurement")
    simulate.input.value = viewer.layers["CT slices with lesions"]
    simulate.slice_mode.value = "current slice"
    run_and_wait(qtbot, simulate)
    sinogram = viewer.layers["CT slices with lesions ct measurement"]
    cropped = viewer.add_image(sinogram.data[:, :, :-3], name="cropped", metadata=dict(sinogram.metadata))
    before = names(viewer)
    klip = fast_klip(dock(viewer, "KLIP detector"), cropped)
    since = len(notification_manager.records)
    klip.run()
    assert not klip.is_running  # refused before any work started
    assert any("holds measurements shaped" in message for message in new_errors(since))
    assert names(viewer) == before


def test_closing_the_viewer_mid_run_stops_the_job_quietly(viewer, qtbot):
    viewer.open_sample(PLUGIN, "ct_lesions")
    widget = fast_klip(dock(viewer, "KLIP detector"), viewer.layers["CT slices with lesions"])
    widget.steps.value = 1000
    widget.run()
    qtbot.waitUntil(lambda: widget.steps_done >= 1, timeout=RUN_TIMEOUT_MS)
    viewer.close()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)  # stopped after a step, no error raised
    assert widget.steps_done < 8 * 1000


def test_demo_gui_opens_the_sample_with_the_klip_widget(viewer):
    from napari_klip.plugin.demo import open_demo_viewer

    widget = open_demo_viewer(viewer)
    assert names(viewer) == ["CT slices with lesions", "lesion masks"]
    assert viewer.layers["CT slices with lesions"].data.shape == (8, 28, 28)
    assert widget.input.value is viewer.layers["CT slices with lesions"]
    # as the command-line demo: the bundled liver prior, the prior z-map beside KLIP
    assert widget.prior.source.value == "folder" and widget.prior.folder.value.name == "organamnist-liver28-tiny-cpu"
    assert widget.prior_z.value is True
