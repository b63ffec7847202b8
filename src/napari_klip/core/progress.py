"""Long computations are generators that yield a :class:`Progress` after every step.

:func:`drive` runs one to its end, reporting every update and honouring a cancel request by
closing the generator (its own clean-up runs, e.g. training saves a checkpoint) and raising
:class:`~napari_klip.core.errors.Cancelled`. KLIP sampling, LMD reconstruction, unconditional
sampling and training all report the same record (training adds its loss).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

from .errors import Cancelled

Update = TypeVar("Update")
Result = TypeVar("Result")

#: A progress callback.
ProgressCallback = Callable[["Progress"], None]
#: A cancel check, polled after every step.
ShouldCancel = Callable[[], bool]


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` steps done after ``elapsed_s`` seconds."""

    step: int
    total: int
    elapsed_s: float

    @property
    def total_steps(self) -> int:
        """``total`` under its older name."""
        return self.total


def drive(
    steps: Generator[Update, None, Result],
    progress: Callable[[Update], None] | None = None,
    should_cancel: ShouldCancel | None = None,
) -> Result:
    """Run a generator to its end, calling ``progress`` with every update it yields.

    Parameters
    ----------
    steps : generator
        Yields progress updates and returns the result.
    progress : callable, optional
        Called with each update.
    should_cancel : callable, optional
        Polled after each update; when it returns true the generator is closed (its own
        clean-up runs) and :class:`~napari_klip.core.errors.Cancelled` is raised.

    Returns
    -------
    object
        The generator's return value.

    Raises
    ------
    Cancelled
        When ``should_cancel`` asked to stop; ``last_update`` holds the last update.
    """
    last_update = None
    while True:
        try:
            last_update = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress is not None:
            progress(last_update)
        if should_cancel is not None and should_cancel():
            steps.close()
            step = getattr(last_update, "step", None)
            raise Cancelled("cancelled" if step is None else f"cancelled after step {step}", last_update)


def stack_progress(
    progress: ProgressCallback | None, begin: int, images: int, count: int, *, steps_cover_the_batch: bool
) -> ProgressCallback | None:
    """Report the progress of one batch of a stack as progress over the whole stack.

    Parameters
    ----------
    progress : callable or None
        The stack's callback (``None``: nothing is reported, ``None`` is returned).
    begin, images : int
        The batch holds images ``begin .. begin + images - 1`` of the stack.
    count : int
        Images in the stack.
    steps_cover_the_batch : bool
        True when each of the batch's updates counts reverse steps, each of which advances every
        image of the batch (a whole-image prior); false when the updates already count work over
        the whole batch (patches evaluated, for a patch prior).

    Returns
    -------
    callable or None
        The batch's callback: its ``step`` and ``total`` become units of work over all ``count``
        images, so the total is the same for every batch, also a last, smaller one.
    """
    if progress is None:
        return None
    units = images if steps_cover_the_batch else 1

    def report(update: Progress) -> None:
        per_image = update.total * units // images
        progress(Progress(begin * per_image + update.step * units, per_image * count, update.elapsed_s))

    return report


class SamplingThenPasses:
    """One progress count over a stack's sampling and a few more passes per image after it.

    KLIP with the prior z-map samples each batch of images, then computes each image's z-map one
    noise level (one pass) at a time. This reports both as one count of ``count × (steps +
    passes)`` units: the sampling's fraction done, scaled to ``count × steps``, plus the passes
    done so far — so a progress bar keeps moving through the z-maps and ends exactly at its total.
    ``elapsed_s`` counts from the object's creation.

    Parameters
    ----------
    progress : callable
        The stack's callback.
    count, steps, passes : int
        Images, sampling steps per image, passes per image after the sampling.
    """

    def __init__(self, progress: ProgressCallback, count: int, steps: int, passes: int):
        self._progress, self._sampling_units, self._passes = progress, count * steps, 0
        self.total = count * (steps + passes)
        self._sampled = 0.0
        self._started = time.perf_counter()

    def sampling(self, update: Progress) -> None:
        """Pass on a stack-wide sampling update (``step`` of ``total`` of the whole stack's sampling)."""
        self._sampled = update.step / max(update.total, 1) * self._sampling_units
        self._report()

    def pass_done(self, update: Progress) -> None:
        """Count one more pass (``update`` says which of the image's passes; only the count matters)."""
        self._passes += 1
        self._report()

    def _report(self) -> None:
        done = min(int(round(self._sampled)) + self._passes, self.total)
        self._progress(Progress(done, self.total, time.perf_counter() - self._started))
