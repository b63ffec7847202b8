"""Patch priors: random training crops, and running a patch network on a whole image by tiling.

A *patch prior* (``napari-klip train --patch-size P``) is a diffusion network trained on random
``P×P`` crops of larger images. KLIP and LMD run it on an image at its native size: at every
reverse step the image is padded and cut into ``P×P`` patches on a grid whose offset is drawn at
random for that step (PaDIS, Hu et al. 2024), so that the seams between patches move from step to
step and no pixel is always at a patch border. Each pixel lies in exactly one patch per step; the
patches go through the network in batches of at most ``batch_size`` (the memory budget) and the
noise predictions are put back in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .options import DEFAULT_PATCH_BATCH_PIXELS, TILINGS


def random_patches(images: Any, size: int, generator: Any) -> Any:
    """Crop one random ``size × size`` patch from each image of a batch.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` with ``H, W >= size``; not modified.
    size : int
        Patch side.
    generator : torch.Generator
        Source of the crop positions (one independent position per image).

    Returns
    -------
    torch.Tensor
        ``(B, C, size, size)``.
    """
    import torch

    count, _, height, width = images.shape
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}² patches from {height}×{width} images")
    tops = torch.randint(0, height - size + 1, (count,), device=images.device, generator=generator).tolist()
    lefts = torch.randint(0, width - size + 1, (count,), device=images.device, generator=generator).tolist()
    return torch.stack([image[:, top : top + size, left : left + size] for image, top, left in zip(images, tops, lefts, strict=True)])


def working_grid(prior: Any, input_hw: tuple[int, int]) -> tuple[int, int]:
    """The grid a detector samples on: the input's ``(H, W)`` for a patch prior, else the prior's ``image_size``.

    Parameters
    ----------
    prior : DiffusionPrior
    input_hw : tuple of int
        Height and width of the input image.

    Returns
    -------
    tuple of int
    """
    if getattr(prior.metadata, "patch_size", None) is not None:
        return (int(input_hw[0]), int(input_hw[1]))
    return tuple(prior.image_size)


def patch_batch_for(patch_size: int, budget_pixels: int = DEFAULT_PATCH_BATCH_PIXELS) -> int:
    """Patches per network call that keep one call at ``budget_pixels`` input pixels (at least 1)."""
    return max(1, int(budget_pixels) // (int(patch_size) ** 2))


def _pad(images: Any, top: int, bottom: int, left: int, right: int) -> Any:
    """Reflect-pad ``(B, C, H, W)`` (replicate where the image is too small to reflect that far)."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    mode = "reflect" if max(top, bottom) < height and max(left, right) < width else "replicate"
    return F.pad(images, (left, right, top, bottom), mode=mode)


def tile_layout(size: int, patch: int, tiling: str, offset: int = 0) -> tuple[int, int, int, int]:
    """How one image side is padded and cut: ``(pad_before, pad_after, stride, tiles)``.

    ``random-shift``: non-overlapping tiles (stride ``patch``) whose grid starts ``offset`` pixels
    before the image (``0 <= offset < patch``); always ``ceil(size / patch) + 1`` tiles, so every
    step costs the same. ``overlap``: tiles at stride ``patch / 2`` starting ``patch / 2`` before
    the image, so every image pixel lies in exactly two tiles per side.
    """
    if tiling == "random-shift":
        if not 0 <= offset < patch:
            raise ValueError(f"offset must be in [0, {patch}), got {offset}")
        tiles = -(-size // patch) + 1
        return offset, tiles * patch - size - offset, patch, tiles
    if tiling == "overlap":
        if patch % 2:
            raise ValueError(f"overlapping tiles need an even patch size, got {patch}")
        stride = patch // 2
        tiles = -(-size // stride) + 1
        return stride, (tiles + 1) * stride - size - stride, stride, tiles
    raise ValueError(f"tiling must be one of {', '.join(TILINGS)}, got {tiling!r}")


def blend_window(patch: int, device: Any = None) -> Any:
    """``(patch, patch)`` separable ``sin²`` window; its copies at stride ``patch / 2`` sum to one."""
    import math

    import torch

    ramp = torch.sin(math.pi * (torch.arange(patch, dtype=torch.float32, device=device) + 0.5) / patch) ** 2
    return ramp[:, None] * ramp[None, :]


class TiledPrior:
    """A patch prior seen as a prior of images of ``grid`` size: its noise prediction is tiled.

    Everything but :attr:`image_size` and :meth:`predict_noise` is the wrapped prior's, so the
    samplers (KLIP, LMD inpainting) run on it unchanged. Every :meth:`predict_noise` call is one
    reverse step: the ``(B, C, H, W)`` state is padded, cut into tiles (:func:`tile_layout`; for
    ``random-shift`` a new grid offset is drawn from ``seed``'s generator at every call), the
    tiles of all ``B`` images go through the network ``patch_batch`` at a time, and the
    predictions are put back (``overlap``: blended with :func:`blend_window`).

    Parameters
    ----------
    prior : DiffusionPrior
        A patch prior (``metadata.patch_size`` set).
    grid : tuple of int
        ``(H, W)`` of the images it will see.
    tiling : {"random-shift", "overlap"}
    patch_batch : int, optional
        Patches per network call (the memory budget); default :func:`patch_batch_for`.
    seed : int
        Seed of the grid offsets.
    on_batch : callable, optional
        Called with the number of patches after every network call (progress over tiles).
    """

    def __init__(self, prior: Any, grid: tuple[int, int], tiling: str = TILINGS[0], patch_batch: int | None = None,
                 seed: int = 0, on_batch: Callable[[int], None] | None = None):
        import numpy as np

        patch = prior.metadata.patch_size
        if patch is None:
            raise ValueError("TiledPrior needs a patch prior (metadata.patch_size is not set)")
        if patch_batch is not None and (isinstance(patch_batch, bool) or not isinstance(patch_batch, int) or patch_batch < 1):
            raise ValueError(f"patch_batch must be an integer >= 1, got {patch_batch!r}")
        tile_layout(1, patch, tiling)  # rejects an unknown tiling or an odd overlap patch
        self.prior = prior
        self.patch_size = int(patch)
        self.grid = (int(grid[0]), int(grid[1]))
        self.tiling = tiling
        self.patch_batch = patch_batch or patch_batch_for(patch)
        self.on_batch = on_batch
        self.network_batches = 0
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.prior, name)

    @property
    def image_size(self) -> tuple[int, int]:
        """The working grid (the input's size), not the patch size."""
        return self.grid

    def tiles_per_image(self) -> int:
        """Tiles one image is cut into at every step (the same at every step)."""
        rows = tile_layout(self.grid[0], self.patch_size, self.tiling)[3]
        cols = tile_layout(self.grid[1], self.patch_size, self.tiling)[3]
        return rows * cols

    def _offsets(self) -> tuple[int, int]:
        if self.tiling != "random-shift":
            return 0, 0
        top, left = self._rng.integers(0, self.patch_size, size=2)
        return int(top), int(left)

    def predict_noise(self, noisy: Any, timesteps: Any) -> Any:
        """``ε_θ`` for ``(B, C, H, W)`` states on the working grid, by tiles (see the class notes)."""
        import torch

        count, channels, height, width = noisy.shape
        if (height, width) != self.grid:
            raise ValueError(f"expected states on the {self.grid} grid, got {height}×{width}")
        offset_top, offset_left = self._offsets()
        top, bottom, stride, rows = tile_layout(height, self.patch_size, self.tiling, offset_top)
        left, right, _, cols = tile_layout(width, self.patch_size, self.tiling, offset_left)
        padded = _pad(noisy, top, bottom, left, right)
        patch = self.patch_size
        tiles = padded.unfold(2, patch, stride).unfold(3, patch, stride)  # (B, C, rows, cols, P, P)
        tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(count * rows * cols, channels, patch, patch)
        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.tensor(timesteps, device=noisy.device)
        per_tile = timesteps.expand(count) if timesteps.ndim == 0 else timesteps
        per_tile = per_tile.repeat_interleave(rows * cols)
        predicted = []
        for begin in range(0, tiles.shape[0], self.patch_batch):
            chunk = tiles[begin : begin + self.patch_batch]
            predicted.append(self.prior.predict_noise(chunk, per_tile[begin : begin + self.patch_batch]))
            self.network_batches += 1
            if self.on_batch is not None:
                self.on_batch(chunk.shape[0])
        predicted = torch.cat(predicted).reshape(count, rows, cols, channels, patch, patch)
        if self.tiling == "random-shift":
            whole = predicted.permute(0, 3, 1, 4, 2, 5).reshape(count, channels, rows * patch, cols * patch)
        else:
            whole = _blend(predicted, blend_window(patch, noisy.device), padded.shape[-2:], stride)
        return whole[..., top : top + height, left : left + width]


def _blend(predicted: Any, window: Any, padded_hw: tuple[int, int], stride: int) -> Any:
    """Sum window-weighted ``(B, rows, cols, C, P, P)`` tiles at ``stride`` into ``(B, C, *padded_hw)``."""
    import torch.nn.functional as F

    count, rows, cols, channels, patch, _ = predicted.shape
    weighted = predicted * window
    columns = weighted.permute(0, 3, 4, 5, 1, 2).reshape(count, channels * patch * patch, rows * cols)
    return F.fold(columns, output_size=tuple(padded_hw), kernel_size=patch, stride=stride)


def for_grid(prior: Any, input_hw: tuple[int, int], *, tiling: str = TILINGS[0], patch_batch: int | None = None,
             seed: int = 0) -> Any:
    """The prior a detector samples with for an input of ``input_hw``.

    A whole-image prior is returned as it is (the input is resized to its grid); a patch prior is
    wrapped in a :class:`TiledPrior` on the input's own grid (:func:`working_grid`).
    """
    if getattr(prior.metadata, "patch_size", None) is None:
        return prior
    return TiledPrior(prior, working_grid(prior, input_hw), tiling=tiling, patch_batch=patch_batch, seed=seed)


def tile_progress(prior: Any, images: int, steps: int, progress: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """Progress over steps × tiles for a :class:`TiledPrior` sampling ``images`` states for ``steps`` steps.

    Sets ``prior.on_batch`` to report after every network call and returns the callback to give
    the sampler, which reports at step ends in the same unit (patches evaluated, of
    ``steps × tiles × images``). For any other prior ``progress`` is returned unchanged.
    """
    if progress is None or not isinstance(prior, TiledPrior):
        return progress
    import time

    from .progress import Progress

    per_step = prior.tiles_per_image() * images
    total = steps * per_step
    start = time.perf_counter()
    done = [0]

    def on_batch(patches: int) -> None:
        done[0] += patches
        progress(Progress(min(done[0], total), total, time.perf_counter() - start))

    def on_step(update: Any) -> None:
        done[0] = update.step * per_step
        progress(Progress(done[0], update.total * per_step, update.elapsed_s))

    prior.on_batch = on_batch
    return on_step


def tiling_parameters(prior: Any) -> dict[str, Any]:
    """What a result records about how a patch prior was run (empty for a whole-image prior)."""
    if not isinstance(prior, TiledPrior):
        return {}
    return {
        "patch_prior": {
            "patch_size": prior.patch_size,
            "working_grid": list(prior.grid),
            "tiling": prior.tiling,
            "tiles_per_image_per_step": prior.tiles_per_image(),
            "patch_batch": prior.patch_batch,
            "network_batches": prior.network_batches,
        }
    }


def images_per_call(prior: Any, rows_per_image: int, count: int) -> int:
    """``batch_images="auto"`` for a :class:`TiledPrior`: the images whose tiles fill one network call.

    A patch prior's memory is bounded by its patch budget (``patch_batch`` tiles per call) however
    many images a batch holds, so ``auto`` takes as many images as one call's tiles need —
    ``patch_batch // (rows_per_image × tiles_per_image)`` — at least 1 and at most ``count``.

    Parameters
    ----------
    prior : TiledPrior
    rows_per_image : int
        States per image (KLIP samples, LMD reconstructions).
    count : int
        Images to score.

    Returns
    -------
    int
    """
    per_image = max(1, int(rows_per_image)) * prior.tiles_per_image()
    return max(1, min(int(count), prior.patch_batch // per_image))
