"""Simulated measurements that remember how they were made, so that KLIP can score them later.

A measurement is simulated from one grey image slice on a square *grid* (the prior's image size:
a measurement can only be scored by a prior of that size), with a forward operator described by
:class:`OperatorSettings` and Gaussian noise. :class:`MeasurementInfo` holds everything needed
to rebuild the operator (and the image geometry of the outputs); it is stored as plain JSON-able
values in a napari layer's ``metadata["napari_klip"]``.

Example
-------
>>> settings = OperatorSettings("ct", n_views=24)                         # doctest: +SKIP
>>> sinogram = simulate_measurement(ct_slice, settings, grid=(32, 32), noise_sigma=1.0, seed=0)
>>> operator = settings.build((32, 32))
>>> result = score_measurement(sinogram, operator, output_shape=ct_slice.shape)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..core.grid import check_image, resize_to_grid
from ..core.options import OPERATOR_LABELS, OperatorSettings, random_known_mask

__all__ = [
    "METADATA_KEY",
    "OPERATOR_LABELS",
    "MeasurementInfo",
    "OperatorSettings",
    "random_known_mask",
    "simulate_measurement",
]

#: Key of the napari_klip entry in a layer's metadata.
METADATA_KEY = "napari_klip"


#: Gap between an image and its sinogram drawn beside it, as a fraction of the image's width.
SINOGRAM_GAP = 0.125


@dataclass(frozen=True)
class MeasurementInfo:
    """How a measurement layer was made, and the image geometry KLIP's outputs should have.

    Attributes
    ----------
    operator : OperatorSettings
    grid : tuple of int
        The ``(H, W)`` the image was resized to before the operator (the prior's image size).
    noise_sigma : float
        Standard deviation of the added Gaussian noise, in measurement units.
    seed : int
        Noise seed of the first slice (slice ``i`` of a stack used ``seed + i``).
    image_shape : tuple of int
        ``(H, W)`` of the source image slices.
    image_scale, image_translate : tuple of float
        Pixel spacing and position of the source image's two image axes.
    image_units, image_axis_labels : tuple of str
        Units and labels of those axes.
    source : str
        Name of the source image layer.
    """

    operator: OperatorSettings
    grid: tuple[int, int]
    noise_sigma: float
    seed: int
    image_shape: tuple[int, int]
    image_scale: tuple[float, float] = (1.0, 1.0)
    image_translate: tuple[float, float] = (0.0, 0.0)
    image_units: tuple[str, str] = ("pixel", "pixel")
    image_axis_labels: tuple[str, str] = ("y", "x")
    source: str = ""

    def to_metadata(self) -> dict[str, Any]:
        """The value stored under ``layer.metadata["napari_klip"]`` (JSON-able)."""
        values = asdict(self)
        return {"kind": "measurement", "measurement": _jsonable(values)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "MeasurementInfo | None":
        """Read it back from a layer's metadata; ``None`` when the layer is not a measurement."""
        entry = (metadata or {}).get(METADATA_KEY) or {}
        if entry.get("kind") != "measurement" or "measurement" not in entry:
            return None
        try:
            values = dict(entry["measurement"])
            values["operator"] = OperatorSettings.from_dict(dict(values["operator"]))
            for key in ("grid", "image_shape", "image_scale", "image_translate", "image_units", "image_axis_labels"):
                values[key] = tuple(values[key])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"the layer's metadata does not describe a measurement napari-klip can rebuild: {error}") from error

    def measurement_shape(self) -> tuple[int, ...]:
        """Shape of one measurement slice (what the operator makes for the grid)."""
        return tuple(self.operator.build(self.grid).measurement_size(tuple(self.grid)))

    def measurement_geometry(self, image_layer_geometry: dict[str, tuple]) -> dict[str, tuple]:
        """Geometry of the measurement layer: the image layer's stack axes, then :meth:`geometry`."""
        return _with_trailing(image_layer_geometry, self.geometry())

    def image_geometry(self, measurement_layer_geometry: dict[str, tuple]) -> dict[str, tuple]:
        """Geometry of image-space outputs: the measurement layer's stack axes, then the source image's."""
        image_axes = {
            "scale": self.image_scale,
            "translate": self.image_translate,
            "units": self.image_units,
            "axis_labels": self.image_axis_labels,
        }
        return _with_trailing(measurement_layer_geometry, image_axes)

    def geometry(self) -> dict[str, tuple]:
        """``scale``, ``translate``, ``units`` and ``axis_labels`` of a measurement's two axes.

        Image-like measurements cover the source image's field of view (grid pixels are larger
        when the grid is coarser). A CT sinogram is not an image of the same field: it is drawn
        *beside* the image, to its right (a gap of :data:`SINOGRAM_GAP` of the image's width), as
        tall as the image (one row per view) with one grid pixel per detector bin. It keeps the
        image's axis labels and units, so adding it neither renames the viewer's axes nor
        overlays the anatomy; its angles (``180 / n_views`` degrees per row) are in the metadata
        (:class:`MeasurementInfo`).
        """
        (height, width), (grid_h, grid_w) = self.image_shape, self.grid
        factor = self.operator.factor if self.operator.name == "downsample" else 1
        spacing = tuple(s * n / g * factor for s, n, g in zip(self.image_scale, (height, width), (grid_h, grid_w)))
        origin = tuple(t - s / 2 + d / 2 for t, s, d in zip(self.image_translate, self.image_scale, spacing))
        labels_units = {"units": tuple(self.image_units), "axis_labels": tuple(self.image_axis_labels)}
        if self.operator.name == "ct":
            top, left = (t - s / 2 for t, s in zip(self.image_translate, self.image_scale))
            field_h, field_w = height * self.image_scale[0], width * self.image_scale[1]
            row = field_h / self.operator.n_views
            sinogram_left = left + field_w * (1 + SINOGRAM_GAP)
            return {"scale": (row, spacing[1]), "translate": (top + row / 2, sinogram_left + spacing[1] / 2), **labels_units}
        return {"scale": spacing, "translate": origin, **labels_units}


def _with_trailing(geometry: dict[str, tuple], trailing: dict[str, tuple]) -> dict[str, tuple]:
    """``geometry`` with its last two entries of every key replaced by ``trailing``'s."""
    return {key: tuple(values[:-2]) + tuple(trailing[key]) for key, values in geometry.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def simulate_measurement(
    image: Any, settings: OperatorSettings, grid: tuple[int, int], noise_sigma: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Simulate the measurement of one grey image: resize to ``grid``, apply the operator, add noise.

    Parameters
    ----------
    image : array-like
        One ``(H, W)`` finite grey image, in the prior's intensity units.
    settings : OperatorSettings
    grid : tuple of int
        The prior's image size.
    noise_sigma : float
        Standard deviation of the Gaussian noise, in measurement units.
    seed : int
        Noise seed.

    Returns
    -------
    numpy.ndarray
        float32 measurement, e.g. a sinogram ``(n_views, n_detectors)``.
    """
    import torch  # only here: the rest of this module (layer metadata) needs no torch

    array = check_image(image, 1)
    operator = settings.build(grid)
    tensor = torch.from_numpy(resize_to_grid(np.asarray(array, dtype=np.float64), grid))[None, None]
    measurement = operator.simulate(tensor, noise_sigma=float(noise_sigma), seed=int(seed))
    return measurement[0, 0].float().numpy()
