"""The project's error types: one base, :class:`NapariKlipError`, for every error napari-klip raises
on purpose, and :class:`Cancelled` for a run that stopped because it was asked to.

Each error a user can fix also derives from the built-in exception it used to be (``ValueError``,
``OSError``, ...), so ``except ValueError`` keeps working. Importing this module is cheap (no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class NapariKlipError(Exception):
    """Base of the errors napari-klip raises on purpose (and of :class:`Cancelled`)."""


class Cancelled(NapariKlipError):
    """A long computation stopped because its ``should_cancel`` check returned true.

    Attributes
    ----------
    last_update : object or None
        The last progress update the computation yielded before it stopped.
    """

    def __init__(self, message: str = "cancelled", last_update: Any = None):
        super().__init__(message)
        self.last_update = last_update


class TrainingCancelled(Cancelled):
    """Raised by :func:`~napari_klip.core.training.train_prior` when it was cancelled (a checkpoint was saved)."""


class DeviceUnavailableError(NapariKlipError, RuntimeError):
    """The requested torch device does not exist on this machine."""


class ImageDataError(NapariKlipError, ValueError):
    """Images that cannot be used: unreadable, empty, wrongly shaped or not finite."""


class ShapeMismatchError(NapariKlipError, ValueError):
    """An image or measurement does not have the shape an operator expects."""


class PriorLoadError(NapariKlipError, OSError):
    """A prior folder is missing, incomplete, corrupt or of an unsupported kind."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"cannot load a diffusion prior from '{path}': {problem}")


class CheckpointLoadError(NapariKlipError, OSError):
    """A training checkpoint cannot be read safely (it holds more than tensors, numbers and strings, or is corrupt)."""


class OutputLockedError(NapariKlipError, FileExistsError):
    """Another napari-klip run is writing into the same output folder."""


class MissingDependencyError(NapariKlipError, ImportError):
    """An optional dependency a feature needs is not installed (the message names the extra to install)."""


class DistributedRunError(NapariKlipError, RuntimeError):
    """Scoring on a Dask cluster failed: a task raised, or its images killed workers too often."""


class LpipsWeightsError(NapariKlipError, FileNotFoundError):
    """No usable ImageNet AlexNet weights for LPIPS were found (napari-klip never downloads them)."""


class LpipsWeightsFormatError(LpipsWeightsError):
    """A file given as AlexNet weights does not hold AlexNet's convolution layers."""


__all__ = [
    "Cancelled",
    "CheckpointLoadError",
    "DeviceUnavailableError",
    "DistributedRunError",
    "ImageDataError",
    "LpipsWeightsError",
    "LpipsWeightsFormatError",
    "MissingDependencyError",
    "NapariKlipError",
    "OutputLockedError",
    "PriorLoadError",
    "ShapeMismatchError",
    "TrainingCancelled",
]
