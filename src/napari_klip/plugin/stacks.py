"""Stacks of 2-D slices: which slices of an nD layer to process, and per-slice results kept together.

Pure numpy (no napari, no Qt): the widgets use it to score "the current slice" or "all slices"
of a 3-D stack or time series; :func:`napari_klip.api.layers.stack_parts` gives every output the
input's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SLICE_MODES = ("current slice", "all slices")


def stack_shape_of(shape: tuple[int, ...], rgb: bool = False) -> tuple[int, ...]:
    """The stack axes of a layer's data: all but the two image axes (and the colour axis when ``rgb``)."""
    image_axes = 3 if rgb else 2
    if len(shape) < image_axes:
        raise ValueError(f"expected at least {image_axes} axes (H, W{', C' if rgb else ''}), got shape {tuple(shape)}")
    return tuple(int(s) for s in shape[: len(shape) - image_axes])


def clip_index(position: Any, stack_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Round a data-space position over the stack axes to a valid slice index."""
    values = np.asarray(position, dtype=float)[: len(stack_shape)]
    return tuple(int(np.clip(np.round(v), 0, n - 1)) for v, n in zip(values, stack_shape))


@dataclass(frozen=True)
class SliceSelection:
    """The slices of a stack to process.

    Attributes
    ----------
    stack_shape : tuple of int
        ``()`` for a single 2-D image.
    indices : tuple of tuple of int
        Stack positions in C order.
    """

    stack_shape: tuple[int, ...]
    indices: tuple[tuple[int, ...], ...]

    @classmethod
    def choose(cls, stack_shape: tuple[int, ...], mode: str, current: tuple[int, ...] = ()) -> "SliceSelection":
        """All slices, or only ``current``, of a stack (a 2-D image has one slice either way)."""
        if mode not in SLICE_MODES:
            raise ValueError(f"slice mode must be one of {', '.join(SLICE_MODES)}, got {mode!r}")
        if mode == "all slices" or not stack_shape:
            return cls(tuple(stack_shape), tuple(np.ndindex(*stack_shape)) if stack_shape else ((),))
        return cls(tuple(stack_shape), (clip_index(current, stack_shape),))

    def flat_index(self, index: tuple[int, ...]) -> int:
        """Position of ``index`` in C order over the stack."""
        return int(np.ravel_multi_index(index, self.stack_shape)) if self.stack_shape else 0

    def seed_for(self, seed: int, index: tuple[int, ...]) -> int:
        """Slice ``i`` (C order) uses ``seed + i``, as the command line does."""
        return int(seed) + self.flat_index(index)

    def read(self, data: Any) -> list[np.ndarray]:
        """The selected slices of ``data`` as new numpy arrays (the layer's data is not kept)."""
        return [np.array(data[index], copy=True) for index in self.indices]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class ResultStack:
    """Per-slice results of one input, kept across runs so that single-slice runs add up.

    Attributes
    ----------
    key : object
        What the results belong to (input name, shape, …); storing under another key starts over.
    stack_shape : tuple of int
    results : list
        One entry per slice in C order; ``None`` where nothing was computed yet.
    """

    key: Any = None
    stack_shape: tuple[int, ...] = ()
    results: list[Any] = field(default_factory=list)

    def store(self, key: Any, selection: SliceSelection, results: list[Any]) -> None:
        """Put ``results`` (one per selected slice) in place, starting over if ``key`` changed."""
        if key != self.key or selection.stack_shape != self.stack_shape:
            self.key, self.stack_shape = key, selection.stack_shape
            self.results = [None] * int(np.prod(selection.stack_shape, dtype=np.int64))
        for index, result in zip(selection.indices, results, strict=True):
            self.results[selection.flat_index(index)] = result

    def map(self, function: Any, only: Any = None) -> None:
        """Replace stored results ``r`` by ``function(r)``: all, or those at the flat indices ``only``.

        All replacements are computed before any is stored, so an exception changes nothing.
        """
        chosen = range(len(self.results)) if only is None else set(only)
        self.results = [function(r) if r is not None and i in chosen else r for i, r in enumerate(self.results)]

    def computed(self) -> list[Any]:
        """The results that exist."""
        return [r for r in self.results if r is not None]

    def computed_indices(self) -> list[int]:
        """Flat (C-order) indices of the slices that hold a result."""
        return [i for i, r in enumerate(self.results) if r is not None]

    def stack_index(self, flat: int) -> tuple[int, ...]:
        """The stack position of flat index ``flat``."""
        return tuple(int(i) for i in np.unravel_index(flat, self.stack_shape)) if self.stack_shape else ()

    def clear(self) -> None:
        """Forget everything."""
        self.key, self.stack_shape, self.results = None, (), []
