"""From a KLIP energy trace to block score maps, heatmaps and image scores."""

from __future__ import annotations

import numpy as np

from ..options import DEFAULT_THRESHOLD, THRESHOLD_RULES, KlipConfig, check_window

#: The paper's score window as fractions of the sampling run: steps [65, 85) of 100.
DEFAULT_WINDOW_FRACTION = (0.65, 0.85)


def default_window(num_steps: int) -> tuple[int, int]:
    """The paper's window ``[65, 85)`` of 100 steps, scaled to ``num_steps``."""
    start = int(round(DEFAULT_WINDOW_FRACTION[0] * num_steps))
    stop = max(start + 1, int(round(DEFAULT_WINDOW_FRACTION[1] * num_steps)))
    return start, min(stop, num_steps)


def default_block_size(image_size: tuple[int, int]) -> int:
    """A block size giving about a 16 × 16 grid (the paper: block 32 at 512²), at least 1.

    The result divides both sides of the image.
    """
    height, width = image_size
    block = max(1, min(height, width) // 16)
    while height % block or width % block:
        block -= 1
    return block


def default_image_block_size(prior_size: tuple[int, int], image_shape: tuple[int, int]) -> int:
    """The default block side in image pixels for an ``image_shape`` input scored by a ``prior_size`` prior.

    :func:`default_block_size` of the prior's grid, scaled by the input's size over the prior's
    (the square root of the area ratio) and moved to the nearest side that divides both sides of
    the input (the smaller one on a tie). For an input of the prior's size it is
    :func:`default_block_size` itself.
    """
    height, width = (int(s) for s in image_shape)
    target = default_block_size(prior_size) * np.sqrt(height * width / (prior_size[0] * prior_size[1]))
    sides = [b for b in range(1, min(height, width) + 1) if height % b == 0 and width % b == 0]
    return min(sides, key=lambda b: (abs(b - target), b))


def resolve_map_settings(
    grid: tuple[int, int],
    input_hw: tuple[int, int],
    config: KlipConfig,
    block_size: int | None,
    window: tuple[int, int] | None,
    threshold: str,
) -> tuple[int, tuple[int, int]]:
    """The block size and window of a KLIP run, defaults filled in, checked before any sampling.

    ``None`` takes :func:`default_image_block_size` of the working ``grid`` for ``input_hw`` and
    :func:`default_window` of ``config.num_steps``; then a block size, window or threshold rule
    that scoring a trace of the run (``stop_after_step`` or ``num_steps`` steps on ``grid``) would
    reject raises here.

    Returns
    -------
    tuple
        ``(block_size, window)``.
    """
    block_size = default_image_block_size(grid, input_hw) if block_size is None else block_size
    window = default_window(config.num_steps) if window is None else window
    steps = config.stop_after_step or config.num_steps
    block_score_map(np.zeros((steps, *grid), np.float32), block_size, window, shape=input_hw)
    threshold_blocks(np.zeros(1), threshold)
    return block_size, window


def _check_window(window: tuple[int, int], steps_available: int) -> tuple[int, int]:
    start, stop = check_window(window)
    if not 0 <= start < stop <= steps_available:
        raise ValueError(
            f"window [{start}, {stop}) is not inside the {steps_available} recorded steps; "
            f"use 0 <= start < stop <= {steps_available}"
        )
    return start, stop


def block_score_map(
    energy: np.ndarray, block_size: int, window: tuple[int, int], shape: tuple[int, int] | None = None
) -> np.ndarray:
    """KLIP score of every non-overlapping block: mean energy over the window, summed over the block.

    Parameters
    ----------
    energy : numpy.ndarray
        ``(K, h, w)`` trace (per step and pixel, mean over samples, sum over channels).
    block_size : int
        Side ``b`` of the square blocks, in pixels of ``shape``; must divide both its sides.
    window : tuple of int
        Steps ``[start, stop)`` to average over.
    shape : tuple of int, optional
        ``(H, W)`` of the image the blocks are counted on (the input's, for a prior of another
        size); default the trace's ``(h, w)``. The window-mean energy is resized to it linearly
        and scaled by ``h·w / (H·W)``, so the energy of an area is the same on both grids and a
        block's score is the energy of the image area it covers.

    Returns
    -------
    numpy.ndarray
        ``(H / b, W / b)`` float64 block scores.
    """
    energy = np.asarray(energy)
    if energy.ndim != 3:
        raise ValueError(f"energy must be a (K, H, W) trace, got shape {energy.shape}")
    start, stop = _check_window(window, energy.shape[0])
    grid = tuple(energy.shape[1:])
    height, width = grid if shape is None else (int(shape[0]), int(shape[1]))
    if not isinstance(block_size, (int, np.integer)) or block_size < 1 or height % block_size or width % block_size:
        raise ValueError(f"block_size must be a positive integer dividing the image size {height}×{width}, got {block_size!r}")
    mean_energy = energy[start:stop].astype(np.float64).mean(axis=0)
    if (height, width) != grid:
        from ..grid import to_input_grid

        mean_energy = to_input_grid(mean_energy, (height, width), order=1) * (grid[0] * grid[1] / (height * width))
    rows, cols = height // block_size, width // block_size
    return mean_energy.reshape(rows, block_size, cols, block_size).sum(axis=(1, 3))


def heatmap_from_blocks(score_map: np.ndarray, block_size: int) -> np.ndarray:
    """Spread block scores over their pixels (an image-sized heatmap, float32)."""
    return np.kron(score_map, np.ones((block_size, block_size))).astype(np.float32)


def image_score(score_map: np.ndarray) -> float:
    """The whole-image score of the paper: the maximum block score."""
    return float(np.max(score_map))


def threshold_blocks(score_map: np.ndarray, rule: str = DEFAULT_THRESHOLD) -> tuple[np.ndarray, float]:
    """Flag blocks whose score exceeds a threshold.

    Parameters
    ----------
    score_map : numpy.ndarray
        Block scores.
    rule : str
        ``"median-multiple:K"`` (score > K × median of the map; the default, K = 3, flags
        nothing on a flat map), ``"percentile:P"`` (score > the P-th percentile of the map) or
        ``"value:V"`` (score > V, e.g. a value calibrated on a few ID images).

    Returns
    -------
    mask : numpy.ndarray of bool
        Flagged blocks.
    threshold : float
        The threshold used.
    """
    name, _, argument = str(rule).partition(":")
    if name not in THRESHOLD_RULES or not argument:
        raise ValueError(f"threshold rule must be one of {', '.join(r + ':NUMBER' for r in THRESHOLD_RULES)}, got {rule!r}")
    try:
        number = float(argument)
    except ValueError as error:
        raise ValueError(f"threshold rule {rule!r}: {argument!r} is not a number") from error
    if not np.isfinite(number):
        raise ValueError(f"threshold rule {rule!r}: the number must be finite")
    scores = np.asarray(score_map, dtype=np.float64)
    if name == "median-multiple":
        threshold = number * float(np.median(scores))
    elif name == "percentile":
        if not 0 <= number <= 100:
            raise ValueError(f"threshold rule {rule!r}: a percentile must be in [0, 100]")
        threshold = float(np.percentile(scores, number))
    else:
        threshold = number
    return scores > threshold, threshold
