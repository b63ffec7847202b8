"""Between the user's image grid and the prior's: checks, resizing and intensity mapping."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .core.prior import DiffusionPrior


def check_image(image: Any, channels: int) -> np.ndarray:
    """One finite real image shaped ``(H, W)`` (or ``(H, W, C)`` for a C-channel prior), else ``ImageDataError``."""
    from .core.data import ImageDataError, check_image_stack

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == channels and channels > 1:
        stack = check_image_stack(array[None], name="image")
    elif array.ndim == 2:
        stack = check_image_stack(array, name="image")
    else:
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ImageDataError(f"image: expected one image shaped {expected} for a {channels}-channel prior, got shape {array.shape}")
    return stack[0]


def to_prior_grid(image: np.ndarray, prior: "DiffusionPrior") -> np.ndarray:
    """``(C, H_prior, W_prior)`` float32 in model units."""
    from skimage.transform import resize

    data = image.astype(np.float32)
    data = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    if data.shape[-2:] != tuple(prior.image_size):
        data = resize(data, (data.shape[0], *prior.image_size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)
    return prior.to_model_range(data)


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
