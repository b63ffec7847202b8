"""End to end: LMD with a real trained prior separates digits from clothes and localizes a square.

Prior: ``priors/mnist32-tiny-cpu`` (``napari-klip train`` on the MNIST train split). Images: the
first 8 MNIST test digits (ID) and the first 8 Fashion-MNIST test images (OOD), shipped in
tests/data. 4 reconstructions, 10 steps.

Margins and why they are robust: measured over seeds 0, 1, 2 the dataset-level ROC-AUC was
1.0 / 1.0 / 0.98 (SSIM), 1.0 / 1.0 / 0.97 (prior features) and 1.0 (MSE, LPIPS) — we assert
> 0.85. The localization ROC-AUC of the heatmap (pixels of a bright 5×5 square in an empty corner
vs the rest) measured 0.985–1.0 per image for MSE and 0.979–0.999 for prior features (seeds 0, 1);
we assert a mean > 0.85 and every image > 0.7. An inpainting that returned the input would give
zero distances (AUC 0.5); one that ignored the known pixels fails the known-pixel test in
test_lmd.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_klip.api import lmd_score_stack
from napari_klip.core.lmd import LmdConfig
from napari_klip.core.metrics import dataset_roc_auc
from napari_klip.core.prior import load_prior

from conftest import shared_file

REPO = Path(__file__).resolve().parents[2]
CORNERS = ((1, 1), (1, 22), (22, 1), (22, 22))


@pytest.fixture(scope="module")
def mnist_prior():
    return load_prior(REPO / "priors" / "mnist32-tiny-cpu", device="cpu")


@pytest.fixture(scope="module")
def digits_and_clothes():
    data = REPO / "tests" / "data"
    return np.load(data / "mnist_test_first8.npy").astype(np.float32), np.load(data / "fashion_mnist_test_first8.npy").astype(np.float32)


def _dataset_auc(prior, digits, clothes, distance, **options):
    config = LmdConfig(num_reconstructions=4, num_steps=10, distance=distance, seed=0)
    in_domain = [r.score for r in lmd_score_stack(digits, prior, config=config, batch_size=8, **options)]
    out_of_domain = [r.score for r in lmd_score_stack(clothes, prior, config=config, batch_size=8, **options)]
    return dataset_roc_auc(in_domain, out_of_domain)


@pytest.mark.slow
@pytest.mark.parametrize("distance", ["mse", "prior-features"])
def test_mnist_prior_flags_fashion_images(mnist_prior, digits_and_clothes, distance):
    assert _dataset_auc(mnist_prior, *digits_and_clothes, distance) > 0.85


@pytest.mark.slow
@pytest.mark.shared_data
def test_mnist_prior_flags_fashion_images_with_imagenet_lpips(mnist_prior, digits_and_clothes):
    weights = shared_file("weights/alexnet_features_imagenet.npz")
    assert _dataset_auc(mnist_prior, *digits_and_clothes, "lpips", lpips_weights=weights) > 0.85


@pytest.mark.slow
@pytest.mark.parametrize("distance", ["mse", "prior-features"])
def test_heatmap_localizes_a_square_on_the_background(mnist_prior, digits_and_clothes, distance):
    images, masks = [], []
    for digit, (row, col) in zip(digits_and_clothes[0][:4], CORNERS, strict=True):
        mask = np.zeros((28, 28), bool)
        mask[row : row + 5, col : col + 5] = True
        assert not digit[mask].any(), "the square must go on empty background"
        image = digit.copy()
        image[mask] = 255.0
        images.append(image)
        masks.append(mask)
    results = lmd_score_stack(np.stack(images), mnist_prior, config=LmdConfig(num_reconstructions=4, num_steps=10, distance=distance), batch_size=4)
    aucs = [roc_auc_score(mask.ravel(), result.heatmap.ravel()) for mask, result in zip(masks, results, strict=True)]
    assert np.mean(aucs) > 0.85 and min(aucs) > 0.7, aucs
