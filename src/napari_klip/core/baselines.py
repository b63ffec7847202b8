"""Trivial anomaly maps that every localization number must beat.

A localization map only means something by its margin over maps that know nothing about the
distribution of normal images:

* :func:`centre_map` — closeness to the image centre. Anomalies sit inside the body, and the
  body is central, so this map alone reaches ROC-AUCs well above 0.5.
* :func:`body_depth_map` — depth inside the body: the distance of each pixel to the edge of
  the body (:func:`~napari_klip.core.anomalies.foreground_mask` of what the user sees) or of the
  image. Lesions lie inside organs, away from the body's outline; on the liver benchmark this
  beats the centre map on every test set, by 0.01–0.08 (``docs/benchmarks.md``).
* :func:`local_contrast_map` — ``|x − local mean of x|``: edges, texture and anything that
  stands out from its surroundings.
* :func:`blob_contrast_map` — ``|G_σ x − G_3σ x|``, a difference of Gaussians: blobs of about
  the size ``σ`` that differ from their surroundings (local contrast at the anomaly's scale
  rather than the pixel's). On the liver benchmark it is by far the strongest baseline for
  star artefacts (``docs/benchmarks.md``).
* :func:`residual_map` — ``|x − reconstruction|``: where the detector's own reconstruction
  (the posterior mean, an inpainting) differs from the image.

All take and return 2-D numpy arrays in any intensity units; higher means more anomalous. The
image the user can see is what they are computed on: the image itself when it was measured
directly, the operator's approximate inverse (filtered back-projection for CT) otherwise.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Names of the baseline maps, in the order reports list them.
BASELINE_NAMES = ("centre", "body-depth", "local-contrast", "blob-contrast", "residual")
#: Side of the square window of :func:`local_contrast_map`'s local mean, in pixels.
LOCAL_CONTRAST_WINDOW = 5
#: Inner Gaussian width of :func:`blob_contrast_map`, in pixels (the surround's is three times it):
#: of 1, 2 and 3 px, 3 has the best validation ROC-AUC pooled over the liver benchmark's tasks
#: (``docs/benchmarks.md``).
BLOB_CONTRAST_SIGMA = 3.0
#: Ratio of the outer to the inner Gaussian width of :func:`blob_contrast_map`.
BLOB_SURROUND_RATIO = 3.0


def _image(image: ArrayLike, name: str) -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return data


def centre_map(shape: tuple[int, int]) -> np.ndarray:
    """Closeness to the centre: minus the distance of every pixel to the image centre.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64, largest at the centre.
    """
    rows, columns = np.indices(tuple(int(s) for s in shape), dtype=np.float64)
    return -np.hypot(rows - (shape[0] - 1) / 2, columns - (shape[1] - 1) / 2)


def body_depth_map(image: ArrayLike) -> np.ndarray:
    """Depth inside the body: the Euclidean distance of each body pixel to the nearest pixel outside it.

    The body is :func:`napari_klip.core.anomalies.foreground_mask` of ``image`` (Otsu's threshold,
    a small closing, holes filled, the largest component). The image's border counts as outside,
    so a body that fills the image gets the distance to the image's edge.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` image; not modified.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64: 0 outside the body, growing towards its inside (all 0 when the image
        has no body, e.g. a constant image of value <= 0).
    """
    from scipy import ndimage as ndi

    from .anomalies import foreground_mask

    body = foreground_mask(_image(image, "image"))
    return ndi.distance_transform_edt(np.pad(body, 1))[1:-1, 1:-1]


def local_contrast_map(image: ArrayLike, window: int = LOCAL_CONTRAST_WINDOW) -> np.ndarray:
    """``|x − local mean|`` with a ``window × window`` mean (edges reflected).

    Parameters
    ----------
    image : array_like
        ``(H, W)`` image; not modified.
    window : int
        Odd side of the local-mean window, in pixels.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64.
    """
    from scipy import ndimage as ndi

    data = _image(image, "image")
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer, got {window!r}")
    return np.abs(data - ndi.uniform_filter(data, size=int(window), mode="reflect"))


def blob_contrast_map(image: ArrayLike, sigma: float = BLOB_CONTRAST_SIGMA) -> np.ndarray:
    """``|G_σ x − G_3σ x|``: a difference of Gaussians, the contrast of a blob of size ``σ`` to its surround.

    Parameters
    ----------
    image : array_like
        ``(H, W)`` image; not modified.
    sigma : float
        Width of the inner Gaussian, in pixels (the surround's is :data:`BLOB_SURROUND_RATIO`
        times it); edges are reflected.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64.
    """
    from scipy import ndimage as ndi

    data = _image(image, "image")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) or not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    inner = ndi.gaussian_filter(data, float(sigma), mode="reflect")
    surround = ndi.gaussian_filter(data, BLOB_SURROUND_RATIO * float(sigma), mode="reflect")
    return np.abs(inner - surround)


def residual_map(image: ArrayLike, reconstruction: ArrayLike) -> np.ndarray:
    """``|x − reconstruction|`` per pixel.

    Parameters
    ----------
    image, reconstruction : array_like
        ``(H, W)`` arrays of the same shape and units; not modified.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64.
    """
    data, recon = _image(image, "image"), _image(reconstruction, "reconstruction")
    if data.shape != recon.shape:
        raise ValueError(f"image {data.shape} and reconstruction {recon.shape} differ in shape")
    return np.abs(data - recon)


def baseline_maps(observed: ArrayLike, reconstruction: ArrayLike) -> dict[str, np.ndarray]:
    """All baseline maps of one image, keyed by :data:`BASELINE_NAMES`.

    Parameters
    ----------
    observed : array_like
        ``(H, W)``: the image the user sees (the image itself, or the operator's approximate
        inverse of the measurement).
    reconstruction : array_like
        ``(H, W)``: the detector's reconstruction in the same units.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    data = _image(observed, "observed")
    return {
        "centre": centre_map(data.shape),
        "body-depth": body_depth_map(data),
        "local-contrast": local_contrast_map(data),
        "blob-contrast": blob_contrast_map(data),
        "residual": residual_map(data, reconstruction),
    }
