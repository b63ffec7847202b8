"""KLIP from Python: score CT slices with inserted lesions, rescore without sampling, a given sinogram.

Run: ``.venv/bin/python examples/score_klip.py`` (a few seconds; raise ``num_steps`` to 100 and
``num_samples`` to 8, the paper's settings and the defaults, for real use).
"""

import numpy as np
import torch

from napari_klip.api import score_image, score_measurement, score_stack
from napari_klip.core.grid import resize_to_grid
from napari_klip.core.klip import KlipConfig
from napari_klip.core.operators import SparseViewCT
from napari_klip.core.samples import load_ct_sample

ct_slices, lesion_masks = load_ct_sample()          # (8, 28, 28) float32 in 0-255 units, bool masks
ct_slice = ct_slices[0]
config = KlipConfig(num_samples=2, num_steps=20, seed=0)

# prior=None: the bundled OrganAMNIST CT prior (32x32); the 28x28 slice is resized to it and back
result = score_image(ct_slice, operator="ct", operator_params={"n_views": 24}, config=config)
print("score", result.score, "heatmap", result.heatmap.shape, "labels", result.labels.shape)
print("reconstruction", result.reconstruction.shape, "trace", result.trace.energy.shape)
coarser = result.rescore(block_size=4, window=(10, 18))   # another block size / window, no new sampling
print("rescored", coarser.score)

# a stack: slice i uses seed config.seed + i
results = score_stack(ct_slices[:2], operator="ct", operator_params={"n_views": 24}, config=config)
print("stack scores", [r.score for r in results])

# a given sinogram with its own angles, for the prior's 32x32 grid, in the image's 0-255 units
operator = SparseViewCT(32, angles=[0.0, 30.0, 60.0, 90.0, 120.0, 150.0])
on_grid = torch.from_numpy(resize_to_grid(ct_slice.astype(np.float64), (32, 32)))[None, None]
sinogram = operator.simulate(on_grid, noise_sigma=1.0, seed=0)[0, 0].numpy()
given = score_measurement(sinogram, operator, config=config, output_shape=ct_slice.shape)
print("measured:", given.score, given.heatmap.shape)
