"""KLIP and LMD results as napari layers, from a script.

Run: ``.venv/bin/python examples/napari_layers.py`` to open a viewer, or with ``--no-show`` to
build the layers in a viewer model without a window (what the test does).
"""

import sys

from napari_klip.api import add_to_viewer, klip_layer_data, lmd_score, score_image
from napari_klip.core.klip import KlipConfig
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.samples import load_ct_sample

ct_slices, _ = load_ct_sample()
ct_slice = ct_slices[0]
show = "--no-show" not in sys.argv

if show:
    import napari

    viewer = napari.Viewer()
else:
    from napari.components import ViewerModel

    viewer = ViewerModel()
layer = viewer.add_image(ct_slice, name="ct", scale=(0.7, 0.7), units=("mm", "mm"))
result = score_image(ct_slice, operator="ct", operator_params={"n_views": 24}, config=KlipConfig(num_samples=2, num_steps=20, seed=0))
add_to_viewer(viewer, result, name="ct", scale=layer.scale, units=layer.units)   # heatmap, labels, reconstruction
add_to_viewer(viewer, result.rescore(block_size=4), name="ct", scale=layer.scale)   # updates the same layers
lmd = lmd_score(ct_slice, config=LmdConfig(num_reconstructions=2, num_steps=10, distance="mse"))
add_to_viewer(viewer, lmd, name="ct", scale=layer.scale)   # LMD heatmap and reconstruction
print([layer.name for layer in viewer.layers])
print([kind for _, _, kind in klip_layer_data(result, "ct")])   # layer data tuples without a viewer
if show:
    napari.run()
