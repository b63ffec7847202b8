"""Dock widget: simulate a measurement (CT sinogram, blurred, masked, downsampled, noisy image)."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from typing import Any

from magicgui.widgets import FloatSpinBox, SpinBox

from ...api.layers import measurement_layer_data
from ...api.measurements import MeasurementInfo, simulate_measurement
from ...core.prior import default_prior_path
from ..stacks import ResultStack
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

    Each operator has its own layer, and a layer's metadata holds one set of settings, so all
    its slices must be simulated with the same settings: a run with other settings (views, grid,
    noise, seed, …) than the slices simulated before for that operator simulates those slices
    again with the new settings (cheap: no diffusion), and the status line says so.
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(napari_viewer, "Simulate measurement")
        self.operator = OperatorControls()
        grid = _bundled_grid()
        self.grid = SpinBox(label="grid size", value=grid, min=4, max=1024, tooltip=f"the prior's image size ({grid} for the bundled prior)")
        self.noise_sigma = FloatSpinBox(label="noise sigma", value=1.0, min=0.0, max=1e6, step=0.5, tooltip="in measurement units")
        self.form.extend([self.operator, self.grid, self.noise_sigma])
        self.add_footer()
        self._stacks: dict[str, ResultStack] = {}

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
        earlier = self._stacks.get(settings.name)
        redo: tuple[tuple[int, ...], ...] = ()
        if earlier is not None and earlier.key is not None and earlier.key[:-1] == source.key and earlier.key != _key(source, info):
            chosen = set(source.selection.indices)
            redo = tuple(index for index in map(earlier.stack_index, earlier.computed_indices()) if index not in chosen)
            source = self.read_input(also=redo)
        return Job(
            work=partial(self._simulate, source, info),
            finish=partial(self._show, source, info, len(redo)),
            total=len(source.selection),
            description=f"{settings.describe()} of '{source.name}'",
        )

    @staticmethod
    def _simulate(source: LayerInput, info: MeasurementInfo, report: Any, should_cancel: Any) -> list[Any]:
        def one(image: Any, position: int, _progress: Any) -> Any:
            seed = source.selection.seed_for(info.seed, source.selection.indices[position])
            return simulate_measurement(image, info.operator, info.grid, info.noise_sigma, seed)

        return run_per_slice(source.slices, one, 1, report, should_cancel)

    def _show(self, source: LayerInput, info: MeasurementInfo, redone: int, measurements: list[Any]) -> None:
        self.results = self._stacks.setdefault(info.operator.name, ResultStack())
        self.store_and_show(replace(source, key=_key(source, info)), measurements, partial(measurement_layer_data, info=info))
        shape = "×".join(str(n) for n in measurements[0].shape)
        again = f" The {redone} slice(s) simulated before with other settings were simulated again with these (one layer, one set of settings)." if redone else ""
        self.status.value = f"Simulated {len(measurements)} measurement(s) of {shape}: {info.operator.describe()}, noise σ {info.noise_sigma:g}.{again}"


def _key(source: LayerInput, info: MeasurementInfo) -> tuple:
    """The input and every setting of the simulation (a stored stack with another key is simulated again)."""
    settings = {key: value for key, value in info.to_metadata()["measurement"].items() if key != "source"}
    return (*source.key, json.dumps(settings, sort_keys=True))

