"""KLIP and LMD results as napari layers — for scripts, notebooks and the plugin's widgets.

Nothing here imports napari or Qt at import time; napari is only touched through the viewer you
pass to :func:`add_to_viewer` / :func:`add_layer_data` (which builds layers with napari's
``Layer.create``).

Example
-------
>>> import napari                                                        # doctest: +SKIP
>>> from napari_klip.api import score_image
>>> from napari_klip.layers import add_to_viewer
>>> viewer = napari.Viewer()
>>> image = viewer.add_image(ct_slice, name="ct", scale=(0.7, 0.7))
>>> result = score_image(ct_slice, operator="ct", operator_params={"n_views": 24})
>>> add_to_viewer(viewer, result, name="ct", scale=image.scale)      # heatmap, labels, reconstruction
>>> add_to_viewer(viewer, result.rescore(block_size=4), name="ct")   # updates the same three layers

Layer data tuples are ``(data, kwargs, layer_type)``, as napari readers and sample-data
functions return them. Result layers are named ``"<name> KLIP heatmap"``, ``"<name> KLIP
labels"``, ``"<name> KLIP reconstruction"``, ``"<name> LMD heatmap"`` and ``"<name> LMD
reconstruction"``, and carry ``metadata["napari_klip"]`` (``kind``, ``source``, ``output``);
adding results again updates the layers made for that source and output instead of adding new
ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .measurements import METADATA_KEY, MeasurementInfo

if TYPE_CHECKING:  # pragma: no cover
    from .klip import KlipResult
    from .lmd import LmdResult

__all__ = [
    "add_layer_data",
    "add_to_viewer",
    "heatmap_colormap",
    "inpainted_estimate",
    "klip_layer_data",
    "layer_data",
    "lmd_layer_data",
    "measurement_layer_data",
    "plugin_layer",
    "stack_parts",
]

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

#: Heatmaps are drawn over the image with ``translucent`` blending and a colormap whose alpha rises
#: from 0 at the lower contrast limit to 1 at the upper: where the map is low the anatomy shows
#: unchanged, hot spots cover it. (``additive`` brightened every pixel, washing out the anatomy.)
HEATMAP_STYLE = {"opacity": 0.8, "blending": "translucent"}
#: Control points of a heatmap colormap.
HEATMAP_COLORMAP_STOPS = 32


def heatmap_colormap(base: str) -> dict[str, Any] | str:
    """napari's colormap ``base`` with alpha rising linearly from 0 (low values) to 1 (high values).

    Returned as the dict napari's ``ensure_colormap`` accepts (``name``, ``colors``, ``controls``),
    named ``"<base> (low transparent)"``. The colours come from napari; without napari installed
    (layer data built for later use) the plain name ``base`` is returned.

    Parameters
    ----------
    base : str
        A napari colormap name, e.g. ``"inferno"``.

    Returns
    -------
    dict or str
    """
    try:
        from napari.utils.colormaps import ensure_colormap
    except ImportError:  # pragma: no cover - napari is optional for building layer data
        return base
    controls = np.linspace(0.0, 1.0, HEATMAP_COLORMAP_STOPS)
    colors = np.array(ensure_colormap(base).map(controls), dtype=np.float32)
    colors[:, 3] = controls
    return {"name": f"{base} (low transparent)", "colors": colors, "controls": controls}


def stack_parts(parts: list[Any], stack_shape: tuple[int, ...]) -> np.ndarray:
    """Stack per-slice arrays into ``(*stack_shape, *part.shape)``; ``None`` parts become zeros.

    Parameters
    ----------
    parts : list of numpy.ndarray or None
        In C order over ``stack_shape``; at least one is an array, all arrays share one shape.
    stack_shape : tuple of int

    Returns
    -------
    numpy.ndarray
    """
    template = next((p for p in parts if p is not None), None)
    if template is None:
        raise ValueError("no slice holds a result")
    if int(np.prod(stack_shape, dtype=np.int64)) != len(parts):
        raise ValueError(f"stack shape {stack_shape} does not hold {len(parts)} slices")
    stacked = np.zeros((len(parts), *template.shape), dtype=template.dtype)
    for index, part in enumerate(parts):
        if part is not None:
            if part.shape != template.shape:
                raise ValueError(f"slices differ in shape: {part.shape} and {template.shape}")
            stacked[index] = part
    return stacked.reshape(*stack_shape, *template.shape)


def _as_list(result: Any) -> tuple[list[Any], bool]:
    """``(results, is_stack)``: a single result becomes a one-element list."""
    if isinstance(result, Sequence) and not isinstance(result, (str, bytes)):
        results = list(result)
        if not any(r is not None for r in results):
            raise ValueError("the result sequence holds no result")
        return results, True
    if result is None:
        raise ValueError("no result given")
    return [result], False


def _with_stack_shape(result: Any, stack_shape: tuple[int, ...] | None) -> tuple[list[Any], tuple[int, ...]]:
    """The results as a list, and their stack shape (``(len,)`` for a sequence, ``()`` for one)."""
    results, is_stack = _as_list(result)
    if stack_shape is not None:
        return results, tuple(stack_shape)
    return results, (len(results),) if is_stack else ()


GEOMETRY_KEYS = ("scale", "translate", "units", "axis_labels")


def _geometry(ndim: int, geometry: dict[str, Any]) -> dict[str, tuple]:
    """Layer keyword arguments for an ``ndim``-D layer."""
    unknown = set(geometry) - set(GEOMETRY_KEYS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}; the geometry is given as {', '.join(GEOMETRY_KEYS)}")
    checked = {}
    for key, value in geometry.items():
        if value is None:
            continue
        value = tuple(v.item() if isinstance(v, np.generic) else v for v in value)
        if len(value) != ndim:
            raise ValueError(f"{key} has {len(value)} entries but the result layers have {ndim} image-space axes")
        checked[key] = tuple(str(v) if key == "units" else v for v in value)
    return checked


def inpainted_estimate(reconstructions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """One image from LMD's reconstructions: each pixel the mean of those that inpainted it.

    Parameters
    ----------
    reconstructions : numpy.ndarray
        ``(R, H, W)`` or ``(R, H, W, C)``.
    masks : numpy.ndarray
        ``(R, H, W)`` bool, ``True`` where reconstruction ``r`` inpainted the pixel.

    Returns
    -------
    numpy.ndarray
        ``(H, W[, C])`` float32; a pixel no mask covered gets the median of all reconstructions.
    """
    recon = np.asarray(reconstructions, dtype=np.float32)
    weights = np.asarray(masks, dtype=np.float32).reshape(masks.shape + (1,) * (recon.ndim - masks.ndim))
    covered = weights.sum(axis=0)
    mean = (recon * weights).sum(axis=0) / np.maximum(covered, 1.0)
    return np.where(covered > 0, mean, np.median(recon, axis=0)).astype(np.float32)


def _limits(data: np.ndarray) -> tuple[float, float]:
    low, high = float(np.min(data)), float(np.max(data))
    return (low, high) if high > low else (low, low + 1.0)


def _named(name: str, output: str, kind: str, scores: list[float | None] | None = None, **extra: Any) -> dict[str, Any]:
    """``name`` and ``metadata`` of a result layer: ``"<name> <output>"``, recognisable by source and output."""
    entry = {"kind": kind, "source": name, "output": output, **extra}
    if scores is not None:
        entry["scores"] = scores
    return {"name": f"{name} {output}", "metadata": {METADATA_KEY: entry}}


def klip_layer_data(
    result: "KlipResult | Sequence[KlipResult | None]",
    name: str = "image",
    *,
    stack_shape: tuple[int, ...] | None = None,
    **geometry: Sequence[Any],
) -> list[LayerDataTuple]:
    """KLIP result(s) as layer data tuples: reconstruction, heatmap and labels.

    Parameters
    ----------
    result : KlipResult or sequence of KlipResult
        One result, or the results of the slices of a stack in C order over ``stack_shape``
        (``None`` for a slice that was not scored: its layers hold zeros there).
    name : str
        Name of the input; the layers are ``"<name> KLIP heatmap"``, ``"… labels"``,
        ``"… reconstruction"``.
    stack_shape : tuple of int, optional
        Shape of the stack axes; ``(len(result),)`` for a sequence, ``()`` for one result.
    **geometry : sequence
        ``scale``, ``translate``, ``units``, ``axis_labels`` of the input layer (one entry per
        axis of the heatmap); omitted ones take napari's defaults.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: an image layer with the reconstruction (hidden), the
        heatmap (``inferno`` with transparent low values, translucent, contrast limits from the
        heatmap; see :func:`heatmap_colormap`) and a labels layer with the flagged blocks; when a
        result holds a prior z-map (``prior_z=True``), a hidden ``"<name> prior z-map"`` image
        layer (``viridis``; zeros on slices without one).
    """
    results, stack_shape = _with_stack_shape(result, stack_shape)
    parts = {key: [getattr(r, key) if r is not None else None for r in results] for key in ("heatmap", "labels", "reconstruction", "prior_z")}
    heatmap = stack_parts(parts["heatmap"], stack_shape).astype(np.float32, copy=False)
    labels = stack_parts(parts["labels"], stack_shape)
    reconstruction = stack_parts(parts["reconstruction"], stack_shape)
    scores = [float(r.score) if r is not None else None for r in results]
    layout = _geometry(heatmap.ndim, geometry)
    layers = [
        (
            reconstruction,
            {
                **_named(name, "KLIP reconstruction", "klip-reconstruction", scores),
                "colormap": "gray",
                "visible": False,
                "rgb": reconstruction.ndim == heatmap.ndim + 1,
                **layout,
            },
            "image",
        ),
        (
            heatmap,
            {
                **_named(name, "KLIP heatmap", "klip-heatmap", scores),
                "colormap": heatmap_colormap("inferno"),
                "contrast_limits": _limits(heatmap),
                **HEATMAP_STYLE,
                **layout,
            },
            "image",
        ),
        (
            labels,
            {"opacity": 0.5, **_named(name, "KLIP labels", "klip-labels", scores), **layout},
            "labels",
        ),
    ]
    if any(z is not None for z in parts["prior_z"]):
        prior_z = stack_parts(parts["prior_z"], stack_shape).astype(np.float32, copy=False)
        layers.append((
            prior_z,
            {
                **_named(name, "prior z-map", "prior-z"),
                "colormap": heatmap_colormap("viridis"),
                "contrast_limits": _limits(prior_z),
                **HEATMAP_STYLE,
                "visible": False,
                **layout,
            },
            "image",
        ))
    return layers


def lmd_layer_data(
    result: "LmdResult | Sequence[LmdResult | None]",
    name: str = "image",
    *,
    stack_shape: tuple[int, ...] | None = None,
    **geometry: Sequence[Any],
) -> list[LayerDataTuple]:
    """LMD result(s) as layer data tuples: reconstructions and the distance heatmap.

    Parameters
    ----------
    result, name, stack_shape, **geometry
        As for :func:`klip_layer_data`.

    Returns
    -------
    list of tuple
        ``"<name> LMD reconstruction"`` (hidden; input-shaped: every pixel is the mean of the
        reconstructions that inpainted it, see :func:`inpainted_estimate` — no extra axis, so the
        viewer's dimensions stay those of the input, and slices scored with different numbers of
        reconstructions stack) and ``"<name> LMD heatmap"`` (input-shaped, ``magma`` with
        transparent low values, translucent). All reconstructions stay in each result's
        ``reconstructions``.
    """
    results, stack_shape = _with_stack_shape(result, stack_shape)
    heatmap = stack_parts([r.heatmap if r is not None else None for r in results], stack_shape).astype(np.float32, copy=False)
    estimates = [inpainted_estimate(r.reconstructions, r.masks) if r is not None else None for r in results]
    reconstruction = stack_parts(estimates, stack_shape)
    scores = [float(r.score) if r is not None else None for r in results]
    rgb = reconstruction.ndim == heatmap.ndim + 1
    layout = _geometry(heatmap.ndim, geometry)
    return [
        (
            reconstruction,
            {
                **_named(name, "LMD reconstruction", "lmd-reconstruction", scores),
                "colormap": "gray",
                "visible": False,
                "rgb": rgb,
                **layout,
            },
            "image",
        ),
        (
            heatmap,
            {
                **_named(name, "LMD heatmap", "lmd-heatmap", scores),
                "colormap": heatmap_colormap("magma"),
                "contrast_limits": _limits(heatmap),
                **HEATMAP_STYLE,
                **layout,
            },
            "image",
        ),
    ]


def measurement_layer_data(
    measurements: "np.ndarray | Sequence[np.ndarray | None]",
    name: str = "image",
    *,
    info: MeasurementInfo,
    stack_shape: tuple[int, ...] | None = None,
    **geometry: Sequence[Any],
) -> list[LayerDataTuple]:
    """Simulated measurement(s) as one image layer whose metadata lets KLIP score it.

    Parameters
    ----------
    measurements : numpy.ndarray or sequence of numpy.ndarray
        One measurement, or one per slice of a stack (``None`` = not simulated: zeros).
    name : str
        Name of the source image; the layer is ``"<name> <operator> measurement"``.
    info : MeasurementInfo
        How they were made; stored in ``metadata["napari_klip"]``.
    stack_shape : tuple of int, optional
        As for :func:`klip_layer_data`.
    **geometry : sequence
        ``scale``, ``translate``, ``units``, ``axis_labels`` of the *source image* layer: the
        stack axes keep them, the two measurement axes get :meth:`MeasurementInfo.geometry` (a
        sinogram: angle in degrees, detector bins).

    Returns
    -------
    list of tuple
    """
    results, stack_shape = _with_stack_shape(measurements, stack_shape)
    data = stack_parts(results, stack_shape).astype(np.float32, copy=False)
    layout = _geometry(data.ndim, geometry)
    defaults = {
        "scale": (1.0,) * data.ndim,
        "translate": (0.0,) * data.ndim,
        "units": ("pixel",) * data.ndim,
        "axis_labels": tuple(str(axis - data.ndim) for axis in range(data.ndim)),
    }
    filled = {key: layout.get(key, default) for key, default in defaults.items()}
    kwargs = {
        "colormap": "gray",
        **_named(name, f"{info.operator.name} measurement", **info.to_metadata()),
        **info.measurement_geometry(filled),
    }
    return [(data, kwargs, "image")]


def layer_data(result: Any, name: str = "image", **kwargs: Any) -> list[LayerDataTuple]:
    """Layer data tuples of a KLIP or LMD result (or a sequence of one kind); see :func:`klip_layer_data`."""
    from .klip import KlipResult  # imported here: building layer data for given results needs no torch
    from .lmd import LmdResult

    results, _ = _as_list(result)
    first = next(r for r in results if r is not None)
    if isinstance(first, KlipResult):
        return klip_layer_data(result, name, **kwargs)
    if isinstance(first, LmdResult):
        return lmd_layer_data(result, name, **kwargs)
    raise TypeError(f"expected a KlipResult or LmdResult, got {type(first).__name__}")


def plugin_layer(viewer: Any, source: str, output: str) -> Any:
    """The layer napari-klip made as ``output`` (e.g. ``"KLIP heatmap"``) for the input ``source``, or ``None``.

    Layers are recognised by ``metadata["napari_klip"]``, not by name: napari renames a new layer
    whose name is taken, and users may rename layers.
    """
    for layer in viewer.layers:
        entry = layer.metadata.get(METADATA_KEY) or {}
        if entry.get("output") == output and entry.get("source") == source:
            return layer
    return None


def _updatable(layer: Any, data: np.ndarray, kwargs: dict[str, Any], layer_type: str) -> bool:
    return (
        layer.__class__.__name__.lower() == layer_type
        and layer.ndim == data.ndim - (1 if kwargs.get("rgb") else 0)
        and bool(getattr(layer, "rgb", False)) == bool(kwargs.get("rgb", False))
    )


def add_layer_data(viewer: Any, layer_data: Sequence[LayerDataTuple]) -> list[Any]:
    """Add layer data tuples to ``viewer``, updating the layers napari-klip made before.

    A layer made before for the same input and of the same kind (``metadata["napari_klip"]``,
    see :func:`plugin_layer`) gets the new data,
    geometry, metadata and (for heatmaps) contrast limits; its colormap, opacity and visibility
    stay as the user set them. A layer of another dimensionality is replaced in place. Layers the
    plugin did not make are never touched.

    Returns
    -------
    list of napari.layers.Layer
        The added or updated layers, in the order given.
    """
    from napari.layers import Layer

    layers = []
    for data, kwargs, layer_type in layer_data:
        entry = kwargs["metadata"][METADATA_KEY]
        existing = plugin_layer(viewer, entry["source"], entry["output"])
        if existing is not None and _updatable(existing, data, kwargs, layer_type):
            existing.data = data
            for key in ("scale", "translate", "units", "axis_labels", "metadata"):
                if key in kwargs:
                    setattr(existing, key, kwargs[key])
            if "contrast_limits" in kwargs:
                existing.contrast_limits_range = kwargs["contrast_limits"]
                existing.contrast_limits = kwargs["contrast_limits"]
            layers.append(existing)
            continue
        layer = Layer.create(data, dict(kwargs), layer_type)
        if existing is not None:
            position = list(viewer.layers).index(existing)
            viewer.layers.remove(existing)
            viewer.layers.insert(position, layer)
        else:
            viewer.add_layer(layer)
        layers.append(layer)
    return layers


def add_to_viewer(
    viewer: Any,
    result: Any,
    name: str = "image",
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    units: Sequence[str] | None = None,
    axis_labels: Sequence[str] | None = None,
    stack_shape: tuple[int, ...] | None = None,
) -> list[Any]:
    """Show a KLIP or LMD result in ``viewer``: add its layers, or update those added before.

    Parameters
    ----------
    viewer : napari.Viewer
    result : KlipResult, LmdResult, or a sequence of one kind (a stack)
    name : str
        Name of the input (the layers are named after it).
    scale, translate, units, axis_labels : sequence, optional
        Of the input layer, e.g. ``scale=image_layer.scale``.
    stack_shape : tuple of int, optional
        Stack axes of a sequence of results (default ``(len(result),)``).

    Returns
    -------
    list of napari.layers.Layer
    """
    data = layer_data(result, name, stack_shape=stack_shape, scale=scale, translate=translate, units=units, axis_labels=axis_labels)
    return add_layer_data(viewer, data)
