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


#: Label values of :func:`cell_with_artifacts`'s mask, by artefact.
CELL_ARTIFACT_LABELS = {"debris": 1, "saturated spot": 2, "out of focus": 3}
#: Pixel spacing of ``skimage.data.cell()`` (µm), from its documentation.
CELL_PIXEL_SPACING_UM = 0.107


def cell_with_artifacts(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.cell()`` (660×550 uint8, CC0) at full resolution with three inserted artefacts.

    Made at run time from the image scikit-image ships in its wheel (nothing is downloaded):

    * debris — a dark irregular blob (radius 14–22 px, 35 % of the local intensity, soft edge);
    * a saturated spot — a disc of radius 9 px at 255, the top of the uint8 range;
    * an out-of-focus region — a 110×110 px square blurred with a Gaussian of σ = 5 px.

    Their places are drawn from ``seed`` on a 3×3 grid of the image (distinct cells), so they
    never overlap.

    Parameters
    ----------
    seed : int
        Seed of the places and the debris shape; the same seed gives the same image.

    Returns
    -------
    image : numpy.ndarray
        ``(660, 550)`` uint8, the original outside the mask.
    mask : numpy.ndarray
        ``(660, 550)`` uint8: 0 where nothing was inserted, else the artefact's value in
        :data:`CELL_ARTIFACT_LABELS` (its whole support, soft edges included).
    """
    from scipy import ndimage as ndi
    from skimage.data import cell

    original = cell()
    image = original.astype(np.float64)
    mask = np.zeros(original.shape, np.uint8)
    rng = np.random.default_rng(seed)
    height, width = original.shape
    cells = rng.choice(9, size=3, replace=False)
    centres = [(int((c // 3 + 0.5) * height / 3 + rng.integers(-25, 26)), int((c % 3 + 0.5) * width / 3 + rng.integers(-25, 26))) for c in cells]
    yy, xx = np.mgrid[:height, :width]

    (cy, cx) = centres[0]  # debris: a star-convex blob with a random smooth outline
    angle, distance = np.arctan2(yy - cy, xx - cx), np.hypot(yy - cy, xx - cx)
    harmonics = rng.normal(0, 0.12, size=(2, 4))
    radius = 18.0 * (1 + sum(a * np.cos((k + 2) * angle) + b * np.sin((k + 2) * angle) for k, (a, b) in enumerate(harmonics.T)))
    weight = np.clip((radius - distance) / 2.0 + 0.5, 0.0, 1.0)
    local = ndi.uniform_filter(image, 41)
    image = image * (1 - weight) + 0.35 * local * weight
    mask[weight > 0] = CELL_ARTIFACT_LABELS["debris"]

    (cy, cx) = centres[1]  # saturated spot
    spot = np.clip(9.0 - np.hypot(yy - cy, xx - cx) + 0.5, 0.0, 1.0)
    image = image * (1 - spot) + 255.0 * spot
    mask[spot > 0] = CELL_ARTIFACT_LABELS["saturated spot"]

    (cy, cx) = centres[2]  # out of focus
    half = 55
    region = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
    image[region] = ndi.gaussian_filter(image, 5.0)[region]
    mask[region] = CELL_ARTIFACT_LABELS["out of focus"]

    result = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return result, mask
