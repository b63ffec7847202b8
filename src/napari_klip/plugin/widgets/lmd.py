"""Dock widget: the LMD detector (lift, map, detect) on an image layer."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, SpinBox

from ...api.layers import lmd_layer_data
from ...api.lmd import score_stack
from ...core.errors import LpipsWeightsError
from ...core.lmd.distances import find_alexnet_weights
from ...core.options import AGGREGATES, DISTANCE_NAMES, MASK_KINDS, LmdConfig
from ._detector import DetectorWidget
from ._layer_task import LayerInput
from ._task import Job

#: Images per batched reverse process (× the reconstructions): bounds memory on long stacks.
BATCH_SIZE = 4


def lpips_weights_problem(path: Any = None) -> str | None:
    """Why LPIPS cannot run (no ImageNet AlexNet weights at ``path`` or where napari-klip looks), or ``None``."""
    try:
        find_alexnet_weights(path)
    except LpipsWeightsError as error:
        return str(error)
    return None


class LmdWidget(DetectorWidget):
    """LMD: the image score, a per-pixel distance heatmap and the inpainted reconstruction.

    LPIPS (the paper's distance, the default) needs ImageNet AlexNet weights; napari-klip ships
    them and never downloads any. When they are missing (a broken install) the widget still starts
    with ``lpips`` and says so at once — a warning notification and the status line name the
    missing file and how to fix it — and a run with ``lpips`` is refused with that message
    instead of silently measuring another distance.
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "LMD detector")
        defaults = LmdConfig()
        self.reconstructions = SpinBox(label="reconstructions", value=defaults.num_reconstructions, min=1, max=100)
        self.steps = SpinBox(label="steps", value=defaults.num_steps, min=1, max=1000, tooltip="reverse diffusion steps")
        self.mask = ComboBox(label="mask", choices=list(MASK_KINDS), value=defaults.mask)
        self.mask_grid = SpinBox(label="mask grid", value=defaults.mask_grid, min=1, max=64, tooltip="patches per side")
        self.distance = ComboBox(label="distance", choices=list(DISTANCE_NAMES), value=defaults.distance)
        self.lpips_weights = FileEdit(label="LPIPS weights", mode="r", filter="*.pth *.npz", tooltip="AlexNet weights (optional: env var and torch cache are searched)")
        self.aggregate = ComboBox(label="aggregate", choices=list(AGGREGATES), value=defaults.aggregate)
        self.form.extend([self.reconstructions, self.steps, self.mask, self.mask_grid, self.distance, self.lpips_weights, self.aggregate])
        self.add_footer()
        self.distance.changed.connect(self._on_distance)
        self._on_distance(self.distance.value)
        self._warn_without_lpips_weights()

    def _warn_without_lpips_weights(self) -> None:
        from napari.utils.notifications import show_warning

        problem = lpips_weights_problem() if self.distance.value == "lpips" else None
        if problem is not None:
            message = f"LPIPS, the default distance, cannot run: {problem}"
            self.status.value = f"Warning: {message}"
            show_warning(f"{self.title}: {message}")

    def _on_distance(self, distance: str) -> None:
        self.lpips_weights.visible = distance == "lpips"

    def _weights_path(self) -> Path | None:
        text = str(self.lpips_weights.value)
        return None if self.distance.value != "lpips" or text in ("", ".") else Path(text).expanduser()

    def prepare(self) -> Job:
        source = self.read_input()
        prior_choice = self.prior_choice()
        if self.distance.value == "lpips":
            find_alexnet_weights(self._weights_path())  # no weights: a clear error before any work
        config = LmdConfig(
            num_reconstructions=self.reconstructions.value,
            num_steps=self.steps.value,
            mask=self.mask.value,
            mask_grid=self.mask_grid.value,
            distance=self.distance.value,
            aggregate=self.aggregate.value,
            seed=self.seed.value,
        )
        batches = -(-len(source.selection) // BATCH_SIZE)
        intensity = self.intensity.choice()
        return Job(
            work=partial(self._score, prior_choice, source, config, self._weights_path(), intensity),
            finish=partial(self._show, source),
            total=config.num_steps * batches,
            description=f"scoring '{source.name}'",
        )

    def _score(
        self, prior_choice: tuple[Any, str], source: LayerInput, config: Any, weights: Path | None, intensity: Any,
        report: Any, should_cancel: Any,
    ) -> list[Any]:
        """In the worker thread: all selected slices, in batches (each slice with the same seed), one intensity mapping."""
        prior = self.load_prior(prior_choice, source)
        return score_stack(
            np.stack(source.slices),
            prior,
            config=config,
            lpips_weights=weights,
            batch_images=BATCH_SIZE,
            intensity=self.resolve_intensity(prior, source.slices, intensity),
            progress=lambda update: report(update.step, update.total, ""),
            should_cancel=should_cancel,
        )

    def _show(self, source: LayerInput, results: list[Any]) -> None:
        self.store_and_show(source, results, lmd_layer_data)
        self.show_scores()
        self.notify_notes(results)
        distance = results[0].parameters.get("distance", "")
        self.status.value = f"Scored {len(results)} slice(s) of '{source.name}' ({distance} distance)." + self.settings_note()

    @staticmethod
    def slice_settings(result: Any) -> tuple:
        """LMD settings (not the seed), distance and prior of a slice."""
        settings = {key: value for key, value in result.parameters.get("settings", {}).items() if key != "seed"}
        return (json.dumps(settings, sort_keys=True, default=str), result.parameters.get("distance"), result.parameters.get("prior"),
                json.dumps(result.parameters.get("intensity"), sort_keys=True, default=str))
