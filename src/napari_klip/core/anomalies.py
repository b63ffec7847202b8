"""Synthetic anomalies with pixel masks: tumour-like lesions and star-shaped bright artefacts.

These generators make out-of-distribution test images from in-distribution ones, the way the
KLIP paper's OOD data were made: a small, local change placed inside the imaged body, with a
pixel mask of where the image was changed.

* :func:`insert_lesion` — an irregular blob of subtly shifted, textured intensity (a tumour).
  Pixels outside the returned mask are bit-identical to the input.
* :func:`insert_star_artifact` — bright anti-aliased line segments crossing at one point.
  Pixels outside the returned mask change by at most :data:`STAR_MASK_FRACTION` of the peak.
* :func:`foreground_mask` — the body (bright object on a dark background) that both use.
* :func:`insert_anomaly` — one entry point for both kinds.

Conventions (as in scikit-image): inputs are never modified; ``seed`` is ``None``, an ``int`` or
a :class:`numpy.random.Generator`, and the same seed gives the same output. Images are 2-D real
arrays; a floating-point image comes back in its own dtype, an integer image comes back as
``float32`` in the same intensity units (no rescaling, no clipping to the integer range).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, NamedTuple, Union

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.morphology import disk

__all__ = [
    "Anomaly",
    "LESION_AREA_RANGE",
    "LESION_CONTRAST_RANGE",
    "STAR_MASK_FRACTION",
    "foreground_mask",
    "insert_anomaly",
    "insert_lesion",
    "insert_star_artifact",
]

#: Default lesion area, as a fraction of the foreground area (drawn uniformly in this range).
LESION_AREA_RANGE = (0.015, 0.05)
#: Default ``|contrast|`` of a lesion (drawn uniformly in this range, with a random sign).
LESION_CONTRAST_RANGE = (0.1, 0.25)
#: A star's mask holds the pixels brightened by more than this fraction of its peak intensity.
STAR_MASK_FRACTION = 0.05

_HARMONICS = np.array([2, 3, 4, 5])  # angular frequencies that make a lesion's outline irregular
_HARMONIC_AMPLITUDE = 0.25  # harmonic k has amplitude in [0, 0.25 / k]: outline radius stays > 0.6
_EDGE_FRACTION = 0.3  # a lesion's intensity ramps from zero over this fraction of its radius
_STAR_TRUNCATION = 4.0  # a ray's Gaussian cross-profile is cut to zero beyond this many widths

SeedLike = Union[None, int, np.random.Generator]


class Anomaly(NamedTuple):
    """An image with an inserted anomaly and the pixel mask of the anomaly.

    Attributes
    ----------
    image : numpy.ndarray
        The changed image, shape ``(H, W)``; float input keeps its dtype, integer input gives
        ``float32``.
    mask : numpy.ndarray of bool
        ``True`` where the anomaly is, same shape as ``image``.
    """

    image: np.ndarray
    mask: np.ndarray


# --------------------------------------------------------------------------- argument checks


def _check_image(image: ArrayLike) -> np.ndarray:
    """Return ``image`` as an array after checking it is a finite, non-empty, 2-D real image."""
    data = np.asarray(image)
    if data.dtype == bool:
        raise TypeError("image must be a 2-D real numeric array, got a boolean array (a mask?)")
    if np.iscomplexobj(data):
        raise TypeError(f"image must be a 2-D real numeric array, got complex dtype {data.dtype}")
    if data.dtype.kind not in "iuf":
        raise TypeError(f"image must be a 2-D real numeric array, got dtype {data.dtype}")
    if data.ndim != 2:
        raise ValueError(f"image must be a 2-D (H, W) array, got {data.ndim} dimension(s) with shape {data.shape}")
    if data.size == 0:
        raise ValueError(f"image must not be empty, got shape {data.shape}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError("image must be finite: it contains NaN or infinite values")
    return data


def _check_real(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking it is a finite real number (not a bool)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking it is a finite number greater than zero."""
    value = _check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value}")
    return value


def _check_foreground(foreground: ArrayLike | None, image: np.ndarray) -> np.ndarray:
    """The foreground to place an anomaly in: the given bool mask or :func:`foreground_mask`."""
    if foreground is None:
        foreground = foreground_mask(image)
    else:
        foreground = np.asarray(foreground)
        if foreground.dtype != bool:
            raise TypeError(f"foreground must be a boolean array, got dtype {foreground.dtype}")
        if foreground.shape != image.shape:
            raise ValueError(f"foreground must have the image's shape {image.shape}, got {foreground.shape}")
    if not foreground.any():
        raise ValueError("no foreground: the foreground mask is empty, so there is nowhere to place an anomaly")
    return foreground


def _rng(seed: SeedLike) -> np.random.Generator:
    """A random generator from ``None``, a non-negative ``int`` or a ``Generator`` (used as is)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None, an int or a numpy.random.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


# --------------------------------------------------------------------------- shared helpers


def _output_dtype(image: np.ndarray) -> np.dtype:
    """Float images keep their dtype; integer images are returned as ``float32``."""
    return image.dtype if image.dtype.kind == "f" else np.dtype(np.float32)


def _first_positive(*candidates: float) -> float:
    """The first candidate greater than zero, or 1.0 when there is none (a constant zero image)."""
    return next((float(c) for c in candidates if c > 0), 1.0)


def _apply_change(image: np.ndarray, delta: np.ndarray, support: np.ndarray) -> Anomaly:
    """Add ``delta`` to ``image`` on ``support`` only; the mask holds the pixels that changed.

    The output is a new array in :func:`_output_dtype`; pixels outside ``support`` are copied
    (bit-identical for float input). Raises when the change is too faint to alter any pixel.
    """
    out = image.astype(_output_dtype(image), copy=True)
    before = out[support]
    after = (image[support].astype(np.float64) + delta[support]).astype(out.dtype)
    out[support] = after
    mask = np.zeros(image.shape, dtype=bool)
    mask[support] = after != before
    if not mask.any():
        raise ValueError("the anomaly is too small or too faint to change any pixel of this image")
    return Anomaly(out, mask)


def _depth(foreground: np.ndarray) -> np.ndarray:
    """Distance of each foreground pixel to the background or to the image border."""
    return ndi.distance_transform_edt(np.pad(foreground, 1))[1:-1, 1:-1]


def _pick_centre(foreground: np.ndarray, min_depth: float, rng: np.random.Generator) -> tuple[int, int]:
    """A random foreground pixel at least ``min_depth`` from the background (or the deepest ones)."""
    depth = _depth(foreground)
    rows, cols = np.nonzero(depth >= min(min_depth, depth.max()))
    index = rng.integers(rows.size)
    return int(rows[index]), int(cols[index])


def _offsets(shape: tuple[int, int], centre: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of every pixel from ``centre``, as float arrays."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return rows - centre[0], cols - centre[1]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 for ``x <= 0``, 1 for ``x >= 1``, and the smooth cubic ``3x² - 2x³`` in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# --------------------------------------------------------------------------- foreground


def foreground_mask(image: ArrayLike, threshold: float | None = None) -> np.ndarray:
    """Find the body (bright object on a dark background) of a grey image, e.g. a CT slice.

    Pixels brighter than the threshold are foreground; a small binary closing bridges narrow
    gaps, holes are filled, and only the largest connected component is kept.

    Parameters
    ----------
    image : array_like, shape (H, W)
        A finite, real-valued grey image.
    threshold : float, optional
        Intensity above which a pixel is foreground. By default Otsu's threshold of the image.
        A constant image has nothing to threshold: by default it is all foreground when its
        value is positive and all background otherwise.

    Returns
    -------
    numpy.ndarray of bool, shape (H, W)
        The foreground; all ``False`` when no pixel is above the threshold.

    Raises
    ------
    TypeError
        If ``image`` is not a real numeric array or ``threshold`` not a real number.
    ValueError
        If ``image`` is not 2-D, is empty or is not finite, or ``threshold`` is not finite.

    Notes
    -----
    The closing uses a disc of radius ``max(1, round(min(H, W) / 256))`` pixels (1 pixel for
    images up to 384 pixels, 2 for 512² CT slices).
    """
    data = _check_image(image)
    if threshold is None:
        low, high = data.min(), data.max()
        if low == high:
            return np.full(data.shape, bool(low > 0))
        threshold = threshold_otsu(data)
    else:
        threshold = _check_real("threshold", threshold)
    mask = data > threshold
    if not mask.any():
        return mask
    radius = max(1, round(min(data.shape) / 256))
    pad = 2 * radius  # pad so that the closing does not erode pixels at the image border
    mask = ndi.binary_closing(np.pad(mask, pad), structure=disk(radius))[pad:-pad, pad:-pad]
    mask = ndi.binary_fill_holes(mask)
    labels, count = ndi.label(mask)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == 1 + int(np.argmax(sizes))
    return mask


# --------------------------------------------------------------------------- lesion


def _lesion_radius_map(
    shape: tuple[int, int], centre: tuple[int, int], amplitudes: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """Distance from ``centre`` divided by the irregular outline ``1 + Σ a_k cos(kθ + φ_k)``.

    The lesion of radius ``R`` is where this map is below ``R``.
    """
    dy, dx = _offsets(shape, centre)
    angle = np.arctan2(dy, dx)
    harmonics = np.cos(_HARMONICS[:, None, None] * angle + phases[:, None, None])
    outline = 1.0 + np.sum(amplitudes[:, None, None] * harmonics, axis=0)
    return np.hypot(dy, dx) / outline


def _radius_for_area(values: np.ndarray, n_pixels: int) -> float:
    """A radius with exactly ``n_pixels`` of ``values`` strictly below it (barring ties)."""
    ordered = np.sort(values)
    if n_pixels >= ordered.size:
        return float(ordered[-1]) + 1.0
    return float(ordered[n_pixels])


def _texture(shape: tuple[int, int], sigma: float, where: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smoothed Gaussian noise with zero mean and largest magnitude 1 over ``where``."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    noise -= noise[where].mean()
    peak = np.abs(noise[where]).max()
    return noise / peak if peak > 0 else np.zeros(shape)


def insert_lesion(
    image: ArrayLike,
    *,
    foreground: ArrayLike | None = None,
    radius: float | None = None,
    contrast: float | None = None,
    texture: float = 0.3,
    seed: SeedLike = None,
) -> Anomaly:
    """Insert a tumour-like lesion: an irregular blob of subtly shifted, textured intensity.

    The blob's outline is a circle whose radius is modulated by the angular harmonics
    ``k = 2..5`` with random phases and amplitudes up to ``0.25 / k``. Its centre is a random
    foreground pixel deep enough (by the distance transform) for the blob to lie inside the
    foreground, and the blob is clipped to the foreground. Inside, the intensity changes by
    ``contrast × scale × profile × (1 + texture × noise)``, normalised so that the largest
    change is exactly ``|contrast| × scale``, where ``scale`` is the 98th minus the 2nd
    percentile of the foreground intensities (or the image's range if that is zero, or 1),
    ``noise`` is smoothed noise in [-1, 1] and ``profile`` rises smoothly from exactly zero at
    the outline to 1 inside.

    Parameters
    ----------
    image : array_like, shape (H, W)
        A finite, real-valued grey image (not bool or complex).
    foreground : numpy.ndarray of bool, shape (H, W), optional
        Where the lesion may be; :func:`foreground_mask` of the image by default.
    radius : float, optional
        Mean radius of the blob's outline in pixels. By default the radius is chosen so that
        the lesion covers exactly a fraction, drawn uniformly in :data:`LESION_AREA_RANGE`
        (1.5–5 %), of the foreground area (rounded to whole pixels, at least one pixel).
    contrast : float, optional
        Largest intensity change as a fraction of ``scale`` (see above); negative values darken.
        By default drawn uniformly in ±:data:`LESION_CONTRAST_RANGE` (0.1–0.25) with a random
        sign. Must be non-zero.
    texture : float, default 0.3
        Strength of the multiplicative texture, in ``[0, 1)``; 0 gives a smooth lesion.
    seed : None, int or numpy.random.Generator, optional
        Randomness; the same seed gives the same lesion.

    Returns
    -------
    Anomaly
        ``image``: a new array, float input keeps its dtype, integer input becomes ``float32``
        in the same units. ``mask``: the pixels the lesion changed, all inside the foreground.
        Pixels outside the mask are bit-identical to the input (after the ``float32``
        conversion of integer images).

    Raises
    ------
    TypeError
        If ``image`` is not a real numeric array, ``foreground`` is not boolean, a number
        argument is not a real number, or ``seed`` has the wrong type.
    ValueError
        If ``image`` is not 2-D, empty or not finite; ``foreground`` has another shape or is
        empty (no foreground); ``radius`` is not positive; ``contrast`` is zero; ``texture`` is
        outside ``[0, 1)``; or the lesion is too small or faint to change any pixel.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> phantom = np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 25**2, 0.6, 0.0)
    >>> lesion = insert_lesion(phantom, seed=0)
    >>> bool(np.all(lesion.image[~lesion.mask] == phantom[~lesion.mask]))
    True
    """
    data = _check_image(image)
    foreground = _check_foreground(foreground, data)
    if radius is not None:
        radius = _check_positive("radius", radius)
    if contrast is not None:
        contrast = _check_real("contrast", contrast)
        if contrast == 0:
            raise ValueError("contrast must be non-zero (a zero contrast changes nothing)")
    texture = _check_real("texture", texture)
    if not 0 <= texture < 1:
        raise ValueError(f"texture must be in [0, 1), got {texture}")
    rng = _rng(seed)

    amplitudes = rng.uniform(0.0, _HARMONIC_AMPLITUDE, size=_HARMONICS.size) / _HARMONICS
    phases = rng.uniform(0.0, 2 * np.pi, size=_HARMONICS.size)
    if contrast is None:
        contrast = rng.choice([-1.0, 1.0]) * rng.uniform(*LESION_CONTRAST_RANGE)
    if radius is None:
        n_pixels = max(1, round(rng.uniform(*LESION_AREA_RANGE) * int(foreground.sum())))
        mean_square_outline = 1.0 + 0.5 * float(np.sum(amplitudes**2))
        size = math.sqrt(n_pixels / (math.pi * mean_square_outline))
    else:
        size = radius
    centre = _pick_centre(foreground, size * (1.0 + amplitudes.sum()), rng)
    radius_map = _lesion_radius_map(data.shape, centre, amplitudes, phases)
    outer = _radius_for_area(radius_map[foreground], n_pixels) if radius is None else radius
    blob = foreground & (radius_map < outer)

    profile = _smoothstep((outer - radius_map) / max(_EDGE_FRACTION * outer, 1.0))
    amplitude = np.where(blob, profile * (1.0 + texture * _texture(data.shape, max(outer / 3, 1.0), blob, rng)), 0.0)
    values = data[foreground].astype(np.float64)
    low, high = np.percentile(values, [2, 98])
    scale = _first_positive(high - low, float(data.max()) - float(data.min()), float(np.abs(data).max()))
    delta = contrast * scale * amplitude / amplitude.max()
    return _apply_change(data, delta, blob)


# --------------------------------------------------------------------------- star artefact


def _star_profile(
    shape: tuple[int, int], centre: tuple[int, int], angles: np.ndarray, length: float, width: float
) -> np.ndarray:
    """Brightness in [0, 1] of line segments through ``centre``: 1 at the centre, fading to 0.

    Each segment has half-length ``length``, a linear fade along it and a Gaussian profile of
    standard deviation ``width`` across it (cut to zero beyond ``_STAR_TRUNCATION`` widths);
    overlapping segments combine by their maximum.
    """
    dy, dx = _offsets(shape, centre)
    profile = np.zeros(shape)
    for angle in angles:
        along = dx * np.cos(angle) + dy * np.sin(angle)
        across = dy * np.cos(angle) - dx * np.sin(angle)
        fade = np.clip(1.0 - np.abs(along) / length, 0.0, 1.0)
        cross = np.where(np.abs(across) <= _STAR_TRUNCATION * width, np.exp(-0.5 * (across / width) ** 2), 0.0)
        np.maximum(profile, fade * cross, out=profile)
    return profile


def insert_star_artifact(
    image: ArrayLike,
    *,
    foreground: ArrayLike | None = None,
    n_rays: int | None = None,
    length: float | None = None,
    intensity: float | None = None,
    width: float | None = None,
    seed: SeedLike = None,
) -> Anomaly:
    """Insert a star-shaped bright artefact: anti-aliased line segments crossing at one point.

    The centre is a random foreground pixel, preferably at least ``length / 2`` from the
    background. ``n_rays`` segments pass through it at roughly evenly spread random angles in
    ``[0, π)``, so the star has ``2 × n_rays`` arms. Each segment adds ``intensity`` at the
    centre, fading linearly to zero at its ends, with a Gaussian cross-profile of standard
    deviation ``width`` (cut to zero beyond 4 widths); overlapping segments combine by their
    maximum, so the peak added value is ``intensity``. The arms are not clipped to the
    foreground, like streak artefacts, and the result is not clipped to any intensity range.

    Parameters
    ----------
    image : array_like, shape (H, W)
        A finite, real-valued grey image (not bool or complex).
    foreground : numpy.ndarray of bool, shape (H, W), optional
        Where the centre may be; :func:`foreground_mask` of the image by default.
    n_rays : int, optional
        Number of segments through the centre (at least 1); random in 3–6 by default.
    length : float, optional
        Half-length of each segment in pixels; ``0.25 × min(H, W)`` by default.
    intensity : float, optional
        Peak brightness added, in image units (positive); by default half the image's range
        ``max - min`` (or of its largest magnitude, or 1, for a constant image).
    width : float, optional
        Standard deviation in pixels of the Gaussian cross-profile of each segment;
        ``max(0.5, min(H, W) / 128)`` by default (thin lines on small and large images).
    seed : None, int or numpy.random.Generator, optional
        Randomness; the same seed gives the same artefact.

    Returns
    -------
    Anomaly
        ``image``: a new array, float input keeps its dtype, integer input becomes ``float32``
        in the same units. ``mask``: the pixels brightened by more than
        :data:`STAR_MASK_FRACTION` (5 %) of ``intensity``. Pixels outside the mask are
        brightened by at most that fraction of ``intensity`` (plus floating-point rounding),
        and pixels farther than the segments' reach are bit-identical to the input.

    Raises
    ------
    TypeError
        If ``image`` is not a real numeric array, ``foreground`` is not boolean, ``n_rays`` is
        not an integer, another number argument is not a real number, or ``seed`` has the wrong
        type.
    ValueError
        If ``image`` is not 2-D, empty or not finite; ``foreground`` has another shape or is
        empty (no foreground); ``n_rays`` is below 1; ``length``, ``intensity`` or ``width`` is
        not positive; or the artefact is too faint to change any pixel.
    """
    data = _check_image(image)
    foreground = _check_foreground(foreground, data)
    if n_rays is not None:
        if isinstance(n_rays, (bool, np.bool_)) or not isinstance(n_rays, numbers.Integral):
            raise TypeError(f"n_rays must be an int, got {type(n_rays).__name__}")
        if n_rays < 1:
            raise ValueError(f"n_rays must be at least 1, got {n_rays}")
    length = 0.25 * min(data.shape) if length is None else _check_positive("length", length)
    if intensity is None:
        intensity = 0.5 * _first_positive(float(data.max()) - float(data.min()), float(np.abs(data).max()))
    else:
        intensity = _check_positive("intensity", intensity)
    width = max(0.5, min(data.shape) / 128) if width is None else _check_positive("width", width)
    rng = _rng(seed)

    n_rays = int(rng.integers(3, 7)) if n_rays is None else int(n_rays)
    spacing = np.pi / n_rays
    angles = rng.uniform(0.0, np.pi) + spacing * (np.arange(n_rays) + rng.uniform(-0.3, 0.3, size=n_rays))
    centre = _pick_centre(foreground, 0.5 * length, rng)
    profile = _star_profile(data.shape, centre, angles, length, width)
    changed = _apply_change(data, intensity * profile, profile > 0)
    return Anomaly(changed.image, changed.mask & (profile > STAR_MASK_FRACTION))


# --------------------------------------------------------------------------- dispatcher

_INSERTERS = {"lesion": insert_lesion, "star": insert_star_artifact}


def insert_anomaly(image: ArrayLike, kind: Literal["lesion", "star"], **kwargs: Any) -> Anomaly:
    """Insert an anomaly of the given kind.

    Parameters
    ----------
    image : array_like, shape (H, W)
        A finite, real-valued grey image.
    kind : {"lesion", "star"}
        ``"lesion"`` calls :func:`insert_lesion`, ``"star"`` calls :func:`insert_star_artifact`.
    **kwargs
        Keyword arguments of the chosen function (``seed``, ``foreground``, ...).

    Returns
    -------
    Anomaly
        The changed image and the anomaly's mask.

    Raises
    ------
    ValueError
        If ``kind`` is unknown; otherwise whatever the chosen function raises.
    """
    try:
        inserter = _INSERTERS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {sorted(_INSERTERS)}, got {kind!r}") from None
    return inserter(image, **kwargs)
