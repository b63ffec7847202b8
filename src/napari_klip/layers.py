"""Deprecated location, kept for one release: use :mod:`napari_klip.api.layers` (or :mod:`napari_klip.api`).

``from napari_klip.layers import add_to_viewer`` (documented in v0.1) keeps working.
"""

from .api.layers import (  # noqa: F401
    LayerDataTuple,
    add_layer_data,
    add_to_viewer,
    klip_layer_data,
    layer_data,
    lmd_layer_data,
    measurement_layer_data,
    plugin_layer,
)

__all__ = ["add_layer_data", "add_to_viewer", "klip_layer_data", "layer_data", "lmd_layer_data", "measurement_layer_data", "plugin_layer"]
