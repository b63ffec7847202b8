"""Scoring beyond one process: images distributed over a Dask cluster, results streamed to Zarr.

Needs the optional dependencies of ``pip install 'napari-klip[dask]'`` (dask.distributed, zarr);
importing this package imports neither (nor torch) — :mod:`.engine` and :mod:`.store` import them
when used, with a one-line error naming the extra when they are missing.

* :mod:`.sources` — stacks read a few images at a time (TIFF via tifffile's Zarr store, Zarr, folders);
* :mod:`.spec` — :class:`RunSpec`, the detector and its settings, recorded in the store;
* :mod:`.worker` — what runs on a worker: the prior loaded once per process, one task's scoring;
* :mod:`.store` — the Zarr layout, done markers, :func:`open_result` (lazy dask arrays);
* :mod:`.engine` — :func:`connect` (a scheduler address or a ``LocalCluster``), :func:`score_distributed`.

Example
-------
>>> from napari_klip.cluster import RunSpec, connect, score_distributed      # doctest: +SKIP
>>> from napari_klip.core.options import KlipConfig
>>> spec = RunSpec("klip", KlipConfig(seed=0), operator="ct", operator_params={"n_views": 24})
>>> with connect(n_workers=2) as client:
...     summary = score_distributed("ct_stack.tif", "ct_scores.zarr", spec, client)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunSpec": ".spec",
    "RunSummary": ".engine",
    "connect": ".engine",
    "open_result": ".store",
    "open_source": ".sources",
    "score_distributed": ".engine",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
