"""The napari sample data: shipped, small, attributed, and reproducible from ../shared/data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_klip.core.samples import CELL_ARTIFACT_LABELS, cell_with_artifacts
from napari_klip.plugin.sample_data import brain_mri_sample, cell_artifacts_sample, ct_lesions_sample

from conftest import REPO_ROOT, shared_file

SAMPLES = REPO_ROOT / "src" / "napari_klip" / "data" / "samples"


def test_ct_sample_has_slices_and_lesion_masks():
    (images, image_kwargs, image_type), (masks, mask_kwargs, mask_type) = ct_lesions_sample()
    assert (image_type, mask_type) == ("image", "labels")
    assert images.shape == masks.shape == (8, 28, 28) and images.dtype == np.float32
    assert all(masks[i].any() for i in range(8)) and set(np.unique(masks)) == {0, 1}
    assert "CC BY 4.0" in image_kwargs["metadata"]["source"] and mask_kwargs["name"] == "lesion masks"


def test_brain_sample_carries_the_voxel_spacing():
    (image, image_kwargs, _), (label, label_kwargs, label_type) = brain_mri_sample()
    assert image.shape == label.shape == (5, 256, 256) and label_type == "labels"
    assert image_kwargs["scale"] == label_kwargs["scale"] == pytest.approx((6.5, 0.78125, 0.78125))
    assert image_kwargs["units"] == ("mm", "mm", "mm")
    assert all(label[i].any() for i in range(5))


def test_brain_sample_is_in_its_real_intensity_range():
    (image, image_kwargs, _), _ = brain_mri_sample()
    assert image.dtype == np.int16 and image.min() >= 0 and 2000 < image.max() < 4096
    assert image_kwargs["contrast_limits"][1] == pytest.approx(np.percentile(image, 99.5))


def test_cell_sample_is_full_resolution_with_three_artefacts():
    from scipy import ndimage as ndi
    from skimage.data import cell

    (image, image_kwargs, image_type), (mask, mask_kwargs, mask_type) = cell_artifacts_sample()
    original = cell()
    assert (image_type, mask_type) == ("image", "labels")
    assert image.shape == mask.shape == original.shape == (660, 550) and image.dtype == np.uint8 and mask.dtype == np.uint8
    np.testing.assert_array_equal(image[mask == 0], original[mask == 0])  # only the artefacts changed
    assert mask_kwargs["metadata"]["labels"] == CELL_ARTIFACT_LABELS
    debris, spot, blurred = (mask == CELL_ARTIFACT_LABELS[name] for name in ("debris", "saturated spot", "out of focus"))
    assert image[debris].mean() < 0.6 * original[debris].mean()  # dark
    assert np.median(image[spot]) == 255  # saturated
    # out of focus: the square is the original blurred with σ = 5 (up to rounding), a visible change
    defocused = np.rint(ndi.gaussian_filter(original.astype(np.float64), 5.0))
    assert np.abs(image[blurred].astype(np.float64) - defocused[blurred]).max() <= 1.0
    assert np.abs(image[blurred].astype(np.float64) - original[blurred]).mean() > 1.0
    again, again_mask = cell_with_artifacts(seed=0)
    np.testing.assert_array_equal(again, image)
    np.testing.assert_array_equal(again_mask, mask)
    other, _ = cell_with_artifacts(seed=1)
    assert not np.array_equal(other, image)
    np.testing.assert_array_equal(cell(), original)  # skimage's copy untouched


def test_sample_files_are_small_and_attributed():
    total = sum(path.stat().st_size for path in SAMPLES.glob("*.npz"))
    assert 0 < total < 600_000
    attribution = (SAMPLES / "ATTRIBUTION.md").read_text()
    for required in ("CC BY 4.0", "CC BY 3.0", "TCGA-GBM", "pyradiomics", "BSD-3", "OrganAMNIST"):
        assert required in attribution
    assert "Harvard Medical School" in (SAMPLES / "LICENSE-pyradiomics.txt").read_text()


def test_sample_files_are_reproduced_by_the_script(tmp_path):
    shared = shared_file("organamnist.npz").parent
    shared_file("tcga_brain_mri_tumor.npz")
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_sample_data.py"), "--shared", str(shared), "--out", str(tmp_path)], check=True, capture_output=True)
    for name in ("organamnist_ct_lesions.npz", "tcga_gbm_brain_mri.npz"):
        with np.load(SAMPLES / name) as shipped, np.load(Path(tmp_path) / name) as made:
            assert sorted(shipped.files) == sorted(made.files)
            for key in shipped.files:
                np.testing.assert_array_equal(shipped[key], made[key])
    with np.load(shared / "organamnist.npz") as organ, np.load(SAMPLES / "organamnist_ct_lesions.npz") as sample:
        originals = organ["test_images"][sample["test_indices"]].astype(np.float32)
        outside = sample["masks"] == 0
        np.testing.assert_array_equal(sample["images"][outside], originals[outside])  # only the lesions changed
