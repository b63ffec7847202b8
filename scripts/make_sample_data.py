"""Regenerate the napari sample data shipped in ``src/napari_klip/data/samples/`` from ../shared/data.

Usage::

    .venv/bin/python scripts/make_sample_data.py [--shared ../shared/data]

Writes (compressed ``.npz``, well under 1 MB together):

* ``organamnist_ct_lesions.npz`` — the first 8 liver slices of the OrganAMNIST **test** split
  (28×28 abdominal CT, CC BY 4.0) with one synthetic lesion each, inserted by
  :func:`napari_klip.core.anomalies.insert_lesion` with seed = slice number; keys ``images``
  (float32, the 0–255 units of the data), ``masks`` (uint8, 1 = lesion), ``test_indices``.
* ``tcga_gbm_brain_mri.npz`` — 5 axial slices (12–16) of the first brain MRI of
  ``tcga_brain_mri_tumor.npz`` (T1 post-contrast, TCGA-GBM, CC BY 3.0, via the pyradiomics test
  data, BSD-3) with the expert tumour mask; keys ``image`` (int16), ``label`` (uint8),
  ``spacing`` (z, y, x in mm), ``slices``.

The attribution text lives next to the files (``ATTRIBUTION.md``, ``LICENSE-pyradiomics.txt``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from napari_klip.core.anomalies import insert_lesion

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "napari_klip" / "data" / "samples"
LIVER = 6  # OrganAMNIST class id
CT_SLICES = 8
LESION_CONTRAST = 0.3
BRAIN_SLICES = (12, 13, 14, 15, 16)


def make_ct(shared: Path) -> dict[str, np.ndarray]:
    """Liver slices of the OrganAMNIST test split with one seeded lesion each."""
    with np.load(shared / "organamnist.npz") as archive:
        images, labels = archive["test_images"], archive["test_labels"].ravel()
    indices = np.flatnonzero(labels == LIVER)[:CT_SLICES]
    lesions = [insert_lesion(images[index], contrast=LESION_CONTRAST, seed=seed) for seed, index in enumerate(indices)]
    return {
        "images": np.stack([lesion.image for lesion in lesions]).astype(np.float32),
        "masks": np.stack([lesion.mask for lesion in lesions]).astype(np.uint8),
        "test_indices": indices.astype(np.int64),
    }


def make_brain(shared: Path) -> dict[str, np.ndarray]:
    """Axial slices with tumour of the first TCGA-GBM volume, as (z, y, x)."""
    with np.load(shared / "tcga_brain_mri_tumor.npz") as archive:
        image, label, spacing = archive["brain1_image"], archive["brain1_label"], archive["brain1_spacing"]
    slices = list(BRAIN_SLICES)
    # stored as (x, y, z): transpose so that each slice is (rows = y, columns = x), anterior up
    return {
        "image": np.ascontiguousarray(image[:, :, slices].transpose(2, 1, 0)),
        "label": np.ascontiguousarray(label[:, :, slices].transpose(2, 1, 0)).astype(np.uint8),
        "spacing": np.array([spacing[2], spacing[1], spacing[0]], dtype=np.float64),
        "slices": np.array(slices, dtype=np.int64),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="folder of the real data sets")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "organamnist_ct_lesions.npz", **make_ct(args.shared))
    np.savez_compressed(args.out / "tcga_gbm_brain_mri.npz", **make_brain(args.shared))
    shutil.copyfile(args.shared / "licenses" / "pyradiomics-BSD-3.txt", args.out / "LICENSE-pyradiomics.txt")
    for path in sorted(args.out.glob("*.npz")):
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
