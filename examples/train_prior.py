"""Train a (toy) prior on your own images, then sample from it and load it back.

Run: ``.venv/bin/python examples/train_prior.py OUT_FOLDER`` (under a minute: 30 steps of a
tiny network on 64 MNIST digits; real priors take thousands of steps, see docs/priors.md).
"""

import sys
from pathlib import Path

import numpy as np

from napari_klip.core.prior import load_prior
from napari_klip.core.sampling import sample_prior
from napari_klip.core.training import TrainingConfig, train_prior

REPO = Path(__file__).resolve().parents[1]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs") / "example-prior"
images = np.load(REPO / "tests" / "data" / "mnist_test_first8.npy")   # (8, 28, 28) uint8
images = np.concatenate([images] * 8)                                   # 64 images

result = train_prior(images, out, TrainingConfig(image_size=16, network="tiny", steps=30, batch_size=16, device="cpu"),
                     overwrite=True, progress=lambda update: None)
print("trained", result.steps_done, "steps, final loss", round(result.final_loss, 4))
prior = load_prior(out, device="cpu")
samples = sample_prior(prior, count=2, num_inference_steps=10, seed=0)
print("samples", samples.shape, prior.metadata.intensity_range)
