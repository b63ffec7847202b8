"""The demo in napari: the CT sample loaded and the KLIP widget docked (``napari-klip demo --gui``)."""

from __future__ import annotations

from typing import Any


def open_demo_viewer(viewer: Any) -> Any:
    """Load the CT sample into ``viewer`` and dock the KLIP widget; returns the widget."""
    viewer.open_sample("napari-klip", "ct_lesions")
    _, widget = viewer.window.add_plugin_dock_widget("napari-klip", "KLIP detector")
    return widget
