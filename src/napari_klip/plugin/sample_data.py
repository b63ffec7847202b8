"""napari sample data: real CT slices with inserted lesions, and brain MRI slices with a tumour.

Both are read by :mod:`napari_klip.core.samples` from compressed files shipped in
``napari_klip/data/samples/`` (sources and licences in ``ATTRIBUTION.md`` there); nothing is
downloaded. Each function returns napari layer
data tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.samples import BRAIN_FILE, CT_FILE, load_sample

#: napari's ``(data, kwargs, layer_type)`` (as :mod:`napari_klip.api.layers` makes them; that
#: module is not imported here, so opening a sample does not load torch).
LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def ct_lesions_sample() -> list[LayerDataTuple]:
    """Eight OrganAMNIST test CT slices (28×28, 0–255 units) with one inserted lesion each.

    Returns
    -------
    list of tuple
        An image layer ``"CT slices with lesions"`` and a labels layer ``"lesion masks"``.
    """
    data = load_sample(CT_FILE)
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
    data = load_sample(BRAIN_FILE)
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
