"""napari sample data: real CT slices with inserted lesions, brain MRI slices with a tumour, and a
full-resolution microscopy image with inserted artefacts.

The CT and MRI samples are read by :mod:`napari_klip.core.samples` from compressed files shipped in
``napari_klip/data/samples/`` (sources and licences in ``ATTRIBUTION.md`` there); the microscopy
sample is made at run time from ``skimage.data.cell()``, which scikit-image ships in its wheel.
Nothing is downloaded. Each function returns napari layer data tuples ``(data, kwargs, layer_type)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.samples import BRAIN_FILE, CELL_ARTIFACT_LABELS, CELL_PIXEL_SPACING_UM, CT_FILE, cell_with_artifacts, load_sample

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

    The slices are 256×256 int16 in the scanner's own intensity range (0 to about 2500), not
    rescaled: the detectors map them to a prior's units (``docs/intensities.md``).

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


def cell_artifacts_sample() -> list[LayerDataTuple]:
    """``skimage.data.cell()`` at full resolution (660×550 uint8) with debris, a saturated spot and an out-of-focus region.

    Returns
    -------
    list of tuple
        An image layer ``"cell with artefacts"`` and a labels layer ``"artefact masks"`` (values in
        :data:`~napari_klip.core.samples.CELL_ARTIFACT_LABELS`), both with the 0.107 µm pixel spacing.
    """
    image, mask = cell_with_artifacts(seed=0)
    source = "skimage.data.cell() (CC0; quantitative phase image, Müller et al.), artefacts by napari_klip.core.samples.cell_with_artifacts(seed=0)"
    common = {"scale": (CELL_PIXEL_SPACING_UM, CELL_PIXEL_SPACING_UM), "units": ("µm", "µm"), "axis_labels": ("y", "x")}
    image_kwargs = {"name": "cell with artefacts", "colormap": "gray", "contrast_limits": (0.0, 255.0), "metadata": {"source": source}, **common}
    labels_kwargs = {"name": "artefact masks", "opacity": 0.4, "metadata": {"source": source, "labels": dict(CELL_ARTIFACT_LABELS)}, **common}
    return [(image, image_kwargs, "image"), (mask, labels_kwargs, "labels")]
