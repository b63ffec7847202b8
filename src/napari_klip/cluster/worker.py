"""What runs on a Dask worker: the prior loaded once per worker process, and the scoring of one task.

Tasks are plain functions of a :class:`~napari_klip.cluster.spec.RunSpec`, the index of their
first image and the images themselves, so any Dask cluster (a ``LocalCluster``, dask-jobqueue,
a scheduler started by hand) can run them. They call the public API —
:func:`napari_klip.api.klip.score_stack` and :func:`napari_klip.api.lmd.score_stack` — and return
only what the result store keeps, as numpy arrays and floats.
"""

from __future__ import annotations

import functools
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .spec import RunSpec

__all__ = ["check_spec", "load_count", "score_task", "worker_prior"]

_LOCK = threading.Lock()
Function = TypeVar("Function", bound=Callable[..., Any])
_PRIORS: dict[tuple[str | None, str, str], Any] = {}
_LOADS: list[tuple[str | None, str, str]] = []


def worker_prior(spec: RunSpec) -> Any:
    """The prior of ``spec``, loaded on the first call in this process and kept for the next tasks."""
    key = spec.prior_key()
    with _LOCK:  # worker threads of one process share one loaded prior
        if key not in _PRIORS:
            from ..core.prior import resolve_prior

            _PRIORS[key] = resolve_prior(spec.prior, spec.device).set_precision(spec.precision)
            _LOADS.append(key)
        return _PRIORS[key]


def load_count() -> int:
    """How many times this process loaded a prior (``client.run(load_count)`` asks every worker)."""
    return len(_LOADS)


def _portable_errors(function: Function) -> Function:
    """Let ``function``'s errors reach the client: one that cannot be pickled is raised as a ``RuntimeError`` with its message."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            try:
                pickle.loads(pickle.dumps(error))
            except Exception:  # noqa: BLE001 - e.g. an error class whose __init__ takes other arguments
                raise RuntimeError(f"{type(error).__name__}: {error}") from None
            raise

    return wrapper  # type: ignore[return-value]


@_portable_errors
def check_spec(spec: RunSpec, sample: np.ndarray) -> dict[str, Any]:
    """Load the prior and reject settings it cannot run with — before any output is made.

    Parameters
    ----------
    spec : RunSpec
    sample : numpy.ndarray
        ``(n, H, W)`` images of the stack (all of it, or evenly spaced ones): their shape checks
        the block size and operator, their values resolve ``spec.intensity`` into one mapping.

    Returns
    -------
    dict
        The prior's image size and folder, for the settings record, and ``intensity``: the
        resolved :class:`~napari_klip.core.intensity.IntensityMapping` every task must use.
    """
    import warnings

    from ..core.intensity import resolve_intensity
    from ..core.patches import for_grid, working_grid

    prior = worker_prior(spec)
    if prior.channels != 1:
        raise ValueError(f"--dask scores grey images; the prior has {prior.channels} channels")
    shape = (int(sample.shape[1]), int(sample.shape[2]))
    grid = working_grid(prior, shape)
    if spec.method == "klip":
        from ..core.klip import resolve_map_settings
        from ..core.operators import build_operator

        spec.config.validate(prior.num_train_timesteps)
        if spec.prior_z is not None:
            spec.prior_z.validated(prior.num_train_timesteps)
        build_operator(spec.operator, grid, spec.operator_params)
        resolve_map_settings(grid, shape, spec.config, spec.block_size, spec.window, spec.threshold)
    else:
        from ..core.lmd.distances import make_distance

        grid_prior = for_grid(prior, shape, tiling=spec.tiling, patch_batch=spec.patch_batch)
        spec.config.validate(grid_prior)
        make_distance(spec.config.distance, prior=grid_prior, lpips_weights=spec.lpips_weights, device=prior.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the mapping's warning travels back in the mapping
        # images with NaN/inf fail in their own task, which names them; the mapping comes from the others
        finite = np.isfinite(sample.reshape(len(sample), -1)).all(axis=1) if np.issubdtype(sample.dtype, np.floating) else None
        usable = sample[finite] if finite is not None and finite.any() else sample
        intensity = resolve_intensity(usable, prior.metadata, spec.intensity)
    return {"prior_image_size": list(prior.metadata.image_size), "prior_path": str(prior.path) if prior.path else None,
            "intensity": intensity}


def _klip(spec: RunSpec, start: int, images: np.ndarray, prior: Any) -> list[dict[str, Any]]:
    from ..api.klip import score_stack

    results = score_stack(images, prior, config=replace(spec.config, seed=spec.config.seed + start), operator=spec.operator,
                          operator_params=spec.operator_params, noise_sigma=spec.noise_sigma, block_size=spec.block_size,
                          window=spec.window, threshold=spec.threshold, intensity=spec.intensity, tiling=spec.tiling,
                          patch_batch=spec.patch_batch, batch_images=1, prior_z=spec.prior_z or False)
    return [
        {"heatmap": r.heatmap.astype(np.float32), "labels": r.labels, "reconstruction": r.reconstruction.astype(np.float32),
         "score": r.score, "threshold_value": r.threshold_value,
         **({"prior_z": r.prior_z.astype(np.float32)} if r.prior_z is not None else {})}
        for r in results
    ]


def _lmd(spec: RunSpec, images: np.ndarray, prior: Any) -> list[dict[str, Any]]:
    from ..api.lmd import score_stack

    results = score_stack(images, prior, config=spec.config, lpips_weights=spec.lpips_weights, batch_images=spec.batch_size,
                          intensity=spec.intensity, tiling=spec.tiling, patch_batch=spec.patch_batch)
    return [
        {"heatmap": r.heatmap.astype(np.float32), "reconstructions": r.reconstructions.astype(np.float32),
         "distances": r.distances.astype(np.float32), "score": r.score, "masks": r.masks.astype(np.uint8)}
        for r in results
    ]


@_portable_errors
def score_task(spec: RunSpec, start: int, images: np.ndarray) -> dict[str, Any]:
    """Score ``images`` (images ``start``, ``start + 1``, ... of the stack) on this worker.

    KLIP scores image ``start + j`` with seed ``config.seed + start + j``; LMD scores the images as
    one batch, as the serial run with the same ``batch_size`` does — so results equal the serial run's.

    Returns
    -------
    dict
        ``start``, ``results`` (one dict of arrays and floats per image), ``worker`` (its
        address, or the process id outside a worker) and ``seconds`` spent.
    """
    begin = time.perf_counter()
    prior = worker_prior(spec)
    results = _klip(spec, start, images, prior) if spec.method == "klip" else _lmd(spec, images, prior)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        import os

        worker = f"pid {os.getpid()}"
    return {"start": start, "results": results, "worker": worker, "seconds": round(time.perf_counter() - begin, 4)}
