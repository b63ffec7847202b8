"""KLIP over numpy arrays: score an image, a stack, or given measurements.

Example
-------
>>> from napari_klip.api import score_image                     # doctest: +SKIP
>>> result = score_image(ct_slice, "organ_prior", operator="ct",
...                      operator_params={"n_views": 24}, config=KlipConfig(seed=0))
>>> result.score, result.heatmap.shape                          # doctest: +SKIP
>>> coarser = result.rescore(block_size=4, window=(60, 90))     # no new sampling

:func:`score_image` and :func:`score_stack` have the shape of their LMD counterparts in
:mod:`napari_klip.api.lmd`: the image(s) and the prior, then keyword-only options.

Inputs are never modified. With a whole-image prior, images whose size differs from the prior's
are resized to it (linear interpolation) for scoring, and every image-space output is resized
back to the input's shape (heatmap linearly, labels by nearest neighbour). With a patch prior
(``napari-klip train --patch-size``) images are scored at their native size: the network runs by
tiles (:mod:`napari_klip.core.patches`), operators are built for the input's grid and block sizes
count image pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import ImageDataError
from ..core.grid import check_image, check_stack, to_input_grid, to_prior_grid
from ..core.klip import (
    KlipConfig,
    KlipTrace,
    block_score_map,
    default_block_size,
    default_window,
    heatmap_from_blocks,
    image_score,
    measurement_to_model_range,
    run_klip,
    threshold_blocks,
)
from ..core.operators import Operator, build_operator
from ..core.options import DEFAULT_THRESHOLD, TILINGS
from ..core.patches import for_grid, tile_progress, tiling_parameters, working_grid
from ..core.prior import DiffusionPrior, resolve_prior
from ..core.progress import Progress, ProgressCallback, ShouldCancel

__all__ = ["DEFAULT_THRESHOLD", "KlipResult", "score_image", "score_measurement", "score_measurements", "score_stack"]


@dataclass
class KlipResult:
    """The KLIP analysis of one image.

    Attributes
    ----------
    score : float
        Whole-image score: the maximum block score.
    score_map : numpy.ndarray
        Block scores on the prior's grid, ``(H_prior / b, W_prior / b)``.
    heatmap : numpy.ndarray
        Block scores spread over the input's pixels, shaped like the input (float32).
    labels : numpy.ndarray
        ``uint8`` mask shaped like the input: 1 on flagged blocks.
    threshold_value : float
        The block-score threshold the labels used.
    reconstruction, reconstruction_std : numpy.ndarray
        Posterior mean and per-pixel standard deviation, in the input's intensity units and shape.
    observed : numpy.ndarray
        What the measurement shows without the prior, in the input's units and shape: the
        operator's approximate inverse of it (filtered back-projection for CT; the image itself
        for denoising), or the measurement itself for image-shaped operators without one
        (blur). The trivial baselines (:mod:`napari_klip.core.baselines`) are computed on it.
    trace : KlipTrace
        The per-step energy (enough to recompute any window and block size).
    block_size : int
    window : tuple of int
    threshold : str
    parameters : dict
        Operator, sampler settings, prior, noise level, input shape, device — for result files.
    """

    score: float
    score_map: np.ndarray
    heatmap: np.ndarray
    labels: np.ndarray
    threshold_value: float
    reconstruction: np.ndarray
    reconstruction_std: np.ndarray
    observed: np.ndarray
    trace: KlipTrace
    block_size: int
    window: tuple[int, int]
    threshold: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def rescore(self, block_size: int | None = None, window: tuple[int, int] | None = None, threshold: str | None = None) -> "KlipResult":
        """Recompute maps, score and labels for another block size, window or threshold — no sampling.

        Returns
        -------
        KlipResult
            A new result; this one is unchanged.
        """
        maps = _maps(
            self.trace,
            tuple(self.heatmap.shape),
            self.block_size if block_size is None else block_size,
            self.window if window is None else window,
            self.threshold if threshold is None else threshold,
        )
        return replace(self, **maps)


def _maps(trace: KlipTrace, input_hw: tuple[int, int], block_size: int, window: tuple[int, int], threshold: str) -> dict[str, Any]:
    score_map = block_score_map(trace.energy, block_size, window)
    flagged, threshold_value = threshold_blocks(score_map, threshold)
    heatmap = to_input_grid(heatmap_from_blocks(score_map, block_size), input_hw, order=1)
    labels = to_input_grid(heatmap_from_blocks(flagged.astype(np.float32), block_size), input_hw, order=0)
    return {
        "score": image_score(score_map),
        "score_map": score_map,
        "heatmap": heatmap,
        "labels": (labels > 0.5).astype(np.uint8),
        "threshold_value": threshold_value,
        "block_size": int(block_size),
        "window": (int(window[0]), int(window[1])),
        "threshold": threshold,
    }


def _check_scoring(prior: DiffusionPrior, config: KlipConfig, block_size: int, window: tuple[int, int], threshold: str) -> None:
    """Fail before sampling on a block size, window or threshold rule that scoring would reject."""
    steps = config.stop_after_step or config.num_steps
    block_score_map(np.zeros((steps, *prior.image_size), np.float32), block_size, window)
    threshold_blocks(np.zeros(1), threshold)


def _finish(
    prior: DiffusionPrior,
    operator: Operator,
    measurement_model: Any,
    input_shape: tuple[int, ...],
    config: KlipConfig,
    block_size: int | None,
    window: tuple[int, int] | None,
    threshold: str,
    extra: dict[str, Any],
    progress: ProgressCallback | None,
    should_cancel: ShouldCancel | None,
) -> KlipResult:
    block_size = default_block_size(prior.image_size) if block_size is None else block_size
    window = default_window(config.num_steps) if window is None else window
    _check_scoring(prior, config, block_size, window, threshold)
    progress = tile_progress(prior, config.num_samples, config.stop_after_step or config.num_steps, progress)
    trace = run_klip(prior, operator, measurement_model, config, progress=progress, should_cancel=should_cancel)
    input_hw = tuple(input_shape[:2])
    reconstruction = prior.from_model_range(trace.reconstruction)
    spread = trace.reconstruction_std * (prior.metadata.intensity_range[1] - prior.metadata.intensity_range[0]) / 2.0
    reshape = (lambda a: a[0]) if prior.channels == 1 else (lambda a: np.moveaxis(a, 0, -1))
    reconstruction = to_input_grid(reshape(reconstruction), tuple(input_shape), order=1)
    spread = to_input_grid(reshape(spread).astype(np.float32), tuple(input_shape), order=1)
    observed = to_input_grid(reshape(prior.from_model_range(_observed_model(operator, measurement_model))), tuple(input_shape), order=1)
    parameters = {
        "operator": operator.describe(),
        "sampler": asdict(config),
        "prior": str(prior.path) if prior.path else None,
        "prior_image_size": list(prior.metadata.image_size),
        "input_shape": list(input_shape),
        "device": str(prior.device),
        "network_calls": trace.network_calls,
        "wall_time_s": round(trace.wall_time_s, 3),
        **tiling_parameters(prior),
        **extra,
    }
    return KlipResult(
        reconstruction=reconstruction,
        reconstruction_std=spread,
        observed=observed,
        trace=trace,
        parameters=parameters,
        **_maps(trace, input_hw, block_size, window, threshold),
    )


def _observed_model(operator: Operator, measurement_model: Any) -> np.ndarray:
    """``(C, H, W)`` model-range image of what the measurement shows without the prior."""
    with torch.no_grad():
        if operator.has_approximate_inverse():
            image = operator.approximate_inverse(measurement_model)
        else:  # image-shaped measurements (blur): the measurement is what the user sees
            image = measurement_model
    return image[0].float().cpu().numpy()


def score_image(
    image: Any,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    operator: Operator | str = "ct",
    operator_params: dict[str, Any] | None = None,
    noise_sigma: float = 0.0,
    config: KlipConfig | None = None,
    block_size: int | None = None,
    window: tuple[int, int] | None = None,
    threshold: str = DEFAULT_THRESHOLD,
    device: str = "auto",
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> KlipResult:
    """Simulate a measurement of ``image`` and score it with KLIP.

    Parameters
    ----------
    image : array-like
        One ``(H, W)`` grey image (or ``(H, W, C)`` for a colour prior) in the prior's
        intensity units (``prior.metadata.intensity_range``).
    prior : DiffusionPrior, str or Path
        A loaded prior or a prior folder.
    operator : Operator or {"ct", "blur", "inpaint", "denoise", "downsample"}
        The forward model; by name it is built with ``operator_params`` for the working grid: the
        prior's image size, or the input's size for a patch prior.
    operator_params : dict, optional
        E.g. ``{"n_views": 24}`` for CT, ``{"kernel_size": 9, "sigma": 2}`` for blur.
    noise_sigma : float
        Measurement noise, in the measurement's intensity units; seeded by ``config.seed``.
    config : KlipConfig, optional
        Sampler settings (samples, steps, ζ0, σ_y, guidance, seed).
    block_size : int, optional
        Block side on the prior's grid; default :func:`~napari_klip.core.klip.default_block_size`.
    window : tuple of int, optional
        Step window ``[start, stop)``; default the paper's ``[65, 85)`` of 100, scaled.
    threshold : str
        Label rule (see :func:`~napari_klip.core.klip.threshold_blocks`).
    device : str
        Where to load a prior given as a path.
    progress, should_cancel : callable, optional
        Called with a :class:`~napari_klip.core.progress.Progress` after every step; cancel check
        polled after every step.

    Returns
    -------
    KlipResult

    Raises
    ------
    Cancelled
        When ``should_cancel`` returned true.
    """
    config = config or KlipConfig()
    prior = resolve_prior(prior, device)
    array = check_image(image, prior.channels)
    prior = for_grid(prior, array.shape[:2], tiling=tiling, patch_batch=patch_batch, seed=config.seed)
    config.validate(prior.num_train_timesteps)
    op = build_operator(operator, prior.image_size, operator_params)
    model_image = torch.from_numpy(to_prior_grid(array, prior))[None]
    intensity_image = prior.from_model_range(model_image)
    measurement = op.simulate(intensity_image.double(), noise_sigma=noise_sigma, seed=config.seed).float()
    measurement_model = measurement_to_model_range(prior, op, measurement)
    return _finish(
        prior, op, measurement_model, array.shape, config, block_size, window, threshold,
        {"noise_sigma": noise_sigma, "measurement": "simulated"}, progress, should_cancel,
    )


def score_measurement(
    measurement: Any,
    operator: Operator,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: KlipConfig | None = None,
    block_size: int | None = None,
    window: tuple[int, int] | None = None,
    threshold: str = DEFAULT_THRESHOLD,
    device: str = "auto",
    output_shape: tuple[int, int] | None = None,
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> KlipResult:
    """Score a given (e.g. measured) measurement with KLIP.

    Parameters
    ----------
    measurement : array-like
        One measurement, shaped like ``operator``'s output for one grey image (e.g. a sinogram
        ``(n_views, n_detectors)``), in the intensity units of the prior's metadata (the
        measurement of an image in those units).
    operator : Operator
        Built for the prior's image size (e.g. ``SparseViewCT(prior.image_size, angles=...)``); for
        a patch prior, for the image grid it measured (the working grid is then the operator's
        ``image_size()``, else ``output_shape``).
    output_shape : tuple of int, optional
        Shape of the image-space outputs; the working grid by default.
    prior, config, block_size, window, threshold, device, tiling, patch_batch, progress, should_cancel
        As for :func:`score_image`.

    Returns
    -------
    KlipResult
    """
    config = config or KlipConfig()
    prior = resolve_prior(prior, device)
    measured_grid = operator.image_size() or (tuple(output_shape)[:2] if output_shape is not None else prior.image_size)
    prior = for_grid(prior, measured_grid, tiling=tiling, patch_batch=patch_batch, seed=config.seed)
    config.validate(prior.num_train_timesteps)
    array = np.asarray(measurement)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)) or array.dtype == bool:
        raise TypeError(f"measurement must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"measurement must be one 2-D array (e.g. a sinogram), got shape {array.shape}")
    if not np.all(np.isfinite(array.astype(np.float32))):
        raise ImageDataError(f"measurement: holds NaN or infinite values (or values beyond float32, up to {np.max(np.abs(array)):.3g})")
    tensor = torch.from_numpy(array.astype(np.float32))[None, None]
    measurement_model = measurement_to_model_range(prior, operator, tensor)
    shape = tuple(output_shape) if output_shape is not None else tuple(prior.image_size)
    return _finish(
        prior, operator, measurement_model, shape, config, block_size, window, threshold,
        {"measurement": "given"}, progress, should_cancel,
    )



def _score_each(
    items: np.ndarray, config: KlipConfig | None, progress: ProgressCallback | None, should_cancel: ShouldCancel | None,
    score_one: Callable[..., KlipResult],
) -> list[KlipResult]:
    """Score ``items`` one by one, item ``i`` with seed ``config.seed + i``, progress over all of them."""
    config = config or KlipConfig()
    results = []
    for index, item in enumerate(items):
        def report(update: Progress, index: int = index) -> None:  # in the update's unit: steps, or patches (patch priors)
            if progress is not None:
                progress(Progress(index * update.total + update.step, update.total * len(items), update.elapsed_s))

        results.append(score_one(item, replace(config, seed=config.seed + index), report, should_cancel))
    return results


def score_stack(
    images: Any,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: KlipConfig | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
    **options: Any,
) -> list[KlipResult]:
    """Score a stack of images with KLIP, one after another; image ``i`` uses seed ``config.seed + i``.

    Parameters
    ----------
    images : array-like
        ``(N, H, W)`` grey images (``(N, H, W, C)`` for a colour prior) in the prior's intensity units.
    prior, config
        As for :func:`score_image`.
    progress, should_cancel : callable, optional
        Progress (``step`` and ``total`` over all images) and cancel check, after every step.
    **options
        ``operator``, ``operator_params``, ``noise_sigma``, ``block_size``, ``window``,
        ``threshold``, ``device``, ``tiling``, ``patch_batch``: as for :func:`score_image`.

    Returns
    -------
    list of KlipResult
    """
    prior = resolve_prior(prior, options.get("device", "auto"))
    stack = check_stack(images, prior.channels)
    grid = working_grid(prior, stack[0].shape[:2]) if stack else prior.image_size
    options["operator"] = build_operator(options.get("operator", "ct"), grid, options.pop("operator_params", None))
    return _score_each(
        stack, config, progress, should_cancel,
        lambda image, seeded, report, cancel: score_image(image, prior, config=seeded, progress=report, should_cancel=cancel, **options),
    )


def score_measurements(measurements: Any, operator: Operator, prior: DiffusionPrior | str | Path | None = None, **options: Any) -> list[KlipResult]:
    """Score a stack of given measurements ``(N, *measurement_shape)`` (e.g. sinograms) with KLIP.

    Measurement ``i`` uses seed ``config.seed + i``; ``config``, ``progress`` and
    ``should_cancel`` are those of :func:`score_stack`, the other ``options`` those of
    :func:`score_measurement`.
    """
    prior = resolve_prior(prior, options.get("device", "auto"))
    config, progress, should_cancel = (options.pop(key, None) for key in ("config", "progress", "should_cancel"))
    return _score_each(
        np.asarray(measurements), config, progress, should_cancel,
        lambda item, seeded, report, cancel: score_measurement(item, operator, prior, config=seeded, progress=report, should_cancel=cancel, **options),
    )
