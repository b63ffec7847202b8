"""From the user's intensities to the prior's: training statistics and the input mapping.

A prior is trained on images in some units (0–255 CT crops, uint16 microscopy, ...) and maps its
``intensity_range`` linearly to the network range ``[-1, 1]``. An input in other units (Hounsfield
units, a 12-bit camera, float images in ``[0, 1]``) must first be mapped to the prior's units; the
rule (``docs/intensities.md``):

* ``"none"`` — the input is taken as it is (the behaviour before this mapping existed).
* ``(LOW, HIGH)`` — the input value ``LOW`` maps to the low end of the prior's ``intensity_range``
  and ``HIGH`` to its high end, linearly.
* ``"auto"`` (the default) — the input is mapped only when it is clearly not in the prior's
  units: more than half of its pixels lie outside the prior's range, or its robust range (the
  1st–99th percentiles, :data:`~napari_klip.core.options.MAPPING_PERCENTILES`) reaches more than
  10 % of the range's width beyond either end, or spans less than 1 % of it. Then the input's
  1st and 99th percentiles map to the prior's training percentiles (recorded in its metadata at
  training time, :func:`training_statistics`), or to the ends of its ``intensity_range`` for
  priors trained before they were recorded. Otherwise it is taken as it is.

Whatever the mode, when more than half of the pixels lie outside the prior's range after the
mapping, the mapping carries a warning. A stack is mapped as one: one rule for all its images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ImageDataError
from .options import INTENSITY_MODES, MAPPING_PERCENTILES, TRAINING_PERCENTILES

#: Fraction of pixels outside the prior's range above which ``auto`` maps and every mode warns.
MOSTLY_OUTSIDE = 0.5
#: How far (fraction of the prior's range width) the robust range may reach beyond it in ``auto``.
OVERSHOOT = 0.1
#: Robust spans below this fraction of the prior's range width are "other units" in ``auto``.
TOO_NARROW = 0.01
#: At most this many pixels (evenly strided over the flattened data) enter percentiles and fractions,
#: so a stack of large images is summarised without a float64 copy of all of it.
MAX_SAMPLED_PIXELS = 10_000_000


def _pixel_values(images: Any) -> np.ndarray:
    """The data's values as float64, every pixel up to :data:`MAX_SAMPLED_PIXELS`, else an even stride of them."""
    flat = np.asarray(images).reshape(-1)
    step = max(1, -(-flat.size // MAX_SAMPLED_PIXELS))
    return flat[::step].astype(np.float64)


def training_statistics(images: np.ndarray) -> dict[str, Any]:
    """Intensity statistics of training images, as a prior's metadata records them.

    Parameters
    ----------
    images : numpy.ndarray
        The training images in their own units (any shape, finite values).

    Returns
    -------
    dict
        ``dtype``, ``min``, ``max``, ``mean``, ``std`` (of all pixels) and ``percentiles``
        (``{"0.5": value, ...}`` at :data:`~napari_klip.core.options.TRAINING_PERCENTILES`, of at
        most :data:`MAX_SAMPLED_PIXELS` evenly strided pixels), all plain floats.
    """
    array = np.asarray(images)
    percentiles = np.percentile(_pixel_values(array), TRAINING_PERCENTILES)
    return {
        "dtype": str(array.dtype),
        "min": float(np.min(array)),
        "max": float(np.max(array)),
        "mean": float(np.mean(array, dtype=np.float64)),
        "std": float(np.std(array, dtype=np.float64)),
        "percentiles": {f"{p:g}": float(v) for p, v in zip(TRAINING_PERCENTILES, percentiles)},
    }


def check_intensity(intensity: Any) -> str | tuple[float, float]:
    """``"auto"``, ``"none"`` or a checked ``(LOW, HIGH)`` (finite, ``LOW < HIGH``); else ``ValueError``."""
    if isinstance(intensity, str):
        if intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)} or (LOW, HIGH), got {intensity!r}")
        return intensity
    try:
        low, high = (float(value) for value in intensity)
    except (TypeError, ValueError):
        raise ValueError(f"intensity must be one of {', '.join(INTENSITY_MODES)} or (LOW, HIGH), got {intensity!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"intensity range must be two finite numbers LOW < HIGH, got ({low:g}, {high:g})")
    return (low, high)


@dataclass(frozen=True)
class IntensityMapping:
    """A linear map from the input's intensities to the prior's, and back.

    Attributes
    ----------
    mode : str
        ``"auto"``, ``"none"`` or ``"range"`` (an explicit ``(LOW, HIGH)``).
    source, target : tuple of float or None
        Input values ``source`` map to prior values ``target``; ``None`` when the input is taken as it is.
    prior_range : tuple of float
        The prior's ``intensity_range``.
    reason : str
        Why ``auto`` mapped (or did not).
    outside_fraction : float
        Fraction of the input's pixels outside ``prior_range`` after the mapping.
    """

    mode: str
    source: tuple[float, float] | None
    target: tuple[float, float] | None
    prior_range: tuple[float, float]
    reason: str = ""
    outside_fraction: float = 0.0

    @property
    def mapped(self) -> bool:
        """Whether input values change on the way to the prior."""
        return self.source is not None

    @property
    def gain(self) -> float:
        """Prior units per input unit."""
        if self.source is None or self.target is None:
            return 1.0
        return (self.target[1] - self.target[0]) / (self.source[1] - self.source[0])

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``images`` in the prior's units (a new float32 array; the input is not modified)."""
        data = np.asarray(images).astype(np.float32)
        if self.source is None or self.target is None:
            return data
        return ((data.astype(np.float64) - self.source[0]) * self.gain + self.target[0]).astype(np.float32)

    def invert(self, images: np.ndarray) -> np.ndarray:
        """Prior-unit ``images`` back in the input's units (float32)."""
        data = np.asarray(images).astype(np.float32)
        if self.source is None or self.target is None:
            return data
        return ((data.astype(np.float64) - self.target[0]) / self.gain + self.source[0]).astype(np.float32)

    def invert_spread(self, spread: np.ndarray) -> np.ndarray:
        """A standard deviation in prior units, in the input's units (float32)."""
        return (np.asarray(spread, dtype=np.float64) / self.gain).astype(np.float32)

    @property
    def warning(self) -> str | None:
        """The warning when most pixels lie outside the prior's range after the mapping."""
        if self.outside_fraction <= MOSTLY_OUTSIDE:
            return None
        low, high = self.prior_range
        return (f"{100 * self.outside_fraction:.0f}% of the pixels lie outside the prior's intensity range [{low:g}, {high:g}] "
                f"after intensity mapping '{self.mode}'; scores are unreliable — give the input values that match the "
                "prior's range (--intensity-range LOW HIGH, or intensity=(LOW, HIGH))")

    def describe(self) -> dict[str, Any]:
        """What ``result.parameters["intensity"]`` records."""
        record: dict[str, Any] = {"mode": self.mode, "mapped": self.mapped, "prior_range": list(self.prior_range)}
        if self.source is not None and self.target is not None:
            record.update(source=list(self.source), target=list(self.target), gain=self.gain)
        if self.reason:
            record["reason"] = self.reason
        record["outside_fraction"] = round(self.outside_fraction, 6)
        if self.warning:
            record["warning"] = self.warning
        return record

    def notes(self) -> list[str]:
        """The one-line message for the user when intensities were mapped (the warning is :attr:`warning`)."""
        if self.source is None or self.target is None:
            return []
        return [f"intensities mapped ({self.mode}): input [{self.source[0]:.4g}, {self.source[1]:.4g}] -> prior "
                f"[{self.target[0]:.4g}, {self.target[1]:.4g}]" + (f"; {self.reason}" if self.reason else "")]


def prior_targets(metadata: Any) -> tuple[tuple[float, float], str]:
    """The prior values ``auto`` maps the input's robust percentiles to, and where they come from.

    The prior's training percentiles at :data:`~napari_klip.core.options.MAPPING_PERCENTILES`
    when its metadata records them (and they differ), else the ends of its ``intensity_range``.
    """
    stats = getattr(metadata, "intensity_stats", None) or {}
    recorded = stats.get("percentiles", {}) if isinstance(stats, dict) else {}
    keys = [f"{p:g}" for p in MAPPING_PERCENTILES]
    try:
        low, high = (float(recorded[key]) for key in keys)
    except (KeyError, TypeError, ValueError):  # not recorded (older priors) or not numbers
        low = high = float("nan")
    if np.isfinite(low) and np.isfinite(high) and high > low:
        return (low, high), "the prior's training percentiles"
    return tuple(float(v) for v in metadata.intensity_range), "the prior's intensity_range (no training statistics recorded)"


_PERCENTILE_NAMES = "/".join(f"{p:g}" for p in MAPPING_PERCENTILES)


def _outside(values: np.ndarray, prior_range: tuple[float, float]) -> float:
    low, high = prior_range
    return float(np.mean((values < low) | (values > high))) if values.size else 0.0


def _auto_reason(values: np.ndarray, robust: tuple[float, float], prior_range: tuple[float, float]) -> str:
    """Why the input is clearly not in the prior's units ('' when it may well be)."""
    low, high = prior_range
    width = high - low
    outside = _outside(values, prior_range)
    if outside > MOSTLY_OUTSIDE:
        return f"{100 * outside:.0f}% of the input's pixels lie outside the prior's range [{low:g}, {high:g}]"
    if robust[0] < low - OVERSHOOT * width or robust[1] > high + OVERSHOOT * width:
        return f"the input's percentiles {_PERCENTILE_NAMES} [{robust[0]:.4g}, {robust[1]:.4g}] reach well beyond the prior's range [{low:g}, {high:g}]"
    if 0 < robust[1] - robust[0] < TOO_NARROW * width:
        return f"the input's percentiles {_PERCENTILE_NAMES} [{robust[0]:.4g}, {robust[1]:.4g}] span under 1% of the prior's range [{low:g}, {high:g}]"
    return ""


def resolve_intensity(images: Any, metadata: Any, intensity: "str | tuple[float, float] | IntensityMapping" = "auto") -> IntensityMapping:
    """The mapping of ``images`` (one image or a stack, in the input's units) to a prior's units.

    Parameters
    ----------
    images : array-like
        The input(s); all pixels together decide the mapping (at most :data:`MAX_SAMPLED_PIXELS`
        of them, evenly strided, for percentiles and fractions).
    metadata : PriorMetadata
        The prior's metadata (``intensity_range``, optional ``intensity_stats``).
    intensity : {"auto", "none"}, tuple of float or IntensityMapping
        The rule (module docstring); a ready mapping is returned as it is.

    Returns
    -------
    IntensityMapping
        A ``UserWarning`` (:attr:`IntensityMapping.warning`) is issued when most pixels lie
        outside the prior's range after the mapping.

    Raises
    ------
    ImageDataError
        For NaN or infinite values, or when ``auto`` must map a constant image (no spread to map).
    ValueError
        For an unknown mode or an invalid ``(LOW, HIGH)``.
    """
    if isinstance(intensity, IntensityMapping):
        return intensity
    mapping = _resolve(images, metadata, check_intensity(intensity))
    if mapping.warning:
        import warnings

        warnings.warn(mapping.warning, UserWarning, stacklevel=3)
    return mapping


def _resolve(images: Any, metadata: Any, rule: str | tuple[float, float]) -> IntensityMapping:
    """:func:`resolve_intensity` for a checked rule, without the warning."""
    array = np.asarray(images)
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.isfinite(array)):
        raise ImageDataError(f"image: {int(np.count_nonzero(~np.isfinite(array)))} value(s) are NaN or infinite")
    values = _pixel_values(array)
    prior_range = tuple(float(v) for v in metadata.intensity_range)
    if rule == "none":
        return IntensityMapping("none", None, None, prior_range, outside_fraction=_outside(values, prior_range))
    if isinstance(rule, tuple):
        mapping = IntensityMapping("range", rule, prior_range, prior_range, reason="given range")
        return _with_outside(mapping, values)
    robust = tuple(float(v) for v in np.percentile(values, MAPPING_PERCENTILES)) if values.size else (0.0, 0.0)
    reason = _auto_reason(values, robust, prior_range)
    if not reason:
        return IntensityMapping("auto", None, None, prior_range, reason="input already in the prior's units",
                                outside_fraction=_outside(values, prior_range))
    if not robust[1] > robust[0]:
        raise ImageDataError(
            f"image: {reason}, and its percentiles {_PERCENTILE_NAMES} are equal ({robust[0]:g}): there is no spread to map "
            "automatically — give the range explicitly (--intensity-range LOW HIGH, or intensity=(LOW, HIGH))"
        )
    target, where = prior_targets(metadata)
    mapping = IntensityMapping("auto", robust, target, prior_range, reason=f"{reason}; its percentiles {_PERCENTILE_NAMES} mapped to {where}")
    return _with_outside(mapping, values)


def _with_outside(mapping: IntensityMapping, values: np.ndarray) -> IntensityMapping:
    from dataclasses import replace

    return replace(mapping, outside_fraction=_outside(mapping.apply(values), mapping.prior_range))
