"""Drive a long computation written as a generator: report each step, stop on request."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

Update = TypeVar("Update")
Result = TypeVar("Result")


def drive(
    steps: Generator[Update, None, Result],
    progress: Callable[[Update], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[bool, Result | None, Any]:
    """Run a generator to its end, calling ``progress`` with every update it yields.

    Parameters
    ----------
    steps : generator
        Yields progress updates and returns the result.
    progress : callable, optional
        Called with each update.
    should_cancel : callable, optional
        Polled after each update; when it returns true the generator is closed (its own
        clean-up runs) and the run counts as cancelled.

    Returns
    -------
    finished : bool
        False if the run was cancelled.
    result : object or None
        The generator's return value, ``None`` when cancelled.
    last_update : object or None
        The last update yielded.
    """
    last_update = None
    while True:
        try:
            last_update = next(steps)
        except StopIteration as finished:
            return True, finished.value, last_update
        if progress is not None:
            progress(last_update)
        if should_cancel is not None and should_cancel():
            steps.close()
            return False, None, last_update
