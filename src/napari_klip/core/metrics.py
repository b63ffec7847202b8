"""ROC-AUC at dataset level (is this image OOD?) and image level (where in this image?).

Definitions follow the KLIP paper's protocol (``../shared/docs/method-klip.md``):

* dataset level — one ROC over the pooled image scores, OOD as the positive class;
* image level — per OOD image with a pixel label: the label downsampled to blocks (a block is
  positive if any of its pixels is), restricted to blocks inside the body mask when one is
  given (a block is inside when at least half of its pixels are), the ROC-AUC of block scores
  against block labels; averaged over the images whose blocks hold both classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _scores(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite scores")
    return array


def dataset_roc_auc(id_scores, ood_scores) -> float:
    """ROC-AUC of separating OOD (positive) from ID image scores; 0.5 is chance.

    Raises
    ------
    ValueError
        If either set is empty or holds non-finite scores.
    """
    from sklearn.metrics import roc_auc_score

    id_array, ood_array = _scores(id_scores, "id_scores"), _scores(ood_scores, "ood_scores")
    labels = np.concatenate([np.zeros(id_array.size), np.ones(ood_array.size)])
    return float(roc_auc_score(labels, np.concatenate([id_array, ood_array])))


def dataset_roc_curve(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the dataset-level ROC curve."""
    from sklearn.metrics import roc_curve

    id_array, ood_array = _scores(id_scores, "id_scores"), _scores(ood_scores, "ood_scores")
    labels = np.concatenate([np.zeros(id_array.size), np.ones(ood_array.size)])
    fpr, tpr, _ = roc_curve(labels, np.concatenate([id_array, ood_array]))
    return fpr, tpr


def _blocks(mask: np.ndarray, block_size: int) -> np.ndarray:
    """Fraction of true pixels in each ``block_size`` block of a 2-D mask."""
    return block_means(np.asarray(mask, dtype=bool), block_size)


def block_means(values: np.ndarray, block_size: int) -> np.ndarray:
    """Mean of a 2-D map over non-overlapping ``block_size`` blocks (the sides must divide)."""
    array = np.asarray(values, dtype=np.float64)
    height, width = array.shape
    if height % block_size or width % block_size:
        raise ValueError(f"block_size {block_size} does not divide the map size {height}×{width}")
    return array.reshape(height // block_size, block_size, width // block_size, block_size).mean(axis=(1, 3))


@dataclass
class ImageLevelResult:
    """Image-level ROC-AUC: the mean and each image's value (NaN where an image was skipped)."""

    mean_auc: float
    per_image: list[float]
    images_used: int


def image_level_roc_auc(score_maps, pixel_labels, block_size: int, body_masks=None) -> ImageLevelResult:
    """Mean over OOD images of the block-level ROC-AUC of a score map against the anomaly label.

    Parameters
    ----------
    score_maps : sequence of numpy.ndarray
        Per image, the ``(H / b, W / b)`` block scores.
    pixel_labels : sequence of numpy.ndarray
        Per image, the ``(H, W)`` boolean anomaly mask.
    block_size : int
        ``b``.
    body_masks : sequence of numpy.ndarray, optional
        Per image, the ``(H, W)`` body/foreground mask; blocks at least half inside are kept.

    Returns
    -------
    ImageLevelResult
        ``mean_auc`` is NaN if no image had both classes among its kept blocks.
    """
    from sklearn.metrics import roc_auc_score

    if len(score_maps) != len(pixel_labels) or (body_masks is not None and len(body_masks) != len(score_maps)):
        raise ValueError("score_maps, pixel_labels (and body_masks) must have one entry per image")
    per_image = []
    for index, (scores, label) in enumerate(zip(score_maps, pixel_labels, strict=True)):
        block_positive = _blocks(label, block_size) > 0
        if block_positive.shape != np.shape(scores):
            raise ValueError(f"image {index}: score map {np.shape(scores)} does not match the label blocks {block_positive.shape}")
        keep = np.ones_like(block_positive) if body_masks is None else _blocks(body_masks[index], block_size) >= 0.5
        targets, values = block_positive[keep], np.asarray(scores, dtype=np.float64)[keep]
        if targets.all() or not targets.any():
            per_image.append(float("nan"))
            continue
        per_image.append(float(roc_auc_score(targets, values)))
    used = [value for value in per_image if not np.isnan(value)]
    return ImageLevelResult(float(np.mean(used)) if used else float("nan"), per_image, len(used))


def centre_baseline_auc(masks: list[np.ndarray], block_size: int, body_masks: list[np.ndarray] | None = None) -> ImageLevelResult:
    """Image-level ROC-AUC of the centre baseline alone (it needs no image, only the label shapes).

    Same map and protocol as the ``centre`` entry of :func:`baseline_image_level_aucs`.
    """
    from .baselines import centre_map

    centre = block_means(centre_map(np.shape(masks[0])), block_size)
    return image_level_roc_auc([centre] * len(masks), masks, block_size, body_masks)


def baseline_image_level_aucs(
    observed: list[np.ndarray],
    reconstructions: list[np.ndarray],
    pixel_labels: list[np.ndarray],
    block_size: int,
    body_masks: list[np.ndarray] | None = None,
) -> dict[str, ImageLevelResult]:
    """Image-level ROC-AUC of every trivial baseline map, on the protocol of :func:`image_level_roc_auc`.

    The baselines (:mod:`napari_klip.core.baselines`: closeness to the centre, local contrast of
    what the user sees, residual to the detector's reconstruction) are pixel maps; each is
    averaged over the same blocks as the detector's score map. A detector's localization
    number counts by its margin over the best of these.

    Parameters
    ----------
    observed : list of numpy.ndarray
        Per image, ``(H, W)``: what the user sees (the image, or the approximate inverse of its
        measurement).
    reconstructions : list of numpy.ndarray
        Per image, ``(H, W)``: the detector's reconstruction, same units.
    pixel_labels, block_size, body_masks
        As for :func:`image_level_roc_auc`.

    Returns
    -------
    dict of str to ImageLevelResult
        Keyed by :data:`napari_klip.core.baselines.BASELINE_NAMES`.
    """
    from .baselines import BASELINE_NAMES, baseline_maps

    pooled: dict[str, list[np.ndarray]] = {name: [] for name in BASELINE_NAMES}
    for image, reconstruction in zip(observed, reconstructions, strict=True):
        for name, values in baseline_maps(image, reconstruction).items():
            pooled[name].append(block_means(values, block_size))
    return {name: image_level_roc_auc(maps, pixel_labels, block_size, body_masks) for name, maps in pooled.items()}
