"""The Zarr store a distributed run writes into, one image at a time, and that napari opens lazily.

Layout (Zarr format 2; the image groups carry OME-Zarr 0.4 ``multiscales`` metadata with one level)::

    out.zarr/                    attrs["napari_klip"]: the settings record; attrs["napari_klip_runs"]: one entry per run
      heatmap/0                  (N, H, W) float32   KLIP and LMD
      labels/0                   (N, H, W) uint8     KLIP: 1 on flagged blocks
      reconstruction/0           (N, H, W) float32   KLIP: posterior mean
      prior_z/0                  (N, H, W) float32   KLIP with --prior-z: the prior z-map
      reconstructions/0          (N, R, H, W) float32  LMD
      score                      (N,) float64        NaN until the image is done
      threshold_value            (N,) float64        KLIP
      distances                  (N, R) float32      LMD
      masks                      (R, H, W) uint8     LMD (the same for every image)
      done                       (N,) uint8          1 once every array of the image is written

Image arrays are chunked one image per chunk. One process (the client) writes, and Zarr replaces
each chunk file by a rename, so ``done[i]`` — written after image ``i``'s data — is the marker a
re-run trusts: an image whose data a killed run half wrote has ``done[i] == 0`` and is recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .sources import import_optional
from .spec import RunSpec

__all__ = ["ResultStore", "open_result"]

#: Version of the layout above, in the settings record.
FORMAT_VERSION = 1
_SCALAR_CHUNK = 4096


def _image_arrays(spec: RunSpec, n: int, hw: tuple[int, int]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The per-image image arrays of ``spec``'s method: name -> (shape, dtype)."""
    if spec.method == "klip":
        arrays = {"heatmap": ((n, *hw), "float32"), "labels": ((n, *hw), "uint8"), "reconstruction": ((n, *hw), "float32")}
        if spec.prior_z is not None:
            arrays["prior_z"] = ((n, *hw), "float32")
        return arrays
    r = spec.config.num_reconstructions
    return {"heatmap": ((n, *hw), "float32"), "reconstructions": ((n, r, *hw), "float32")}


def _ome_attrs(name: str, ndim: int) -> dict[str, Any]:
    axes = [{"name": "image"}] + ([{"name": "reconstruction"}] if ndim == 4 else []) + [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    return {"multiscales": [{"version": "0.4", "name": name, "axes": axes,
                             "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * ndim}]}]}]}


class ResultStore:
    """A run's Zarr store: create it, see which images are done, write finished images.

    Parameters
    ----------
    path : Path
        The store folder.
    """

    def __init__(self, path: Path):
        self.zarr = import_optional("zarr")
        self.path = Path(path)
        self.root = self.zarr.open_group(str(self.path), mode="r+", zarr_format=2)
        self._masks_written = "masks" not in self.root or bool(self.done().any())

    @staticmethod
    def record_of(path: Path) -> dict[str, Any] | None:
        """The settings record of the store at ``path``; ``None`` when it is no napari-klip store."""
        zarr = import_optional("zarr")
        try:
            return dict(zarr.open_group(str(path), mode="r", zarr_format=2).attrs["napari_klip"])
        except Exception:  # noqa: BLE001 - not a group, not Zarr, or no record: not ours
            return None

    @classmethod
    def create(cls, path: Path, spec: RunSpec, n: int, hw: tuple[int, int], record: dict[str, Any]) -> "ResultStore":
        """Make a new store at ``path`` (which must not exist) with empty arrays for ``n`` images of ``hw``."""
        zarr = import_optional("zarr")
        root = zarr.open_group(str(path), mode="w-", zarr_format=2)
        for name, (shape, dtype) in _image_arrays(spec, n, hw).items():
            group = root.create_group(name)
            group.attrs.update(_ome_attrs(name, len(shape)))
            group.create_array("0", shape=shape, chunks=(1, *shape[1:]), dtype=dtype, fill_value=0)
        chunk = (min(n, _SCALAR_CHUNK),)
        root.create_array("score", shape=(n,), chunks=chunk, dtype="float64", fill_value=np.nan)
        if spec.method == "klip":
            root.create_array("threshold_value", shape=(n,), chunks=chunk, dtype="float64", fill_value=np.nan)
        else:
            r = spec.config.num_reconstructions
            root.create_array("distances", shape=(n, r), chunks=(chunk[0], r), dtype="float32", fill_value=np.nan)
            root.create_array("masks", shape=(r, *hw), chunks=(r, *hw), dtype="uint8", fill_value=0)
        root.create_array("done", shape=(n,), chunks=chunk, dtype="uint8", fill_value=0)
        root.attrs.update({"napari_klip": {**record, "format_version": FORMAT_VERSION}, "napari_klip_runs": []})
        return cls(path)

    def done(self) -> np.ndarray:
        """``(N,)`` bool: which images are finished."""
        return np.asarray(self.root["done"][:]).astype(bool)

    def write(self, index: int, result: dict[str, Any]) -> None:
        """Write image ``index``'s arrays, then mark it done."""
        for name, value in result.items():
            if name == "masks":  # LMD's masks are the same for every image: written once
                if not self._masks_written:
                    self.root["masks"][:] = value
                    self._masks_written = True
            elif name in ("score", "threshold_value", "distances"):
                self.root[name][index] = value
            else:
                self.root[f"{name}/0"][index] = value
        self.root["done"][index] = 1

    def add_run(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` (who computed how much, how fast) to ``attrs["napari_klip_runs"]``."""
        self.root.attrs["napari_klip_runs"] = [*self.root.attrs.get("napari_klip_runs", []), entry]


def open_result(path: str | Path) -> dict[str, Any]:
    """The arrays of a result store as lazy dask arrays (nothing is read until used), and its records.

    Parameters
    ----------
    path : str or Path
        A store written by ``napari-klip score|lmd --dask``.

    Returns
    -------
    dict
        ``heatmap``, ``labels`` / ``reconstruction`` (KLIP; ``prior_z`` with ``--prior-z``) or
        ``reconstructions`` (LMD), ``score``, ``done``, ... as :class:`dask.array.Array`; ``record``
        (the settings) and ``runs``.

    Example
    -------
    >>> result = open_result("out.zarr")                             # doctest: +SKIP
    >>> viewer.add_image(result["heatmap"], colormap="magma")         # doctest: +SKIP
    >>> viewer.add_labels(result["labels"])                           # doctest: +SKIP
    """
    record = ResultStore.record_of(Path(path))
    if record is None:
        raise FileNotFoundError(f"'{path}' is not a result store written by napari-klip --dask")
    da = import_optional("dask.array", "open_result")
    zarr = import_optional("zarr", "open_result")
    root = zarr.open_group(str(path), mode="r", zarr_format=2)
    arrays: dict[str, Any] = {name: da.from_zarr(root[name]) for name in root.array_keys()}
    arrays.update({name: da.from_zarr(root[f"{name}/0"]) for name in root.group_keys()})
    return {**arrays, "record": record, "runs": list(root.attrs.get("napari_klip_runs", []))}
