"""Training checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)``: a ``checkpoint.pt`` from someone else cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from .errors import CheckpointLoadError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically (a temporary sibling, flushed, then renamed over it).

    Parameters
    ----------
    state : dict
        Tensors, numbers, strings, lists, tuples and dicts only (what ``weights_only`` loading accepts).
    path : Path
        The checkpoint file; a reader never sees it half-written.
    """
    import torch

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything but plain data.

    Parameters
    ----------
    path : Path
        The ``checkpoint.pt`` file.
    device : torch.device or str
        Where to map its tensors.

    Returns
    -------
    dict

    Raises
    ------
    CheckpointLoadError
        If the file holds other objects (a pickle that would run code is refused, never executed),
        is truncated or corrupt, or is not a napari-klip checkpoint.
    """
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointLoadError(
            f"refusing to load '{path}': it holds objects other than tensors, numbers and strings, which could run "
            f"code ({first_line}); resume only from checkpoints you trained yourself, or train again without --resume"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointLoadError(f"cannot read the checkpoint '{path}' (truncated or corrupt?): {error}") from None
    required = ("unet", "optimizer", "generator", "step", "history", "elapsed_s", "config", "channels", "intensity_range")
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise CheckpointLoadError(f"'{path}' is not a napari-klip training checkpoint")
    return state
