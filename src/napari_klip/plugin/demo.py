"""The demo in napari: the CT sample loaded and the KLIP widget docked (``napari-klip demo --gui``)."""

from __future__ import annotations

from typing import Any


def open_demo_viewer(viewer: Any) -> Any:
    """Load the CT sample into ``viewer`` and dock the KLIP widget set up as ``napari-klip demo`` runs; returns the widget.

    The widget uses the bundled liver prior (the sample's slices are liver) and adds the prior z-map.
    """
    from ..core.prior import LIVER_PRIOR_NAME, bundled_prior_path
    from .widgets._controls import FOLDER

    viewer.open_sample("napari-klip", "ct_lesions")
    _, widget = viewer.window.add_plugin_dock_widget("napari-klip", "KLIP detector")
    widget.prior.source.value = FOLDER
    widget.prior.folder.value = bundled_prior_path(LIVER_PRIOR_NAME)
    widget.prior_z.value = True
    return widget
