"""Masks for the LMD "lift" step: which pixels each reconstruction inpaints.

Every function returns a boolean array ``(count, H, W)`` with ``True`` on the pixels to
*inpaint* (hidden from the prior) and ``False`` on the known pixels kept from the image.
"""

from __future__ import annotations

import numpy as np

from ..options import MASK_KINDS, LmdConfig, check_choice, check_mask_grid


def _expand(patch_pattern: np.ndarray, patch_shape: tuple[int, int]) -> np.ndarray:
    """Blow a ``(count, grid, grid)`` patch pattern up to pixels."""
    return np.repeat(np.repeat(patch_pattern, patch_shape[0], axis=-2), patch_shape[1], axis=-1)


def checkerboard_masks(image_size: tuple[int, int], count: int, grid: int = 8, alternate: bool = True) -> np.ndarray:
    """Chessboard masks over a ``grid × grid`` split of the image (half of the patches hidden).

    Parameters
    ----------
    image_size : tuple of int
        ``(H, W)``; both divisible by ``grid``.
    count : int
        Number of masks (one per reconstruction).
    grid : int
        Patches per side (the LMD paper's default is 8).
    alternate : bool
        Flip hidden and known patches between successive masks (the paper's "alternating
        checkerboard": with an even count, every pixel is inpainted in exactly half of the
        reconstructions). ``False`` repeats the first mask ("fixed checkerboard").

    Returns
    -------
    numpy.ndarray
        ``(count, H, W)`` bool, ``True`` = inpainted.
    """
    patch_shape = check_mask_grid(grid, image_size)
    rows, cols = np.indices((grid, grid))
    parity = (rows + cols) % 2 == 0
    flips = (np.arange(count) % 2 == 1) if alternate else np.zeros(count, bool)
    pattern = parity[None] ^ flips[:, None, None]
    return _expand(pattern, patch_shape)


def center_masks(image_size: tuple[int, int], count: int, area_fraction: float = 0.5) -> np.ndarray:
    """A centred rectangle hiding ``area_fraction`` of the image, the same for every reconstruction.

    The rectangle has the image's aspect ratio and sides ``round(sqrt(area_fraction) · side)``,
    centred (an odd leftover pixel goes to the bottom/right margin).
    """
    if not 0.0 < area_fraction < 1.0:
        raise ValueError(f"area_fraction must be in (0, 1), got {area_fraction}")
    height, width = image_size
    box_h = max(1, int(round(np.sqrt(area_fraction) * height)))
    box_w = max(1, int(round(np.sqrt(area_fraction) * width)))
    top, left = (height - box_h) // 2, (width - box_w) // 2
    mask = np.zeros((count, height, width), bool)
    mask[:, top : top + box_h, left : left + box_w] = True
    return mask


def random_patch_masks(image_size: tuple[int, int], count: int, grid: int = 8, seed: int | None = 0) -> np.ndarray:
    """SimMIM-style masks: a random half of the ``grid × grid`` patches, drawn anew per reconstruction.

    Exactly ``grid² // 2`` patches are hidden in each mask; ``seed`` fixes the draw.
    """
    patch_shape = check_mask_grid(grid, image_size)
    rng = np.random.default_rng(seed)
    hidden = grid * grid // 2
    pattern = np.zeros((count, grid * grid), bool)
    for index in range(count):
        pattern[index, rng.permutation(grid * grid)[:hidden]] = True
    return _expand(pattern.reshape(count, grid, grid), patch_shape)


def make_masks(kind: str, image_size: tuple[int, int], count: int, grid: int = 8, seed: int | None = 0) -> np.ndarray:
    """Masks of one of :data:`MASK_KINDS` for ``count`` reconstructions.

    Parameters
    ----------
    kind : {"alternating-checkerboard", "checkerboard", "center", "random-patches"}
        ``checkerboard`` is the fixed (non-alternating) chessboard; ``center`` a centred
        rectangle over half the area.
    image_size : tuple of int
        ``(H, W)``.
    count : int
        Number of masks, >= 1.
    grid : int
        Patches per side for the patch-based kinds.
    seed : int, optional
        Seed of ``random-patches`` (the other kinds are deterministic).

    Returns
    -------
    numpy.ndarray
        ``(count, H, W)`` bool, ``True`` = inpainted.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    if kind == "alternating-checkerboard":
        return checkerboard_masks(image_size, count, grid, alternate=True)
    if kind == "checkerboard":
        return checkerboard_masks(image_size, count, grid, alternate=False)
    if kind == "center":
        return center_masks(image_size, count)
    check_choice("mask kind", kind, MASK_KINDS)
    return random_patch_masks(image_size, count, grid, seed)


def lift_masks(config: LmdConfig, image_size: tuple[int, int]) -> np.ndarray:
    """The ``(R, H, W)`` masks a config uses (``True`` = inpainted); the ``diffuse`` lift hides every pixel."""
    if config.lift == "diffuse":
        return np.ones((config.num_reconstructions, *image_size), bool)
    return make_masks(config.mask, image_size, config.num_reconstructions, grid=config.mask_grid, seed=config.seed)
