"""ROC-AUC at dataset and image level, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_klip.core.metrics import dataset_roc_auc, dataset_roc_curve, image_level_roc_auc


def _mann_whitney_auc(negatives, positives):
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in positives for n in negatives]
    return sum(pairs) / len(pairs)


def test_dataset_auc_equals_the_pairwise_probability():
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(0, 1, 40), rng.normal(0.8, 1, 30)
    id_scores[:5] = ood_scores[:5]  # some ties
    assert dataset_roc_auc(id_scores, ood_scores) == pytest.approx(_mann_whitney_auc(id_scores, ood_scores))
    assert dataset_roc_auc([1, 2], [3, 4]) == 1.0 and dataset_roc_auc([3, 4], [1, 2]) == 0.0
    fpr, tpr = dataset_roc_curve([1, 2], [3, 4])
    assert fpr[0] == 0 and tpr[-1] == 1


def test_dataset_auc_bad_inputs():
    with pytest.raises(ValueError, match="id_scores is empty"):
        dataset_roc_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        dataset_roc_auc([1.0], [np.nan])


def test_image_level_auc_blocks_body_and_skips():
    label = np.zeros((4, 4), bool)
    label[0, 1] = True  # lies in block (0, 0) at block size 2
    perfect = np.array([[5.0, 1.0], [1.0, 1.0]])
    inverted = np.array([[0.0, 1.0], [2.0, 3.0]])
    result = image_level_roc_auc([perfect, inverted, perfect], [label, label, np.zeros((4, 4), bool)], 2)
    assert result.per_image[:2] == [1.0, 0.0] and math.isnan(result.per_image[2])
    assert result.mean_auc == 0.5 and result.images_used == 2
    body = np.zeros((4, 4), bool)
    body[:, :2] = True  # keeps blocks (0,0) and (1,0) only
    restricted = image_level_roc_auc([inverted], [label], 2, body_masks=[body])
    assert restricted.per_image == [0.0]
    other = np.array([[1.0, 9.0], [0.0, 9.0]])
    assert image_level_roc_auc([other], [label], 2, body_masks=[body]).per_image == [1.0]


def test_image_level_bad_inputs():
    with pytest.raises(ValueError, match="one entry per image"):
        image_level_roc_auc([np.zeros((2, 2))], [], 2)
    with pytest.raises(ValueError, match="does not divide"):
        image_level_roc_auc([np.zeros((2, 2))], [np.zeros((5, 5), bool)], 2)
    with pytest.raises(ValueError, match="does not match"):
        image_level_roc_auc([np.zeros((3, 3))], [np.zeros((4, 4), bool)], 2)
