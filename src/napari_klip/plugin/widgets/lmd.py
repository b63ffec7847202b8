"""Dock widget: the LMD detector (lift, map, detect) on an image layer."""

from __future__ import annotations

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


def lpips_weights_found(path: Any = None) -> bool:
    """Whether ImageNet AlexNet weights for LPIPS are at ``path`` or where napari-klip looks for them."""
    try:
        find_alexnet_weights(path)
    except LpipsWeightsError:
        return False
    return True


class LmdWidget(DetectorWidget):
    """LMD: the image score, a per-pixel distance heatmap and the inpainted reconstructions.

    LPIPS (the paper's distance) needs ImageNet AlexNet weights, which napari-klip never
    downloads; when none are found the distance starts as ``mse``, and choosing ``lpips``
    without weights reports where to put them.
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "LMD detector")
        defaults = LmdConfig()
        self.reconstructions = SpinBox(label="reconstructions", value=defaults.num_reconstructions, min=1, max=100)
        self.steps = SpinBox(label="steps", value=defaults.num_steps, min=1, max=1000, tooltip="reverse diffusion steps")
        self.mask = ComboBox(label="mask", choices=list(MASK_KINDS), value=defaults.mask)
        self.mask_grid = SpinBox(label="mask grid", value=defaults.mask_grid, min=1, max=64, tooltip="patches per side")
        distance = defaults.distance if lpips_weights_found() else "mse"
        self.distance = ComboBox(label="distance", choices=list(DISTANCE_NAMES), value=distance)
        self.lpips_weights = FileEdit(label="LPIPS weights", mode="r", filter="*.pth *.npz", tooltip="AlexNet weights (optional: env var and torch cache are searched)")
        self.aggregate = ComboBox(label="aggregate", choices=list(AGGREGATES), value=defaults.aggregate)
        self.extend([self.reconstructions, self.steps, self.mask, self.mask_grid, self.distance, self.lpips_weights, self.aggregate])
        self.add_footer()
        self.distance.changed.connect(self._on_distance)
        self._on_distance(self.distance.value)

    def _on_distance(self, distance: str) -> None:
        self.lpips_weights.visible = distance == "lpips"

    def _weights_path(self) -> Path | None:
        text = str(self.lpips_weights.value)
        return None if self.distance.value != "lpips" or text in ("", ".") else Path(text).expanduser()

    def prepare(self) -> Job:
        source = self.read_input()
        prior_choice = self.prior_choice()
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
            batch_size=BATCH_SIZE,
            intensity=self.resolve_intensity(prior, source.slices, intensity),
            progress=lambda update: report(update.step, update.total, ""),
            should_cancel=should_cancel,
        )

    def _show(self, source: LayerInput, results: list[Any]) -> None:
        self.store_and_show(source, results, lmd_layer_data)
        self.show_scores()
        self.notify_notes(results)
        distance = results[0].parameters.get("distance", "")
        self.status.value = f"Scored {len(results)} slice(s) of '{source.name}' ({distance} distance)."
