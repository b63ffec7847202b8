"""Save screenshots of napari with the napari-klip widgets docked and results shown, into docs/images/.

Usage (starts a virtual display when there is none)::

    .venv/bin/python scripts/screenshots.py [--samples 8] [--steps 100] [--threads N] [--out docs/images]

Writes ``napari-klip-widget.png`` (KLIP on the CT sample: the KLIP heatmap of the slice with the
highest score, the inserted lesion as a cyan outline, the widget with the scores) and ``napari-klip-brain-lmd.png`` (LMD on the
brain MRI sample with its tumour outline). Uses the bundled prior.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "napari-klip"


def wait_for(widget, timeout_s: float = 1800.0) -> None:
    """Let Qt run until the widget's job has finished."""
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while widget.is_running:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{widget.title} did not finish in {timeout_s} s")
    if widget.status.value.startswith(("Error", "Cancelled")):
        raise RuntimeError(f"{widget.title}: {widget.status.value}")


def settle(viewer, seconds: float = 1.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def outline(labels) -> None:
    """Show a mask as a cyan outline."""
    from napari.utils.colormaps import DirectLabelColormap

    labels.colormap = DirectLabelColormap(color_dict={None: "transparent", 1: "cyan"})
    labels.contour, labels.opacity = 1, 1.0


def klip_on_ct(viewer, samples: int, steps: int, out: Path) -> None:
    viewer.open_sample(PLUGIN, "ct_lesions")
    masks = viewer.layers["lesion masks"]
    outline(masks)
    _, klip = viewer.window.add_plugin_dock_widget(PLUGIN, "KLIP detector")
    klip.input.value = viewer.layers["CT slices with lesions"]
    klip.samples.value, klip.steps.value, klip.slice_mode.value = samples, steps, "all slices"
    klip.run()
    wait_for(klip)
    viewer.layers.move(viewer.layers.index(masks), len(viewer.layers))  # outlines on top
    viewer.layers["CT slices with lesions KLIP labels"].visible = False
    viewer.layers["CT slices with lesions"].visible = False  # the heatmap alone, with the lesion outline
    scores = viewer.layers["CT slices with lesions KLIP heatmap"].metadata["napari_klip"]["scores"]
    viewer.dims.set_point(0, scores.index(max(scores)))  # the slice with the highest score
    viewer.reset_view()
    settle(viewer)
    viewer.screenshot(str(out / "napari-klip-widget.png"), canvas_only=False)
    print(f"KLIP: {klip.score.value}")


def lmd_on_brain(viewer, steps: int, out: Path) -> None:
    viewer.open_sample(PLUGIN, "brain_mri")
    tumour = viewer.layers["tumour mask"]
    outline(tumour)
    _, lmd = viewer.window.add_plugin_dock_widget(PLUGIN, "LMD detector")
    lmd.input.value = viewer.layers["brain MRI"]
    lmd.steps.value, lmd.distance.value, lmd.slice_mode.value = steps, "mse", "all slices"
    lmd.run()
    wait_for(lmd)
    viewer.layers.move(viewer.layers.index(tumour), len(viewer.layers))
    z_axis = viewer.dims.ndim - 3  # the reconstructions layer adds a first axis
    viewer.dims.set_point(z_axis, 4 * viewer.layers["brain MRI"].scale[0])  # the slice with the largest tumour
    viewer.reset_view()
    settle(viewer)
    viewer.screenshot(str(out / "napari-klip-brain-lmd.png"), canvas_only=False)
    print(f"LMD: {lmd.score.value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="KLIP posterior samples")
    parser.add_argument("--steps", type=int, default=100, help="reverse steps (KLIP and LMD)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if not os.environ.get("DISPLAY"):  # run again under a virtual X display (Debian package xvfb)
        command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, *sys.argv[1:]]
        os.execvp(command[0], command)
    import napari
    from napari.settings import get_settings

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    get_settings().application.gui_notification_level = "error"  # no toasts over the canvas
    for make in (lambda v: klip_on_ct(v, args.samples, args.steps, args.out), lambda v: lmd_on_brain(v, args.steps, args.out)):
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1500, 900)
        try:
            make(viewer)
        finally:
            viewer.close()
    for path in sorted(args.out.glob("napari-klip-*.png")):
        print(path)


if __name__ == "__main__":
    main()
