"""The data a GPU session carries (scripts/gpu_data.py) gives the same images as the full archive."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture
def archive() -> dict[str, np.ndarray]:
    """A MedMNIST-style archive of 28² bright discs, labels 0–10 ((N, 1) like MedMNIST)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:28, :28]
    arrays = {}
    for split, count in (("train", 40), ("val", 60), ("test", 50)):
        radius = rng.uniform(8, 12, count)[:, None, None]
        discs = ((yy - 14) ** 2 + (xx - 14) ** 2 < radius**2) * rng.uniform(120, 220, (count, 1, 1))
        arrays[f"{split}_images"] = (discs + rng.normal(0, 8, (count, 28, 28))).clip(0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 11, (count, 1))
    return arrays


def test_label_subset_keeps_the_rows_of_the_label_in_order(archive):
    gpu_data = load_script("scripts/gpu_data.py")
    before = {key: value.copy() for key, value in archive.items()}
    subset = gpu_data.label_subset(archive, 6)
    assert set(subset) == set(archive)
    for split in gpu_data.SPLITS:
        rows = np.flatnonzero(archive[f"{split}_labels"].ravel() == 6)
        np.testing.assert_array_equal(subset[f"{split}_images"], archive[f"{split}_images"][rows])
        np.testing.assert_array_equal(subset[f"{split}_labels"], archive[f"{split}_labels"][rows])
    for key, value in before.items():
        np.testing.assert_array_equal(archive[key], value)
    with pytest.raises(ValueError, match="no image has label 11"):
        gpu_data.label_subset(archive, 11)


def test_liver_benchmark_and_training_read_the_same_images_from_the_subset(tmp_path, archive):
    from napari_klip.core.data import read_images

    gpu_data = load_script("scripts/gpu_data.py")
    liver_lesions = load_script("benchmarks/liver_lesions.py")
    full, small = tmp_path / "full.npz", tmp_path / "liver.npz"
    np.savez(full, **archive)
    np.savez_compressed(small, **gpu_data.label_subset(archive, liver_lesions.LIVER))
    np.testing.assert_array_equal(read_images(f"{small}:train_images", labels=(6,)), read_images(f"{full}:train_images", labels=(6,)))
    for split in ("val", "test"):
        rows = np.flatnonzero(archive[f"{split}_labels"].ravel() == liver_lesions.LIVER)
        from_full = liver_lesions.build_split(full, split, (1, 1), seed=0)
        from_small = liver_lesions.build_split(small, split, (1, 1), seed=0)
        assert [r["kind"] for r in from_small] == [r["kind"] for r in from_full] == ["id", "lesion", "star"]
        for a, b in zip(from_full, from_small, strict=True):
            assert a["index"] == rows[b["index"]]  # the same slice, under its row number in each file
            for key in ("image", "body", "mask"):
                np.testing.assert_array_equal(a[key], b[key])


def test_liver_benchmark_test_sets_are_disjoint_and_fresh_test_is_the_second(tmp_path):
    liver_lesions = load_script("benchmarks/liver_lesions.py")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:28, :28]
    discs = ((yy - 14) ** 2 + (xx - 14) ** 2 < 100) * rng.uniform(120, 220, (40, 1, 1)) + rng.normal(0, 8, (40, 28, 28))
    images = discs.clip(0, 255).astype(np.uint8)
    path = tmp_path / "liver.npz"
    np.savez(path, test_images=images, test_labels=np.full((40, 1), liver_lesions.LIVER), val_images=images[:4], val_labels=np.zeros((4, 1)))
    sets = [{r["index"] for r in liver_lesions.disjoint_test_set(path, (2, 3), 0, None, n, set_size=(2, 3))} for n in range(3)]
    assert all(len(indices) == 5 for indices in sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # a smaller run of set 2 (what fits in a GPU session) still avoids sets 0 and 1
    smaller = {r["index"] for r in liver_lesions.disjoint_test_set(path, (1, 2), 0, None, 2, set_size=(2, 3))}
    assert len(smaller) == 3 and not smaller & (sets[0] | sets[1])
    assert {r["index"] for r in liver_lesions.build_split(path, "test", (2, 3), 0)} == sets[0]
    assert liver_lesions.parse_args(["--model", "m", "--fresh-test"]).test_set == 1
    assert liver_lesions.parse_args(["--model", "m", "--test-set", "2"]).test_set == 2
    with pytest.raises(SystemExit):
        liver_lesions.parse_args(["--model", "m", "--fresh-test", "--test-set", "2"])
