"""Reading image stacks: TIFF, folders of TIFF/PNG, NPZ; clear errors for unusable data."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_klip.core.data import (
    ImageDataError,
    check_image_stack,
    default_intensity_range,
    read_images,
    resize_stack,
    split_source,
    to_channels_first,
)


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=(5, 12, 10), dtype=np.uint8)


def test_tiff_stack_round_trip(tmp_path, stack):
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    np.testing.assert_array_equal(read_images(tmp_path / "stack.tif"), stack)


def test_single_tiff_image_is_a_stack_of_one(tmp_path, stack):
    tifffile.imwrite(tmp_path / "one.tif", stack[0])
    assert read_images(tmp_path / "one.tif").shape == (1, 12, 10)


def test_rgb_tiff_keeps_channels_last(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_images(tmp_path / "rgb.tif").shape == (1, 12, 10, 3)


def test_folder_of_png_and_tiff_files(tmp_path, stack):
    for index, image in enumerate(stack):
        if index % 2:
            iio.imwrite(tmp_path / f"img{index:02d}.png", image)
        else:
            tifffile.imwrite(tmp_path / f"img{index:02d}.tif", image)
    (tmp_path / "notes.txt").write_text("ignored")
    np.testing.assert_array_equal(read_images(tmp_path), stack)


def test_npz_with_key(tmp_path, stack):
    np.savez(tmp_path / "d.npz", train=stack, labels=np.arange(5))
    np.testing.assert_array_equal(read_images(f"{tmp_path / 'd.npz'}:train"), stack)
    with pytest.raises(ImageDataError, match="holds several arrays"):
        read_images(tmp_path / "d.npz")
    with pytest.raises(ImageDataError, match="has no array 'test'"):
        read_images(f"{tmp_path / 'd.npz'}:test")


def test_npz_label_filter(tmp_path, stack):
    labels = np.array([[6], [1], [6], [2], [1]])  # MedMNIST stores labels as (N, 1)
    np.savez(tmp_path / "m.npz", train_images=stack, train_labels=labels, other=stack, other_labels=np.arange(3))
    source = f"{tmp_path / 'm.npz'}:train_images"
    np.testing.assert_array_equal(read_images(source, labels=(6,)), stack[[0, 2]])
    np.testing.assert_array_equal(read_images(source, labels=(1, 2)), stack[[1, 3, 4]])
    with pytest.raises(ImageDataError, match="no image has label 9"):
        read_images(source, labels=(9,))
    with pytest.raises(ImageDataError, match="3 labels for 5 images"):
        read_images(f"{tmp_path / 'm.npz'}:other", labels=(1,))
    np.savez(tmp_path / "n.npz", images=stack)
    with pytest.raises(ImageDataError, match="no array 'labels'"):
        read_images(f"{tmp_path / 'n.npz'}:images", labels=(1,))
    with pytest.raises(ImageDataError, match="needs an .npz"):
        read_images(tmp_path, labels=(1,))


def test_split_source():
    assert split_source("a/b.npz:train_images") == (split_source("a/b.npz")[0], "train_images")
    assert split_source("C:/data/stack.tif")[1] is None


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        read_images(tmp_path / "nope.tif")


def test_folder_with_mixed_sizes(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(ImageDataError, match="differ in shape"):
        read_images(tmp_path)


def test_empty_folder_and_corrupt_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match="holds no"):
        read_images(tmp_path / "empty")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(ImageDataError, match="cannot read"):
        read_images(tmp_path / "bad.tif")


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 8, 8)), "empty"),
        (np.zeros(8), "expected an image"),
        (np.zeros((2, 3, 8, 8, 1)), "expected an image"),
        (np.zeros((2, 8, 8, 7)), "C in 1..4"),
        (np.zeros((2, 8, 8), dtype=bool), "real integer or floating"),
        (np.zeros((2, 8, 8), dtype=complex), "real integer or floating"),
        (np.array([[[0.0, np.nan], [1.0, 2.0]]]), "NaN or infinite"),
        (np.array([[[0.0, np.inf], [1.0, 2.0]]]), "NaN or infinite"),
        (np.zeros((3, 1, 8)), "at least 2×2"),
    ],
)
def test_unusable_stacks(array, message):
    with pytest.raises(ImageDataError, match=message):
        check_image_stack(array)


def test_intensity_range_and_layout():
    assert default_intensity_range(np.zeros((1, 4, 4), np.uint8)) == (0.0, 255.0)
    assert default_intensity_range(np.array([[[100, 4000]]], np.uint16)) == (100.0, 4000.0)
    with pytest.raises(ImageDataError, match="constant"):
        default_intensity_range(np.full((2, 4, 4), 7.0))
    assert to_channels_first(np.zeros((2, 5, 6, 3))).shape == (2, 3, 5, 6)
    assert resize_stack(np.ones((2, 1, 28, 28), np.float32), 32).shape == (2, 1, 32, 32)
