"""Widgets that turn an image layer (2-D, or a stack of 2-D slices) into result layers.

:class:`LayerTaskWidget` adds, to :class:`~._task.TaskWidget`, the input-layer picker, the
"current slice / all slices" choice and the seed; it reads the chosen slices on the main thread,
keeps per-slice results across runs (so single-slice runs add up to a full stack) and shows them
with the input's geometry, updating the layers it made before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magicgui.widgets import ComboBox

from ...api.layers import add_layer_data
from ..stacks import SLICE_MODES, ResultStack, SliceSelection, clip_index, stack_shape_of
from ._controls import image_layer_box, seed_box
from ._task import TaskWidget


@dataclass(frozen=True)
class LayerInput:
    """What a run reads from its input layer on the main thread.

    Attributes
    ----------
    name : str
        The layer's name (outputs are named after it).
    selection : SliceSelection
    slices : list of numpy.ndarray
        Copies of the selected slices.
    rgb : bool
    geometry : dict
        ``scale``, ``translate``, ``units``, ``axis_labels`` of the layer.
    key : tuple
        Identifies the input for :class:`~napari_klip.plugin.stacks.ResultStack`.
    metadata : dict
        The layer's metadata (a copy).
    """

    name: str
    selection: SliceSelection
    slices: list[Any]
    rgb: bool
    geometry: dict[str, tuple]
    key: tuple
    metadata: dict[str, Any]


def layer_geometry(layer: Any) -> dict[str, tuple]:
    """Scale, translate, units and axis labels of a layer, as plain tuples."""
    return {
        "scale": tuple(float(s) for s in layer.scale),
        "translate": tuple(float(t) for t in layer.translate),
        "units": tuple(str(u) for u in layer.units),
        "axis_labels": tuple(str(a) for a in layer.axis_labels),
    }


class LayerTaskWidget(TaskWidget):
    """A task over the slices of one image layer; subclasses add their controls between
    :meth:`__init__` and :meth:`add_footer`."""

    def __init__(self, napari_viewer: Any, title: str):
        super().__init__(napari_viewer, title)
        self.input = image_layer_box(napari_viewer)
        self.slice_mode = ComboBox(label="slices", choices=list(SLICE_MODES), value="all slices", tooltip="for stacks and time series")
        self.seed = seed_box()
        self.results = ResultStack()
        #: Flat indices of the slices the last run computed.
        self.latest: list[int] = []
        self._show_with: tuple[str, Any, dict[str, tuple]] | None = None
        self.form.append(self.input)

    def add_footer(self, *widgets: Any) -> None:
        """Append the common controls and ``widgets`` to the form; the Run button and the status line below it."""
        self.form.extend([self.seed, *widgets, self.slice_mode])
        self.extend([self.run_button, self.status])

    def read_input(self, also: tuple[tuple[int, ...], ...] = ()) -> LayerInput:
        """The chosen layer's selected slices (and the stack positions ``also``) and geometry.

        Raises ``ValueError`` without a layer.
        """
        layer = self.input.value
        if layer is None:
            raise ValueError("add an image layer first, then choose it as input")
        rgb = bool(getattr(layer, "rgb", False))
        stack_shape = stack_shape_of(tuple(layer.data.shape), rgb)
        current = clip_index(layer.world_to_data(self.viewer.dims.point), stack_shape) if stack_shape else ()
        selection = SliceSelection.choose(stack_shape, self.slice_mode.value, current)
        if also and stack_shape:
            indices = sorted(set(selection.indices) | set(also), key=selection.flat_index)
            selection = SliceSelection(selection.stack_shape, tuple(indices))
        return LayerInput(
            name=layer.name,
            selection=selection,
            slices=selection.read(layer.data),
            rgb=rgb,
            geometry=layer_geometry(layer),
            key=(layer.name, tuple(layer.data.shape), type(self).__name__),
            metadata=dict(layer.metadata),
        )

    def store_and_show(self, source: LayerInput, results: list[Any], make_layer_data: Any, geometry: dict[str, tuple] | None = None) -> list[Any]:
        """Keep ``results`` (one per selected slice) and show all stored ones as layers.

        ``make_layer_data(results, name, stack_shape=..., **geometry)`` builds the layer data
        tuples (e.g. :func:`napari_klip.api.layers.klip_layer_data`); ``geometry`` defaults to the
        input layer's.
        """
        self.results.store(source.key, source.selection, results)
        self.latest = [source.selection.flat_index(index) for index in source.selection.indices]
        self._show_with = (source.name, make_layer_data, geometry if geometry is not None else source.geometry)
        return self.refresh_layers()

    def refresh_layers(self) -> list[Any]:
        """(Re)build the result layers from the stored results (e.g. after rescoring them)."""
        if not self.results.computed():
            return []
        name, make_layer_data, geometry = self._show_with
        data = make_layer_data(self.results.results, name, stack_shape=self.results.stack_shape, **geometry)
        return add_layer_data(self.viewer, data)
