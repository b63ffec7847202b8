"""Between the user's image grid and the prior's: checks, resizing and intensity mapping.

Every detector scores on the prior's grid (its ``image_size``) and gives its image-space
outputs back on the input's: images go to the prior's grid by :func:`resize_to_grid` (linear,
anti-aliased; defined in :mod:`~napari_klip.core.data`, which training uses too), outputs come back by :func:`to_input_grid` (linear for maps, nearest neighbour
for labels and masks), pixel masks go to the prior's grid by :func:`mask_to_prior_grid`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .data import check_image_stack, resize_to_grid
from .errors import ImageDataError

if TYPE_CHECKING:  # pragma: no cover
    from .prior import DiffusionPrior


def check_image(image: Any, channels: int) -> np.ndarray:
    """One finite real image shaped ``(H, W)`` (or ``(H, W, C)`` for a C-channel prior), else ``ImageDataError``."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == channels and channels > 1:
        stack = check_image_stack(array[None], name="image")
    elif array.ndim == 2:
        stack = check_image_stack(array, name="image")
    else:
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ImageDataError(f"image: expected one image shaped {expected} for a {channels}-channel prior, got shape {array.shape}")
    return stack[0]


def check_stack(images: Any, channels: int) -> list[np.ndarray]:
    """The images of a ``(N, H, W)`` stack (``(N, H, W, C)`` for a C-channel prior), each checked by :func:`check_image`."""
    stack = np.asarray(images)
    if stack.ndim != (3 if channels == 1 else 4):
        shape = "(N, H, W)" if channels == 1 else f"(N, H, W, {channels})"
        raise ValueError(f"images: expected a stack shaped {shape} for a {channels}-channel prior, got shape {stack.shape}")
    return [check_image(image, channels) for image in stack]


#: Largest |value| in model units (the prior's intensity range is [-1, 1] there) an input may reach:
#: beyond it the image is in other units than the prior's, and sampling would overflow or score 0.
MAX_MODEL_MAGNITUDE = 1e3


def check_intensity_scale(image: np.ndarray, prior: "DiffusionPrior", what: str = "image") -> None:
    """Raise ``ImageDataError`` when ``image`` lies so far outside the prior's intensity range that scores are meaningless."""
    low, high = prior.metadata.intensity_range
    peak = float(np.max(np.abs(image.astype(np.float64) - (low + high) / 2))) if image.size else 0.0
    if not np.isfinite(peak) or 2.0 * peak / (high - low) > MAX_MODEL_MAGNITUDE:
        extreme = float(np.max(np.abs(image.astype(np.float64))))
        raise ImageDataError(
            f"{what}: values up to {extreme:.3g} are far outside the prior's intensity range [{low:g}, {high:g}] "
            f"(over {MAX_MODEL_MAGNITUDE:g} times its half-width from its centre); give the {what} in the prior's units "
            "(napari-klip info MODEL shows them) or let them be mapped (intensity 'auto', or --intensity-range LOW HIGH; "
            "docs/intensities.md)"
        )


def to_prior_grid(image: np.ndarray, prior: "DiffusionPrior") -> np.ndarray:
    """``(C, H_prior, W_prior)`` float32 in model units (``ImageDataError`` for values far outside the prior's range)."""
    check_intensity_scale(image, prior)
    data = image.astype(np.float32)
    data = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    return prior.to_model_range(resize_to_grid(data, prior.image_size).astype(np.float32))


def resize_record(input_hw: tuple[int, ...], prior_size: tuple[int, int]) -> dict[str, list[int]] | None:
    """``{"from": [H, W], "to": [h, w]}`` when a whole-image prior resizes an ``input_hw`` input, else ``None``.

    It goes into ``result.parameters["resized"]``; :func:`resize_note` words it for the user.
    """
    source, target = [int(s) for s in input_hw[:2]], [int(s) for s in prior_size]
    return None if source == target else {"from": source, "to": target}


def resize_note(record: dict[str, list[int]]) -> str:
    """The one line that tells the user an input was resized to the prior's grid."""
    (height, width), (h, w) = record["from"], record["to"]
    return (f"input {height}×{width} resized to the prior's {h}×{w} for scoring, outputs resized back to {height}×{width}; "
            "block sizes count input pixels")


def to_input_grid(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resize ``array`` to ``shape`` (spline ``order``: 1 linear, 0 nearest) unless it already has it."""
    from skimage.transform import resize

    if array.shape == shape:
        return array
    return resize(array, shape, order=order, anti_aliasing=False, preserve_range=True).astype(array.dtype)


def mask_to_prior_grid(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A pixel mask on the prior's grid (nearest neighbour), where the score maps live."""
    from skimage.transform import resize

    if mask.shape == tuple(size):
        return mask.astype(bool)
    return resize(mask.astype(np.float32), size, order=0, anti_aliasing=False) > 0.5
