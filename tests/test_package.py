"""The package imports cheaply and its console script answers."""

from __future__ import annotations

import json
import subprocess
import sys

from napari_klip.cli import main


def test_import_does_not_load_torch_or_qt():
    code = (
        "import sys, napari_klip; "
        "heavy = [m for m in ('torch', 'diffusers', 'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import napari_klip pulled in: {out.stdout.strip()}"


def test_core_does_not_import_qt_or_napari():
    code = (
        "import sys; import napari_klip.core.operators, napari_klip.core.prior, napari_klip.core.training, "
        "napari_klip.core.data, napari_klip.core.anomalies, napari_klip.core.device; "
        "print(','.join(m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "napari_klip.cli", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "info" in out.stdout


def test_info_reports_cpu(capsys):
    assert main(["info"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "cpu" in report["devices"]
