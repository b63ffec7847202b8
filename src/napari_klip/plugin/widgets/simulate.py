"""Dock widget: simulate a measurement (CT sinogram, blurred, masked, downsampled, noisy image)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

from magicgui.widgets import FloatSpinBox, SpinBox

from ...api.layers import measurement_layer_data
from ...api.measurements import MeasurementInfo, simulate_measurement
from ...core.prior import default_prior_path
from ._controls import OperatorControls
from ._layer_task import LayerInput, LayerTaskWidget
from ._task import Job, run_per_slice


def _bundled_grid() -> int:
    """Image side of the bundled prior (read from its metadata file; no torch needed)."""
    import json

    metadata = json.loads((default_prior_path() / "napari_klip_prior.json").read_text())
    return int(metadata["image_size"][0])


class SimulateMeasurementWidget(LayerTaskWidget):
    """Image layer → measurement layer, with the operator stored in the layer's metadata.

    The image is resized to the *grid* (the prior's image size: a measurement can only be scored
    by a prior of that size), the operator applied and Gaussian noise added (seed ``seed + i``
    for slice ``i``). The KLIP detector widget rebuilds the operator from the metadata.
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Simulate measurement")
        self.operator = OperatorControls()
        grid = _bundled_grid()
        self.grid = SpinBox(label="grid size", value=grid, min=4, max=1024, tooltip=f"the prior's image size ({grid} for the bundled prior)")
        self.noise_sigma = FloatSpinBox(label="noise sigma", value=1.0, min=0.0, max=1e6, step=0.5, tooltip="in measurement units")
        self.extend([self.operator, self.grid, self.noise_sigma])
        self.add_footer()

    def prepare(self) -> Job:
        source = self.read_input()
        if source.rgb:
            raise ValueError(f"'{source.name}' is an RGB layer; measurements are simulated from grey images")
        settings = self.operator.settings()
        grid = (self.grid.value, self.grid.value)
        settings.operator_params(grid)  # fails early on an unknown operator
        info = MeasurementInfo(
            operator=settings,
            grid=grid,
            noise_sigma=float(self.noise_sigma.value),
            seed=int(self.seed.value),
            image_shape=tuple(source.slices[0].shape),
            image_scale=source.geometry["scale"][-2:],
            image_translate=source.geometry["translate"][-2:],
            image_units=source.geometry["units"][-2:],
            image_axis_labels=source.geometry["axis_labels"][-2:],
            source=source.name,
        )
        return Job(
            work=partial(self._simulate, source, info),
            finish=partial(self._show, source, info),
            total=len(source.selection),
            description=f"{settings.describe()} of '{source.name}'",
        )

    @staticmethod
    def _simulate(source: LayerInput, info: MeasurementInfo, report: Any, should_cancel: Any) -> list[Any]:
        def one(image: Any, position: int, _progress: Any) -> Any:
            seed = source.selection.seed_for(info.seed, source.selection.indices[position])
            return simulate_measurement(image, info.operator, info.grid, info.noise_sigma, seed)

        return run_per_slice(source.slices, one, 1, report, should_cancel)

    def _show(self, source: LayerInput, info: MeasurementInfo, measurements: list[Any]) -> None:
        source = replace(source, key=(*source.key, info.operator.name))
        self.store_and_show(source, measurements, partial(measurement_layer_data, info=info))
        shape = "×".join(str(n) for n in measurements[0].shape)
        self.status.value = f"Simulated {len(measurements)} measurement(s) of {shape}: {info.operator.describe()}, noise σ {info.noise_sigma:g}."

