"""Read in-distribution image stacks and check them before they reach a network.

Sources: a TIFF file (one image or a stack), a folder of TIFF/PNG files, or an ``.npz`` file and
key (``"file.npz:key"``). Stacks come back as ``(N, H, W)`` for grey or ``(N, H, W, C)`` for
RGB(A) images, in their original dtype; nothing is rescaled here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


from .errors import ImageDataError


def split_source(source: str | Path) -> tuple[Path, str | None]:
    """Split ``"file.npz:key"`` into the path and the key (``None`` when absent).

    A colon is a key separator only after an ``.npz`` suffix, so Windows drive letters and
    colons inside folder names are safe.
    """
    text = str(source)
    head, sep, key = text.rpartition(":")
    if sep and head.lower().endswith(".npz") and key and "/" not in key and "\\" not in key:
        return Path(head), key
    return Path(text), None


def _read_tiff(path: Path, grey: bool | None) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        photometric = tif.pages[0].photometric
    if axes.startswith("S") and data.ndim == 3 and data.shape[0] in (3, 4) and photometric == tifffile.PHOTOMETRIC.RGB:
        # What tifffile.imwrite makes of a stack of 3 or 4 grey slices: one RGB(A) image, colour planes first.
        if grey:
            return data
        if grey is None:
            raise ImageDataError(
                f"'{path}' is stored as one {'RGB' if data.shape[0] == 3 else 'RGBA'} image with its colour planes "
                f"first, shape {data.shape} — which is how tifffile.imwrite stores a stack of {data.shape[0]} grey "
                "slices. If they are grey slices, save them with tifffile.imwrite(path, stack, photometric='minisblack'); "
                "if it is one colour image, save it as (height, width, colour)"
            )
    if "S" in axes and axes.index("S") != len(axes) - 1:  # samples (RGB) first: move last
        data = np.moveaxis(data, axes.index("S"), -1)
    if "S" in axes:
        return data if data.ndim == 4 else data[None]
    return data if data.ndim == 3 else data[None] if data.ndim == 2 else data


def _read_folder(folder: Path) -> np.ndarray:
    import imageio.v3 as iio
    import tifffile

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageDataError(f"'{folder}' holds no {'/'.join(IMAGE_SUFFIXES)} files")
    images = []
    for file in files:
        try:
            image = tifffile.imread(file) if file.suffix.lower() in (".tif", ".tiff") else iio.imread(file)
        except Exception as error:  # noqa: BLE001 - any decoder failure becomes one clear error
            raise ImageDataError(f"cannot read image '{file}': {error}") from error
        images.append(np.asarray(image))
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ImageDataError(
            f"the images in '{folder}' differ in shape ({', '.join(map(str, sorted(shapes)))}); "
            "they must all have the same size"
        )
    return np.stack(images)


def labels_key(key: str) -> str:
    """The ``.npz`` array that holds the labels of image array ``key``: ``train_images`` → ``train_labels``."""
    return key[: -len("images")] + "labels" if key.endswith("images") else key + "_labels"


def _read_npz(path: Path, key: str | None, labels: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001
        raise ImageDataError(f"cannot read '{path}' as .npz: {error}") from error
    with archive:
        keys = list(archive.keys())
        if key is None:
            if len(keys) != 1:
                raise ImageDataError(f"'{path}' holds several arrays ({', '.join(keys)}); name one as '{path}:KEY'")
            key = keys[0]
        if key not in keys:
            raise ImageDataError(f"'{path}' has no array '{key}'; it holds: {', '.join(keys)}")
        images = archive[key]
        if labels is None:
            return images
        label_key = labels_key(key)
        if label_key not in keys:
            raise ImageDataError(f"cannot filter by label: '{path}' has no array '{label_key}' beside '{key}'")
        values = np.asarray(archive[label_key]).reshape(-1)
    if values.size != len(images):
        raise ImageDataError(f"'{path}': '{label_key}' has {values.size} labels for {len(images)} images")
    keep = np.isin(values, np.asarray(labels))
    if not keep.any():
        present = ", ".join(map(str, np.unique(values)[:20]))
        raise ImageDataError(f"'{path}': no image has label {', '.join(map(str, labels))} (labels present: {present})")
    return images[keep]


def read_images(source: str | Path, key: str | None = None, grey: bool | None = None,
                labels: tuple[int, ...] | None = None) -> np.ndarray:
    """Read an image stack from a TIFF file, a folder of TIFF/PNG files, or an ``.npz`` array.

    Parameters
    ----------
    source : str or Path
        ``stack.tif``, ``folder/``, ``data.npz`` or ``"data.npz:key"``.
    key : str, optional
        The ``.npz`` array to read (overrides a key given in ``source``).
    grey : bool, optional
        Whether grey images are wanted (the prior's channels). A TIFF of 3 or 4 colour planes stored
        first — what ``tifffile.imwrite`` makes of 3 or 4 grey slices — is then read as slices when
        ``grey`` is true, as one colour image when false, and is an error saying how to re-save it
        when ``None`` (unknown, e.g. before training).
    labels : tuple of int, optional
        Keep only the images whose label is one of these (``.npz`` only): the labels are the
        array named like the images with ``images`` replaced by ``labels`` (``train_images`` →
        ``train_labels``, as in MedMNIST files), or ``KEY_labels``.

    Returns
    -------
    numpy.ndarray
        The stack, validated by :func:`check_image_stack`.

    Raises
    ------
    FileNotFoundError
        If the source does not exist.
    ImageDataError
        If it cannot be read or holds unusable images.
    """
    path, key_in_source = split_source(source)
    key = key or key_in_source
    if labels is not None and path.suffix.lower() != ".npz":
        raise ImageDataError(f"filtering by label needs an .npz file with a labels array, not '{path}'")
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: '{path}'")
    if path.is_dir():
        stack = _read_folder(path)
    elif path.suffix.lower() == ".npz":
        stack = _read_npz(path, key, labels)
    elif path.suffix.lower() in (".tif", ".tiff"):
        try:
            stack = _read_tiff(path, grey)
        except ImageDataError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ImageDataError(f"cannot read '{path}' as TIFF: {error}") from error
    elif path.suffix.lower() == ".png":
        import imageio.v3 as iio

        stack = np.asarray(iio.imread(path))[None]
    else:
        raise ImageDataError(f"unsupported file type '{path.suffix}' for '{path}'; use .tif, .png, .npz or a folder")
    return check_image_stack(stack, name=str(source))


def check_image_stack(stack: np.ndarray, name: str = "images") -> np.ndarray:
    """Check that an array is a usable stack of images.

    Parameters
    ----------
    stack : numpy.ndarray
        ``(N, H, W)`` grey or ``(N, H, W, C)`` with ``C`` in 1–4. A single ``(H, W)`` image
        is accepted and returned as a stack of one.
    name : str
        What to call the stack in error messages.

    Returns
    -------
    numpy.ndarray
        The stack (a view, never a modified copy).

    Raises
    ------
    ImageDataError
        For non-numeric, boolean or complex data, a wrong number of dimensions, an empty stack,
        images smaller than 2×2, or NaN/infinite values.
    """
    stack = np.asarray(stack)
    if stack.dtype == bool or not (np.issubdtype(stack.dtype, np.integer) or np.issubdtype(stack.dtype, np.floating)):
        raise ImageDataError(f"{name}: images must be real integer or floating-point numbers, got dtype {stack.dtype}")
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim == 4 and stack.shape[-1] not in (1, 2, 3, 4):
        raise ImageDataError(
            f"{name}: a 4-D stack must be (N, H, W, C) with C in 1..4 channels, got shape {stack.shape}"
        )
    if stack.ndim not in (3, 4):
        raise ImageDataError(
            f"{name}: expected an image (H, W), a stack (N, H, W) or an RGB stack (N, H, W, C); got shape {stack.shape}"
        )
    if stack.shape[0] == 0:
        raise ImageDataError(f"{name}: the stack is empty (0 images)")
    if min(stack.shape[1:3]) < 2:
        raise ImageDataError(f"{name}: images must be at least 2×2 pixels, got {stack.shape[1:3]}")
    if np.issubdtype(stack.dtype, np.floating) and not np.all(np.isfinite(stack)):
        bad = int(np.count_nonzero(~np.isfinite(stack)))
        raise ImageDataError(f"{name}: {bad} value(s) are NaN or infinite")
    return stack


def default_intensity_range(stack: np.ndarray) -> tuple[float, float]:
    """The intensities that should map to the network range ``[-1, 1]``.

    ``uint8`` data use the full type range ``(0, 255)``; all other data use their observed
    minimum and maximum.

    Raises
    ------
    ImageDataError
        If the data are constant (no range to map).
    """
    if stack.dtype == np.uint8:
        return (0.0, 255.0)
    low, high = float(np.min(stack)), float(np.max(stack))
    if not high > low:
        raise ImageDataError(f"the images are constant (all {low}); there is no intensity range to learn")
    return (low, high)


def to_channels_first(stack: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` → ``(N, 1, H, W)``, ``(N, H, W, C)`` → ``(N, C, H, W)`` (float32 copy)."""
    stack = check_image_stack(stack)
    if stack.ndim == 3:
        return stack[:, None].astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(stack, -1, 1)).astype(np.float32)


def resize_to_grid(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``image`` (``(H, W)`` or channels first ``(C, H, W)``) resized to ``grid`` (linear, anti-aliased).

    The one resize onto a prior's grid (training, scoring, simulated measurements, the demo; see
    :mod:`napari_klip.core.grid`). The arithmetic keeps the input's floating dtype; an image
    already on ``grid`` is returned as is.
    """
    from skimage.transform import resize

    if image.shape[-2:] == tuple(grid):
        return image
    return resize(image, (*image.shape[:-2], *grid), order=1, anti_aliasing=True, preserve_range=True)


def resize_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, C, H, W)`` images to ``size × size`` with anti-aliasing (linear interpolation)."""
    if stack.shape[-2:] == (size, size):
        return stack.copy()
    return np.stack([resize_to_grid(image, (size, size)) for image in stack]).astype(np.float32)


def center_crop_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """Crop the central ``size × size`` window of ``(N, C, H, W)`` images."""
    height, width = stack.shape[-2:]
    if height < size or width < size:
        raise ImageDataError(f"cannot crop {size}×{size} windows from {height}×{width} images")
    top, left = (height - size) // 2, (width - size) // 2
    return stack[..., top : top + size, left : left + size].copy()
