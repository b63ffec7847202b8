"""The sample data bundled with the package (``napari_klip/data/samples``; sources in ``ATTRIBUTION.md``).

Real CT slices with inserted lesions and brain MRI slices with a tumour, read from compressed
files; nothing is downloaded. The napari sample-data entries and the demo read them from here.
"""

from __future__ import annotations

from importlib.resources import files

import numpy as np

CT_FILE = "organamnist_ct_lesions.npz"
BRAIN_FILE = "tcga_gbm_brain_mri.npz"


def load_sample(name: str) -> dict[str, np.ndarray]:
    """All arrays of the sample file ``name`` (e.g. :data:`CT_FILE`)."""
    with (files("napari_klip") / "data" / "samples" / name).open("rb") as handle, np.load(handle) as archive:
        return {key: archive[key] for key in archive.files}


def load_ct_sample() -> tuple[np.ndarray, np.ndarray]:
    """The bundled CT slices with lesions ``(N, 28, 28)`` float32 (0–255 units) and their masks."""
    data = load_sample(CT_FILE)
    return data["images"].astype(np.float32), data["masks"].astype(bool)
