"""Dock widget: the KLIP detector on an image layer or a simulated-measurement layer."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from ...api.klip import score_image, score_measurement
from ...api.layers import klip_layer_data
from ...api.measurements import MeasurementInfo
from ...core.klip.scores import threshold_blocks
from ...core.options import DEFAULT_THRESHOLD, GUIDANCE_MODES, THRESHOLD_RULES, KlipConfig, OperatorSettings
from ...core.patches import working_grid
from ...core.prior_z import DEFAULT_Z_SMOOTHING, PriorZSettings
from ._controls import OperatorControls, info_label
from ._detector import DetectorWidget, describe_slices
from ._layer_task import LayerInput
from ._task import Job, run_per_slice


def block_sizes(image_size: tuple[int, int]) -> list[int]:
    """Block sides (in image pixels) that tile an image of ``image_size`` exactly."""
    height, width = image_size
    return [size for size in range(1, min(height, width) + 1) if height % size == 0 and width % size == 0]


class KlipWidget(DetectorWidget):
    """KLIP: heatmap, flagged blocks and reconstruction of an image or a measurement.

    For an image layer, a measurement is simulated with the chosen operator (as
    :func:`napari_klip.api.score_image` does); a layer made by the *Simulate measurement* widget
    is scored as it is, with the operator rebuilt from its metadata. After a run, the block size,
    the step window and the labels threshold recompute the maps from the stored trace without
    sampling again — for the slices computed with the last run's settings only; slices scored
    with other settings (steps, samples, operator, …) keep theirs (:meth:`slice_settings`).
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "KLIP detector")
        self.input_kind = info_label()
        self.operator = OperatorControls()
        self.noise_sigma = FloatSpinBox(label="noise sigma", value=0.0, min=0.0, max=1e6, step=0.5, tooltip="simulated measurement noise")
        self.samples = SpinBox(label="samples", value=KlipConfig.num_samples, min=1, max=256, tooltip="posterior samples per image")
        self.steps = SpinBox(label="steps", value=KlipConfig.num_steps, min=1, max=1000, tooltip="reverse diffusion steps")
        self.guidance = ComboBox(
            label="guidance", choices=list(GUIDANCE_MODES), value=KlipConfig.guidance,
            tooltip="jacobian-free: the paper's DDPM sampler; consistency: steps along the approximate inverse of the "
                    "residual (filtered back-projection for CT; not for blur); dps: backpropagates through the network",
        )
        self.prior_z = CheckBox(
            text="also the prior z-map", value=False,
            tooltip="a hidden '<input> prior z-map' layer: where the observed image is unlike what the prior restores "
                    "(7 noise levels x 16 draws per slice, after the sampling; docs/klip.md)",
        )
        self.prior_z_smoothing = FloatSpinBox(
            label="z-map smoothing (px)", value=DEFAULT_Z_SMOOTHING, min=0.0, max=50.0, step=0.5, enabled=False,
            tooltip="Gaussian smoothing of the prior z-map in pixels of the prior's grid (0 = none); "
                    f"{DEFAULT_Z_SMOOTHING:g} won on validation data, lesions preferred 1, star artefacts 3 (docs/benchmarks.md)",
        )
        self.prior_z.changed.connect(lambda ticked: setattr(self.prior_z_smoothing, "enabled", bool(ticked)))
        self.form.extend([self.input_kind, self.operator, self.noise_sigma, self.samples, self.steps, self.guidance, self.prior_z,
                          self.prior_z_smoothing])
        self.add_footer()
        self._block_sizes: list[int] = []
        # choices from a callable: napari calls reset_choices on every layer change
        self.block_size = ComboBox(label="block size (px)", choices=lambda _widget: self._block_sizes, enabled=False,
                                   tooltip="block side in image pixels; recomputed from the stored trace")
        self.window_start = SpinBox(label="window start", value=0, min=0, max=1000, enabled=False)
        self.window_stop = SpinBox(label="window stop", value=1, min=1, max=1000, enabled=False)
        self.threshold = LineEdit(
            label="labels threshold", value=DEFAULT_THRESHOLD,
            tooltip="which blocks the labels layer flags: " + ", ".join(f"{rule}:NUMBER" for rule in THRESHOLD_RULES)
                    + " (e.g. percentile:95, value:0.5); applied to the stored trace at once and to the next run",
        )
        self.form.extend([self.block_size, self.window_start, self.window_stop, self.threshold])
        self._setting_controls = False
        for control in (self.block_size, self.window_start, self.window_stop):
            control.changed.connect(self._on_rescore_control)
        # while typing, a half-written rule only shows in the status line; when editing ends, it is a notification
        self.threshold.changed.connect(self._on_threshold_typed)
        self.threshold.native.editingFinished.connect(self._on_rescore_control)
        self.input.changed.connect(self._on_input)
        self._on_input(self.input.value)

    # --- input ------------------------------------------------------------------------------
    def _on_input(self, layer: Any) -> None:
        try:
            info = MeasurementInfo.from_metadata(layer.metadata) if layer is not None else None
        except ValueError as error:
            self.input_kind.value = str(error)
            return
        self.operator.enabled = self.noise_sigma.enabled = info is None
        if info is None:
            self.input_kind.value = "Image: a measurement is simulated with this operator."
        else:
            grid = "×".join(map(str, info.grid))
            self.input_kind.value = f"Measurement of '{info.source}': {info.operator.describe()} on a {grid} grid, noise σ {info.noise_sigma:g}."

    # --- running ----------------------------------------------------------------------------
    def prepare(self) -> Job:
        source = self.read_input()
        prior_choice = self.prior_choice()
        info = MeasurementInfo.from_metadata(source.metadata)
        if info is not None and tuple(source.slices[0].shape) != info.measurement_shape():
            raise ValueError(
                f"'{source.name}' holds measurements shaped {tuple(source.slices[0].shape)}, but its operator "
                f"({info.operator.describe()}) makes {info.measurement_shape()}"
            )
        threshold = self.threshold_rule()
        config = KlipConfig(num_samples=self.samples.value, num_steps=self.steps.value, guidance=self.guidance.value, seed=self.seed.value)
        settings = self.operator.settings()
        geometry = info.image_geometry(source.geometry) if info is not None else source.geometry
        intensity = self.intensity.choice()
        return Job(
            work=partial(self._score, prior_choice, source, info, settings, float(self.noise_sigma.value), config, threshold, intensity,
                         PriorZSettings(smoothing=float(self.prior_z_smoothing.value)) if self.prior_z.value else False),
            finish=partial(self._show, source, geometry),
            total=config.num_steps * len(source.selection),
            description=f"scoring '{source.name}'",
        )

    def _score(
        self,
        prior_choice: tuple[Any, str],
        source: LayerInput,
        info: MeasurementInfo | None,
        settings: OperatorSettings,
        noise_sigma: float,
        config: Any,
        threshold: str,
        intensity: Any,
        prior_z: bool | PriorZSettings,
        report: Any,
        should_cancel: Any,
    ) -> list[Any]:
        """In the worker thread: score the selected slices one by one (images: one intensity mapping for all)."""
        prior = self.load_prior(prior_choice, source)
        grid = working_grid(prior, tuple(info.grid)) if info is not None else None  # a patch prior runs on any grid
        if info is not None and tuple(info.grid) != grid:
            raise ValueError(
                f"'{source.name}' was simulated on a {info.grid} grid but the prior's images are {tuple(prior.image_size)}; "
                "simulate it again with the prior's size as grid"
            )
        operator = info.operator.build(grid) if info is not None else None
        mapping = self.resolve_intensity(prior, source.slices, intensity) if operator is None else None

        def one(image: Any, position: int, progress: Any) -> Any:
            seed = source.selection.seed_for(config.seed, source.selection.indices[position])
            # in steps; a patch prior reports patches of steps × tiles, scaled back to steps here
            report_steps = lambda update: progress(update.step * config.num_steps // max(update.total, 1))  # noqa: E731
            common = {"config": replace(config, seed=seed), "threshold": threshold, "progress": report_steps, "should_cancel": should_cancel,
                      "prior_z": prior_z}
            if operator is not None:
                return score_measurement(image, operator, prior, output_shape=info.image_shape, **common)
            params = settings.operator_params(working_grid(prior, image.shape[:2]))
            return score_image(image, prior, operator=settings.name, operator_params=params, noise_sigma=noise_sigma,
                               intensity=mapping, **common)

        return run_per_slice(source.slices, one, config.num_steps, report, should_cancel)

    def _show(self, source: LayerInput, geometry: dict[str, tuple], results: list[Any]) -> None:
        self.store_and_show(source, results, klip_layer_data, geometry)
        self._set_rescore_controls(results[0])
        self.show_scores()
        self.notify_notes(results)
        self.status.value = f"Scored {len(results)} slice(s) of '{source.name}'." + self.settings_note()

    @staticmethod
    def slice_settings(result: Any) -> tuple:
        """Operator, sampler settings (not the seed), prior, block size, window and threshold of a slice."""
        sampler = {key: value for key, value in result.parameters.get("sampler", {}).items() if key != "seed"}
        return (
            result.parameters.get("operator"),
            json.dumps(sampler, sort_keys=True, default=str),
            result.parameters.get("prior"),
            result.block_size,
            tuple(result.window),
            result.threshold,
            json.dumps(result.parameters.get("intensity"), sort_keys=True, default=str),
        )

    # --- rescoring without sampling ---------------------------------------------------------
    def _set_rescore_controls(self, result: Any) -> None:
        steps_run = int(result.trace.energy.shape[0])
        self._setting_controls = True
        try:
            self._block_sizes = block_sizes(tuple(result.heatmap.shape[:2]))
            self.block_size.reset_choices()
            self.block_size.value = result.block_size
            self.window_start.max = steps_run - 1
            self.window_stop.max = steps_run
            self.window_start.value, self.window_stop.value = result.window
            self.threshold.value = result.threshold
            for control in (self.block_size, self.window_start, self.window_stop):
                control.enabled = True
        finally:
            self._setting_controls = False

    def _on_rescore_control(self, *_: Any) -> None:
        if not self._setting_controls and not self.is_running:
            self.rescore()

    def _on_threshold_typed(self, *_: Any) -> None:
        if not self._setting_controls and not self.is_running:
            self.rescore(notify=False)

    def threshold_rule(self) -> str:
        """The labels threshold rule in the widget; raises ``ValueError`` for a bad rule."""
        rule = str(self.threshold.value).strip()
        threshold_blocks(np.zeros(1), rule)
        return rule

    def rescore(self, notify: bool = True) -> None:
        """Recompute heatmaps, labels and scores for the chosen block size, window and threshold (no sampling).

        Only the slices computed with the last run's settings are rescored (the controls show
        those); slices scored with other settings keep their maps and scores. A bad setting
        changes nothing: it becomes a notification (only the status line with ``notify=False``,
        as while a threshold is being typed).
        """
        group = self.same_settings_as_latest()
        if not group:
            return
        window = (self.window_start.value, self.window_stop.value)
        if window[0] >= window[1]:
            self.status.value = f"The window start ({window[0]}) must be below its stop ({window[1]})."
            return
        try:
            threshold = self.threshold_rule()
            rescore = partial(_rescored, block_size=self.block_size.value, window=window, threshold=threshold)
            self.results.map(rescore, only=group)
        except ValueError as error:
            if notify:
                self._report_error(error)
            else:
                self.status.value = f"Error: {error}"
            return
        self.refresh_layers()
        self.show_scores()
        self.status.value = (
            f"Rescored {describe_slices(group)} with block size {self.block_size.value} px, window {window[0]}–{window[1]}, "
            f"threshold {threshold}." + self.settings_note()
        )


def _rescored(result: Any, block_size: int, window: tuple[int, int], threshold: str) -> Any:
    return result.rescore(block_size=block_size, window=window, threshold=threshold)
