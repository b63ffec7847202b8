"""Helpers of the headless napari plugin tests (imported by name: this folder is on ``sys.path``).

Importing this module skips the importing test module when napari, pytest-qt or a display is
missing (pytest-xvfb starts Xvfb when it is installed).
"""

from __future__ import annotations

import os

import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("no display: install Xvfb (scripts/test.sh does) so that pytest-xvfb can start one", allow_module_level=True)

from napari.utils.notifications import notification_manager  # noqa: E402

PLUGIN = "napari-klip"
WIDGETS = ("Simulate measurement", "KLIP detector", "LMD detector", "Train prior")
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def run_and_wait(qtbot, widget):
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=RUN_TIMEOUT_MS)


def new_notifications(since: int, severity: str = "error") -> list[str]:
    return [str(n.message) for n in notification_manager.records[since:] if n.severity == severity]


def new_errors(since: int) -> list[str]:
    return new_notifications(since, "error")


def fast_klip(widget, layer, slices="all slices"):
    widget.input.value = layer
    widget.samples.value, widget.steps.value, widget.slice_mode.value = 1, 4, slices
    return widget


def names(viewer):
    return [layer.name for layer in viewer.layers]


def folder_snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
