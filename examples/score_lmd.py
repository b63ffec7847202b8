"""LMD from Python: MNIST digits (in distribution) against Fashion-MNIST clothes with the MNIST prior.

Run: ``.venv/bin/python examples/score_lmd.py`` (a few seconds; the paper uses 10 reconstructions
of 1,000 steps and the LPIPS distance, see docs/lmd.md).
"""

from pathlib import Path

import numpy as np

from napari_klip.api import lmd_score, lmd_score_stack
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.metrics import dataset_roc_auc

REPO = Path(__file__).resolve().parents[1]
digits = np.load(REPO / "tests" / "data" / "mnist_test_first8.npy").astype(np.float32)[:4]
clothes = np.load(REPO / "tests" / "data" / "fashion_mnist_test_first8.npy").astype(np.float32)[:4]
prior = str(REPO / "priors" / "mnist32-tiny-cpu")
config = LmdConfig(num_reconstructions=4, num_steps=10, distance="mse", seed=0)

result = lmd_score(digits[0], prior, config=config)
print("score", result.score, "distances", result.distances.shape, "heatmap", result.heatmap.shape)
print("reconstructions", result.reconstructions.shape, "masks", result.masks.shape)

in_domain = [r.score for r in lmd_score_stack(digits, prior, config=config, batch_size=4)]
out_of_domain = [r.score for r in lmd_score_stack(clothes, prior, config=config, batch_size=4)]
print("dataset-level ROC-AUC, digits vs clothes:", dataset_roc_auc(in_domain, out_of_domain))
