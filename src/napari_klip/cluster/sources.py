"""Image stacks read a few images at a time, so that a stack larger than memory can be scored.

:func:`open_source` takes what ``--input`` takes and returns an :class:`ImageSource`:

* a TIFF stack — read through tifffile's Zarr store (``tifffile.imread(path, aszarr=True)``), so
  ``read(start, stop)`` decodes only those pages;
* a Zarr array (``stack.zarr``, an OME-Zarr image group — its full-resolution level ``0`` — or a
  path inside a store) — read chunk by chunk;
* a folder of TIFF/PNG files — one file per image, sorted by name as :func:`~napari_klip.core.data.read_images` does;
* an ``.npz`` array or a single PNG — read whole (neither format can be read in parts);
* any array-like with ``shape``, ``dtype`` and slicing (numpy, Zarr, a dask array) via :class:`ImageSource`.

Nothing here imports torch or dask; ``zarr`` is imported only for TIFF and Zarr inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.data import IMAGE_SUFFIXES, read_images, split_source
from ..core.errors import ImageDataError, MissingDependencyError

__all__ = ["FolderSource", "ImageSource", "open_source"]

#: The pip extra that brings dask.distributed and zarr.
DASK_EXTRA = "napari-klip[dask]"


def import_optional(name: str, feature: str = "--dask") -> Any:
    """Import ``name`` or raise a one-line :class:`MissingDependencyError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingDependencyError(
            f"{feature} needs dask.distributed and zarr, and '{name}' is not installed: pip install '{DASK_EXTRA}'"
        ) from None


class ImageSource:
    """A grey ``(N, H, W)`` stack whose images are read when asked for.

    Parameters
    ----------
    array : array-like
        Anything with ``shape``, ``dtype`` and slicing along the first axis (numpy, Zarr, dask).
    name : str
        How errors and the settings record name the input.
    """

    def __init__(self, array: Any, name: str):
        shape = tuple(int(n) for n in array.shape)
        if len(shape) == 2:
            array, shape = _OneImage(array), (1, *shape)
        if len(shape) != 3 or 0 in shape:
            raise ImageDataError(f"'{name}' must hold grey images (H, W) or a stack (N, H, W); got shape {shape}")
        self._array = array
        self.name = name
        self.shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.dtype = np.dtype(array.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return self.shape[1], self.shape[2]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start`` to ``stop - 1`` as a new ``(stop - start, H, W)`` numpy array."""
        return np.array(self._array[start:stop])


class _OneImage:
    """A 2-D array seen as a stack of one."""

    def __init__(self, array: Any):
        self._array = array
        self.shape = (1, *array.shape)
        self.dtype = array.dtype

    def __getitem__(self, index: slice) -> np.ndarray:
        return np.asarray(self._array[:])[None][index]


class FolderSource(ImageSource):
    """A folder of TIFF/PNG images of one size, read one file at a time (files sorted by name)."""

    def __init__(self, folder: Path):
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise ImageDataError(f"'{folder}' holds no {'/'.join(IMAGE_SUFFIXES)} files")
        first = self._load(self.files[0])
        if first.ndim != 2:
            raise ImageDataError(f"'{self.files[0]}' is not a grey image (shape {first.shape}); --dask scores grey images")
        self.name = str(folder)
        self.shape = (len(self.files), *first.shape)
        self.dtype = first.dtype

    @staticmethod
    def _load(file: Path) -> np.ndarray:
        import imageio.v3 as iio
        import tifffile

        try:
            return np.asarray(tifffile.imread(file) if file.suffix.lower() in (".tif", ".tiff") else iio.imread(file))
        except Exception as error:  # noqa: BLE001 - any decoder failure becomes one clear error
            raise ImageDataError(f"cannot read image '{file}': {error}") from error

    def read(self, start: int, stop: int) -> np.ndarray:
        images = [self._load(file) for file in self.files[start:stop]]
        for file, image in zip(self.files[start:stop], images):
            if image.shape != self.image_shape or image.dtype != self.dtype:
                raise ImageDataError(
                    f"'{file}' is {image.dtype} {image.shape}, unlike the first image of '{self.name}' "
                    f"({self.dtype} {self.image_shape}); the images must all have one size and type"
                )
        return np.stack(images)


def _tiff_source(path: Path) -> ImageSource:
    import tifffile

    zarr = import_optional("zarr")
    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
        array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    except Exception as error:  # noqa: BLE001
        raise ImageDataError(f"cannot read '{path}' as TIFF: {error}") from error
    if isinstance(array, zarr.Group):  # a pyramid: its full-resolution level
        array = array["0"]
    if axes.endswith("S") or len(axes) > 3:
        raise ImageDataError(f"'{path}' has axes {axes} and shape {array.shape}; --dask scores grey images (H, W) or stacks (N, H, W)")
    return ImageSource(array, str(path))


def _zarr_source(path: Path) -> ImageSource:
    zarr = import_optional("zarr")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as error:  # noqa: BLE001
        raise ImageDataError(f"cannot open '{path}' as Zarr: {error}") from error
    if isinstance(node, zarr.Group):
        multiscales = node.attrs.get("multiscales")
        if multiscales:  # an OME-Zarr image: its first (full-resolution) level
            node = node[multiscales[0]["datasets"][0]["path"]]
        else:
            arrays = sorted(node.array_keys())
            raise ImageDataError(f"'{path}' is a Zarr group; give the path of one of its arrays ({', '.join(arrays) or 'it holds none'})")
    return ImageSource(node, str(path))


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or any((path / name).exists() for name in (".zarray", ".zgroup", "zarr.json"))


def open_source(source: str | Path | Any, name: str = "--input") -> ImageSource:
    """An :class:`ImageSource` over a file, folder, Zarr store or array-like.

    Parameters
    ----------
    source : str, Path, ImageSource or array-like
        ``stack.tif``, ``folder/``, ``stack.zarr`` (or an array inside a store), ``data.npz:KEY``,
        ``image.png``; or an array-like (numpy, Zarr, dask).
    name : str
        How errors name the input (the command-line option).

    Returns
    -------
    ImageSource

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ImageDataError
        If it cannot be read or is not a grey image or stack.
    """
    if isinstance(source, ImageSource):
        return source
    if not isinstance(source, (str, Path)):
        return ImageSource(source, f"{type(source).__name__} {tuple(source.shape)}")
    path, key = split_source(source)
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such file or folder: '{path}'")
    if _is_zarr(path):
        return _zarr_source(path)
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        return _tiff_source(path)
    return ImageSource(read_images(source, grey=True), str(source))


def chunks(length: int, size: int) -> Sequence[tuple[int, int]]:
    """``[(0, size), (size, 2 * size), ...]`` up to ``length``: the images of each task."""
    return [(start, min(start + size, length)) for start in range(0, length, size)]
