"""Output folders that are never half-written, and a lock so that one run at a time writes into one.

* :func:`output_lock` holds ``.<name>.lock`` beside the folder (``fcntl.flock``, released by the
  operating system even when the process is killed; ``O_EXCL`` where ``fcntl`` is missing).
* :func:`staged_output` gives a hidden sibling folder ``.<name>.partial`` to write into; on success
  its files are moved into the folder (each by an atomic rename, ``result.json`` last, after the old
  one and stale outputs of other commands are gone), on failure or Ctrl-C it is deleted.
* :func:`replace_tree` swaps a finished folder or file in for an old one by renames.

Torch-free: the command line uses these before it imports any detector.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputLockedError

#: Written last when a staged folder is committed: a folder with it is complete.
RESULT_FILE = "result.json"


def check_writable_folder(folder: Path) -> None:
    """Raise a clear error now (before any work) if ``folder`` is a file or cannot be written.

    Raises
    ------
    FileExistsError
        If ``folder`` is an existing file.
    PermissionError
        If it (or the nearest existing parent that would hold it) is not writable.
    """
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"'{folder}' is a file, not an output folder")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into the output folder '{folder}'")
    existing = folder.parent  # the lock and the staging folder are written beside the output folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write into '{existing}' (to hold the output folder '{folder}' and its lock)")


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


@contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold the lock of ``folder`` for the ``with`` block; the lock file is removed on exit.

    Raises
    ------
    OutputLockedError
        If another process holds it.
    """
    folder = Path(folder)
    check_writable_folder(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    path = _lock_path(folder)
    descriptor = _acquire(path, folder)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


def _acquire(path: Path, folder: Path) -> int:
    busy = OutputLockedError(f"another napari-klip run is writing into '{folder}' (lock '{path}'); wait for it or choose another --out")
    try:
        import fcntl
    except ImportError:  # Windows: exclusive creation (a killed run leaves the file; the message names it)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise busy from None
        os.write(descriptor, str(os.getpid()).encode())
        return descriptor
    for _ in range(3):
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise busy from None
        try:
            same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:  # not a file its previous holder removed while we opened it
            os.ftruncate(descriptor, 0)
            os.write(descriptor, str(os.getpid()).encode())
            return descriptor
        os.close(descriptor)
    raise busy


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_tree(new: Path, target: Path) -> None:
    """Put ``new`` (a file or folder) in place of ``target`` by renames; the old one is deleted after.

    A crash leaves either the old ``target`` or the complete ``new`` one under its name (and at worst a
    hidden ``.<name>.old`` beside it), never a half-written one.
    """
    old = target.parent / f".{target.name}.old"
    remove_path(old)
    if target.exists() or target.is_symlink():
        target.rename(old)
    new.rename(target)
    remove_path(old)


@contextmanager
def staged_output(folder: Path, outputs: Iterable[str], overwrite: bool, stale: Iterable[str] = ()) -> Iterator[Path]:
    """Write a command's outputs into a hidden sibling folder; move them into ``folder`` only on success.

    Parameters
    ----------
    folder : Path
        The output folder (made when committing; unrelated files in it are never touched).
    outputs : iterable of str
        The names this command writes; without ``overwrite`` any of them already in ``folder`` is an error
        raised before the block runs.
    overwrite : bool
        Replace earlier outputs.
    stale : iterable of str
        Outputs of other commands (e.g. KLIP's maps when LMD overwrites) removed on commit, so the folder
        never mixes two runs.

    Yields
    ------
    Path
        The staging folder to write into.

    Raises
    ------
    FileExistsError
        If ``folder`` is a file, or holds outputs and ``overwrite`` is false.
    OutputLockedError
        If another run writes into ``folder``.
    """
    folder = Path(folder)
    outputs = tuple(outputs)
    with output_lock(folder):
        existing = [name for name in outputs if (folder / name).exists()]
        if existing and not overwrite:
            raise FileExistsError(f"'{folder}' already holds {', '.join(existing)}; pass --overwrite to replace them")
        staging = folder.parent / f".{folder.name}.partial"
        remove_path(staging)  # left by a killed run: we hold the lock, so nobody else writes it
        staging.mkdir()
        try:
            yield staging
            _commit(staging, folder, (*outputs, *stale))
        finally:
            remove_path(staging)


def _commit(staging: Path, folder: Path, known: tuple[str, ...]) -> None:
    if not folder.exists():
        staging.rename(folder)
        return
    remove_path(folder / RESULT_FILE)  # from here on the folder is marked incomplete until the new one lands
    written = {entry.name for entry in staging.iterdir()}
    for name in known:
        if name not in written:
            remove_path(folder / name)
    for name in sorted(written, key=lambda entry: entry == RESULT_FILE):
        replace_tree(staging / name, folder / name)
