"""Inputs read a task at a time (``napari_klip.cluster.sources``) and the settings record (``RunSpec``) — no cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")

from napari_klip.cluster.sources import ImageSource, open_source  # noqa: E402
from napari_klip.cluster.spec import RunSpec  # noqa: E402
from napari_klip.core.errors import ImageDataError  # noqa: E402
from napari_klip.core.options import KlipConfig, LmdConfig  # noqa: E402


@pytest.fixture
def stack():
    return np.random.default_rng(1).integers(0, 255, (5, 12, 10), dtype=np.uint8)


def test_a_tiff_stack_is_read_page_by_page_through_a_zarr_store(stack, tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    source = open_source(tmp_path / "s.tif")
    assert isinstance(source._array, zarr.Array)  # nothing decoded yet: pages are read on demand
    assert (len(source), source.image_shape, source.dtype) == (5, (12, 10), np.uint8)
    np.testing.assert_array_equal(source.read(1, 3), stack[1:3])
    tifffile.imwrite(tmp_path / "one.tif", stack[0], photometric="minisblack")
    np.testing.assert_array_equal(open_source(tmp_path / "one.tif").read(0, 1), stack[:1])


def test_zarr_arrays_and_ome_zarr_images_are_inputs(stack, tmp_path):
    zarr.save_array(str(tmp_path / "a.zarr"), stack)
    np.testing.assert_array_equal(open_source(tmp_path / "a.zarr").read(3, 5), stack[3:5])
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "full"}]}]
    group.create_array("full", data=stack, chunks=(1, 12, 10))
    np.testing.assert_array_equal(open_source(tmp_path / "ome.zarr").read(0, 5), stack)
    plain = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    plain.create_array("slices", data=stack)
    with pytest.raises(ImageDataError, match="Zarr group.*slices"):
        open_source(tmp_path / "g.zarr")
    np.testing.assert_array_equal(open_source(tmp_path / "g.zarr" / "slices").read(0, 2), stack[:2])


def test_a_folder_is_read_one_file_at_a_time_and_odd_files_are_named(stack, tmp_path):
    for index, image in enumerate(stack):
        tifffile.imwrite(tmp_path / f"s{index}.tif", image, photometric="minisblack")
    source = open_source(tmp_path)
    np.testing.assert_array_equal(source.read(2, 5), stack[2:5])
    tifffile.imwrite(tmp_path / "s9.tif", stack[0, :6], photometric="minisblack")
    source = open_source(tmp_path)
    assert len(source) == 6
    np.testing.assert_array_equal(source.read(0, 5), stack)
    with pytest.raises(ImageDataError, match=r"s9\.tif.*one size"):
        source.read(4, 6)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageDataError, match="holds no"):
        open_source(empty)


def test_colour_tiffs_missing_paths_and_npz(stack, tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((12, 10, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageDataError, match="grey"):
        open_source(tmp_path / "rgb.tif")
    with pytest.raises(FileNotFoundError, match="--input"):
        open_source(tmp_path / "nope.tif")
    np.savez(tmp_path / "d.npz", images=stack)
    np.testing.assert_array_equal(open_source(f"{tmp_path / 'd.npz'}:images").read(1, 2), stack[1:2])
    with pytest.raises(ImageDataError, match="grey images"):
        ImageSource(np.zeros((2, 3, 4, 5)), "x")


def test_the_settings_record_is_json_and_names_arrays_by_hash():
    mask = np.ones((32, 32), bool)
    spec = RunSpec("klip", KlipConfig(seed=4), operator="inpaint", operator_params={"mask": mask}, window=(2, 5))
    record = spec.record()
    assert json.loads(json.dumps(record)) == record
    assert record["config"]["seed"] == 4 and record["window"] == [2, 5] and "batch_size" not in record
    assert record["operator_params"]["mask"]["array"] == [32, 32] and len(record["operator_params"]["mask"]["sha1"]) == 40
    mask[0, 0] = False
    assert RunSpec("klip", KlipConfig(seed=4), operator="inpaint", operator_params={"mask": mask}).record() != record
    assert RunSpec("lmd", LmdConfig(), batch_size=3).images_per_task == 3 and spec.images_per_task == 1
    with pytest.raises(TypeError, match="LmdConfig"):
        RunSpec("lmd", KlipConfig())
    with pytest.raises(ValueError, match="method"):
        RunSpec("other", KlipConfig())


def test_the_intensity_sample_is_the_whole_small_stack_or_evenly_spaced_images():
    from napari_klip.cluster.engine import INTENSITY_SAMPLE_IMAGES, intensity_sample

    small = np.arange(5 * 4 * 4, dtype=np.uint16).reshape(5, 4, 4)
    np.testing.assert_array_equal(intensity_sample(open_source(small)), small)
    large = np.arange(200, dtype=np.uint16)[:, None, None] * np.ones((1, 4, 4), np.uint16)
    sample = intensity_sample(open_source(large))
    picked = sample[:, 0, 0].tolist()
    assert len(picked) == INTENSITY_SAMPLE_IMAGES and picked[0] == 0 and picked[-1] == 199
    assert picked == sorted(set(picked)) and max(np.diff(picked)) <= 4  # spread over the whole stack
