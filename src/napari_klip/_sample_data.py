"""napari sample data: real CT slices with inserted lesions, and brain MRI slices with a tumour.

Both are read from compressed files shipped in ``napari_klip/data/samples/`` (sources and
licences in ``ATTRIBUTION.md`` there); nothing is downloaded. Each function returns napari layer
data tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

CT_FILE = "organamnist_ct_lesions.npz"
BRAIN_FILE = "tcga_gbm_brain_mri.npz"


def _load(name: str) -> dict[str, np.ndarray]:
    with (files("napari_klip") / "data" / "samples" / name).open("rb") as handle, np.load(handle) as archive:
        return {key: archive[key] for key in archive.files}


def ct_lesions_sample() -> list[LayerDataTuple]:
    """Eight OrganAMNIST test CT slices (28×28, 0–255 units) with one inserted lesion each.

    Returns
    -------
    list of tuple
        An image layer ``"CT slices with lesions"`` and a labels layer ``"lesion masks"``.
    """
    data = _load(CT_FILE)
    source = "OrganAMNIST test split (CC BY 4.0), synthetic lesions by insert_lesion; see ATTRIBUTION.md"
    image_kwargs = {
        "name": "CT slices with lesions",
        "colormap": "gray",
        "contrast_limits": (0.0, 255.0),
        "axis_labels": ("slice", "y", "x"),
        "metadata": {"source": source, "test_indices": data["test_indices"].tolist()},
    }
    labels_kwargs = {"name": "lesion masks", "opacity": 0.4, "axis_labels": ("slice", "y", "x"), "metadata": {"source": source}}
    return [(data["images"], image_kwargs, "image"), (data["masks"], labels_kwargs, "labels")]


def brain_mri_sample() -> list[LayerDataTuple]:
    """Five axial T1 post-contrast brain MRI slices (TCGA-GBM) with the expert tumour mask.

    Returns
    -------
    list of tuple
        An image layer ``"brain MRI"`` and a labels layer ``"tumour mask"``, both with the voxel
        spacing (mm) as ``scale``.
    """
    data = _load(BRAIN_FILE)
    scale = tuple(float(s) for s in data["spacing"])
    common = {"scale": scale, "units": ("mm", "mm", "mm"), "axis_labels": ("z", "y", "x")}
    source = "TCGA-GBM via pyradiomics test data (CC BY 3.0 / BSD-3); see ATTRIBUTION.md"
    image_kwargs = {
        "name": "brain MRI",
        "colormap": "gray",
        "contrast_limits": (0.0, float(np.percentile(data["image"], 99.5))),
        "metadata": {"source": source, "volume_slices": data["slices"].tolist()},
        **common,
    }
    labels_kwargs = {"name": "tumour mask", "opacity": 0.4, "metadata": {"source": source}, **common}
    return [(data["image"], image_kwargs, "image"), (data["label"], labels_kwargs, "labels")]
