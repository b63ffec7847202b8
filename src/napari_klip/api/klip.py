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

Inputs are never modified. Intensities are mapped to the prior's units by the ``intensity`` rule
(:mod:`napari_klip.core.intensity`; ``"auto"`` by default) and the reconstruction comes back in the
input's units. Images whose size differs from the prior's are resized to it (linear interpolation)
for scoring, and every image-space output is resized back to the input's shape (heatmap linearly,
labels by nearest neighbour); ``result.parameters["resized"]`` says so. Block sizes count input
pixels: the energy is resized to the input's grid before blocks are summed
(:func:`~napari_klip.core.klip.block_score_map`). With a patch prior (``napari-klip train
--patch-size``) images are scored at their native size instead: the network runs by tiles
(:mod:`napari_klip.core.patches`) and operators are built for the input's grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import ImageDataError
from ..core.grid import check_image, check_stack, resize_note, resize_record, to_input_grid, to_prior_grid
from ..core.intensity import IntensityMapping, resolve_intensity
from ..core.klip import (
    KlipConfig,
    KlipTrace,
    block_score_map,
    heatmap_from_blocks,
    image_score,
    iter_klip_batch,
    measurement_to_model_range,
    resolve_map_settings,
    threshold_blocks,
)
from ..core.operators import Operator, build_operator
from ..core.batching import batch_sizes, resolve_batch_images
from ..core.options import DEFAULT_KLIP_BATCH_IMAGES, DEFAULT_THRESHOLD, TILINGS, check_batch_images
from ..core.patches import TiledPrior, for_grid, tile_progress, tiling_parameters, working_grid
from ..core.prior import DiffusionPrior, resolve_prior
from ..core.prior_quality import require_finite_weights
from ..core.progress import ProgressCallback, SamplingThenPasses, ShouldCancel, drive, stack_progress
from ..core.prior_z import PriorZSettings, prior_z_map, resolve_prior_z, smooth_z_map

__all__ = ["DEFAULT_THRESHOLD", "KlipResult", "score_image", "score_measurement", "score_measurements", "score_stack"]


@dataclass
class KlipResult:
    """The KLIP analysis of one image.

    Attributes
    ----------
    score : float
        Whole-image score: the maximum block score.
    score_map : numpy.ndarray
        Block scores on the input's grid, ``(H / b, W / b)``.
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
        Block side in input pixels.
    window : tuple of int
    threshold : str
    parameters : dict
        Operator, sampler settings, prior, noise level, input shape, device — for result files;
        ``intensity`` (the mapping used), ``resized`` (``{"from": [H, W], "to": [h, w]}`` when the
        prior's size differs) and ``notes`` (what the user should be told).
    prior_z : numpy.ndarray or None
        With ``prior_z``: the prior z-map of ``observed`` (:mod:`napari_klip.core.prior_z`:
        where the image is unlike what the prior restores), smoothed by the settings' pixels of the
        grid the prior sees (:data:`~napari_klip.core.prior_z.DEFAULT_Z_SMOOTHING` by default),
        on the input's grid (float32); ``parameters["prior_z"]`` records the settings. Larger is
        more anomalous. ``None`` when not asked for.
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
    prior_z: np.ndarray | None = None

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
    score_map = block_score_map(trace.energy, block_size, window, shape=input_hw)
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


def _score_batches(
    prior: DiffusionPrior,
    operator: Operator,
    measurements: list[Any],
    input_shapes: list[tuple[int, ...]],
    config: KlipConfig,
    extra: dict[str, Any],
    batch_images: int | str,
    progress: ProgressCallback | None,
    should_cancel: ShouldCancel | None,
    block_size: int | None = None,
    window: tuple[int, int] | None = None,
    threshold: str = DEFAULT_THRESHOLD,
    mapping: IntensityMapping | None = None,
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    grid: tuple[int, int] | None = None,
    prior_z: bool | PriorZSettings = False,
) -> list[KlipResult]:
    """Sample ``measurements`` (each ``(1, C, ...)``, model units) ``batch_images`` at a time; item ``i`` uses seed ``config.seed + i``.

    Progress counts image-steps: after step ``k`` of a batch of ``n`` images that starts at image
    ``b``, ``b·K + k·n`` of ``N·K``; with a patch prior it counts patches (steps × tiles × samples
    per image) and moves after every network call. ``mapping`` takes outputs back to the input's
    intensity units (identity when not given). All inputs share one shape (``input_shapes`` says
    it per item). A patch prior runs on ``grid`` (default: the inputs' own grid), its tile offsets
    drawn from seed ``config.seed + b`` for the batch that starts at image ``b``. With ``prior_z``
    each result also holds the prior z-map of its observed image (noise seeded by ``config.seed +
    i``), computed after its batch's sampling; ``progress`` then counts ``N·(K + L)`` units, one
    more per noise level ``L`` of each image (:class:`~napari_klip.core.progress.SamplingThenPasses`),
    and ``should_cancel`` is polled after every noise level too.
    """
    require_finite_weights(prior)
    z_settings = resolve_prior_z(prior_z)
    if z_settings is not None:  # bad settings fail before any sampling
        z_settings = z_settings.validated(prior.num_train_timesteps)
    if not measurements:
        return []
    input_hw = tuple(input_shapes[0][:2])
    grid = tuple(grid) if grid is not None else working_grid(prior, input_hw)
    block_size, window = resolve_map_settings(grid, input_hw, config, block_size, window, threshold)
    mapping = mapping or IntensityMapping("none", None, None, prior.metadata.intensity_range)
    count, steps = len(measurements), config.stop_after_step or config.num_steps
    size = resolve_batch_images(batch_images, for_grid(prior, grid, tiling=tiling, patch_batch=patch_batch), config.num_samples, count,
                                with_gradients=config.guidance == "dps")
    results: list[KlipResult] = []
    combined = SamplingThenPasses(progress, count, steps, len(z_settings.timesteps)) if progress is not None and z_settings is not None else None
    sampling_progress = combined.sampling if combined is not None else progress
    for begin, end in batch_sizes(count, size):
        batch_prior = for_grid(prior, grid, tiling=tiling, patch_batch=patch_batch, seed=config.seed + begin)
        report = stack_progress(sampling_progress, begin, end - begin, count, steps_cover_the_batch=not isinstance(batch_prior, TiledPrior))
        report_tiles = tile_progress(batch_prior, (end - begin) * config.num_samples, steps, report)
        batch = torch.cat(measurements[begin:end])
        seeds = [config.seed + index for index in range(begin, end)]
        traces = drive(iter_klip_batch(batch_prior, operator, batch, config, seeds), report_tiles, should_cancel)
        for offset, trace in enumerate(traces):
            item = {**extra, "images_in_batch": end - begin}
            index = begin + offset
            observed = _observed_model(operator, measurements[index])
            result = _result(batch_prior, operator, observed, input_shapes[index], trace, block_size, window, threshold, item, mapping)
            if z_settings is not None:
                # its own tiling of a patch prior: no progress callback, tile offsets from the image's seed
                z_prior = for_grid(prior, grid, tiling=tiling, patch_batch=patch_batch, seed=config.seed + index)
                result = _with_prior_z(result, z_prior, observed, config.seed + index, should_cancel, z_settings,
                                       combined.pass_done if combined is not None else None)
            results.append(result)
    return results


def _result(
    prior: DiffusionPrior,
    operator: Operator,
    observed_model: np.ndarray,
    input_shape: tuple[int, ...],
    trace: KlipTrace,
    block_size: int,
    window: tuple[int, int],
    threshold: str,
    extra: dict[str, Any],
    mapping: IntensityMapping,
) -> KlipResult:
    """One image's :class:`KlipResult` from its trace, on the input's grid and in its intensity units.

    ``observed_model`` is what the measurement shows without the prior (:func:`_observed_model`).
    """
    input_hw = tuple(input_shape[:2])
    reconstruction = prior.from_model_range(trace.reconstruction)
    spread = trace.reconstruction_std * (prior.metadata.intensity_range[1] - prior.metadata.intensity_range[0]) / 2.0
    reshape = (lambda a: a[0]) if prior.channels == 1 else (lambda a: np.moveaxis(a, 0, -1))
    reconstruction = mapping.invert(to_input_grid(reshape(reconstruction), tuple(input_shape), order=1))
    spread = mapping.invert_spread(to_input_grid(reshape(spread).astype(np.float32), tuple(input_shape), order=1))
    observed_prior = reshape(prior.from_model_range(observed_model))
    observed = mapping.invert(to_input_grid(observed_prior, tuple(input_shape), order=1))
    resized = resize_record(input_hw, prior.image_size)
    parameters = {
        "operator": operator.describe(),
        "sampler": trace.config,
        "prior": str(prior.path) if prior.path else None,
        "prior_image_size": list(prior.metadata.image_size),
        "input_shape": list(input_shape),
        "device": str(prior.device),
        "precision": prior.precision,
        "network_calls": trace.network_calls,
        "wall_time_s": round(trace.wall_time_s, 3),
        "intensity": mapping.describe(),
        "resized": resized,
        "notes": mapping.notes() + ([resize_note(resized)] if resized else []),
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


def _with_prior_z(result: KlipResult, prior: DiffusionPrior | TiledPrior, observed_model: np.ndarray,
                  seed: int, should_cancel: ShouldCancel | None, z_settings: PriorZSettings,
                  progress: ProgressCallback | None = None) -> KlipResult:
    """``result`` with the smoothed prior z-map of its observed image (model units, prior's grid), on the input's grid.

    ``progress`` is called after every noise level.
    """
    z_map = prior_z_map(prior, observed_model, timesteps=z_settings.timesteps, draws=z_settings.draws, seed=seed,
                        progress=progress, should_cancel=should_cancel)
    z_map = smooth_z_map(z_map, z_settings.smoothing)
    settings = {**z_settings.record(), "seed": seed}
    return replace(result, prior_z=to_input_grid(z_map, tuple(result.heatmap.shape), order=1).astype(np.float32),
                   parameters={**result.parameters, "prior_z": settings})


def _observed_model(operator: Operator, measurement_model: Any) -> np.ndarray:
    """``(C, H, W)`` model-range image of what the measurement shows without the prior."""
    with torch.no_grad():
        if operator.has_approximate_inverse():
            image = operator.approximate_inverse(measurement_model)
        else:  # image-shaped measurements (blur): the measurement is what the user sees
            image = measurement_model
    return image[0].float().cpu().numpy()


def _simulated_measurement(
    grid_prior: DiffusionPrior | TiledPrior, operator: Operator, image: np.ndarray, noise_sigma: float, seed: int, mapping: IntensityMapping
) -> Any:
    """``(1, C, ...)`` model-unit measurement of one checked image (mapped to the prior's units), its noise seeded by ``seed``.

    ``grid_prior`` is the prior on the working grid (:func:`~napari_klip.core.patches.for_grid`).
    """
    model_image = torch.from_numpy(to_prior_grid(mapping.apply(image), grid_prior))[None]
    intensity_image = grid_prior.from_model_range(model_image)
    measurement = operator.simulate(intensity_image.double(), noise_sigma=noise_sigma, seed=seed).float()
    return measurement_to_model_range(grid_prior, operator, measurement)


def _given_measurement(prior: DiffusionPrior, operator: Operator, measurement: Any) -> Any:
    """``(1, C, ...)`` model-unit measurement of one given 2-D measurement in intensity units."""
    array = np.asarray(measurement)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)) or array.dtype == bool:
        raise TypeError(f"measurement must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"measurement must be one 2-D array (e.g. a sinogram), got shape {array.shape}")
    if not np.all(np.isfinite(array.astype(np.float32))):
        raise ImageDataError(f"measurement: holds NaN or infinite values (or values beyond float32, up to {np.max(np.abs(array)):.3g})")
    tensor = torch.from_numpy(array.astype(np.float32))[None, None]
    return measurement_to_model_range(prior, operator, tensor)


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
    intensity: str | tuple[float, float] | IntensityMapping = "auto",
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    prior_z: bool | PriorZSettings = False,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> KlipResult:
    """Simulate a measurement of ``image`` and score it with KLIP.

    Parameters
    ----------
    image : array-like
        One ``(H, W)`` grey image (or ``(H, W, C)`` for a colour prior), any size, in its own
        intensity units (mapped to the prior's by ``intensity``).
    prior : DiffusionPrior, str or Path
        A loaded prior or a prior folder.
    operator : Operator or {"ct", "blur", "inpaint", "denoise", "downsample"}
        The forward model; by name it is built with ``operator_params`` for the working grid: the
        prior's image size, or the input's size for a patch prior.
    operator_params : dict, optional
        E.g. ``{"n_views": 24}`` for CT, ``{"kernel_size": 9, "sigma": 2}`` for blur.
    noise_sigma : float
        Measurement noise, in the measurement's intensity units (the prior's units, after the
        intensity mapping); seeded by ``config.seed``.
    config : KlipConfig, optional
        Sampler settings (samples, steps, ζ0, σ_y, guidance, seed).
    block_size : int, optional
        Block side in input pixels; it must divide both sides of the image. Default
        :func:`~napari_klip.core.klip.default_image_block_size` (about 16 × 16 blocks).
    window : tuple of int, optional
        Step window ``[start, stop)``; default the paper's ``[65, 85)`` of 100, scaled.
    threshold : str
        Label rule (see :func:`~napari_klip.core.klip.threshold_blocks`).
    device : str
        Where to load a prior given as a path.
    intensity : {"auto", "none"}, tuple of float or IntensityMapping
        How the image's intensities reach the prior's units (:mod:`napari_klip.core.intensity`):
        ``"auto"`` maps inputs clearly in other units (robust percentiles to the prior's training
        percentiles), ``"none"`` takes the image as it is, ``(LOW, HIGH)`` maps those input
        values to the ends of the prior's ``intensity_range``. ``result.parameters["intensity"]``
        records the mapping.
    tiling : {"random-shift", "overlap"}
        Patch priors only: how the image is covered by patches at each step
        (:class:`~napari_klip.core.patches.TiledPrior`).
    patch_batch : int, optional
        Patch priors only: patches per network call (the memory budget of a step).
    prior_z : bool or PriorZSettings
        Also compute the prior z-map of the observed image (``result.prior_z``;
        :mod:`napari_klip.core.prior_z`): with ``True`` the default settings, 112 more network
        passes per image (7 noise levels × 16 draws), after the sampling; a
        :class:`~napari_klip.core.prior_z.PriorZSettings` chooses timesteps, draws and smoothing.
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
    ImageDataError
        For NaN/infinite values, or values the mapping leaves far outside the prior's range.
    """
    prior = resolve_prior(prior, device)
    array = check_image(image, prior.channels)
    return score_stack(array[None], prior, operator=operator, operator_params=operator_params, noise_sigma=noise_sigma, config=config,
                       block_size=block_size, window=window, threshold=threshold, intensity=intensity, tiling=tiling,
                       patch_batch=patch_batch, prior_z=prior_z, progress=progress, should_cancel=should_cancel)[0]


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
    prior_z: bool | PriorZSettings = False,
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
    prior, config, block_size, window, threshold, device, tiling, patch_batch, prior_z, progress, should_cancel
        As for :func:`score_image`.

    Returns
    -------
    KlipResult
    """
    prior = resolve_prior(prior, device)
    config = config or KlipConfig()
    config.validate(prior.num_train_timesteps)
    grid, shape = _measured_grid(prior, operator, output_shape)
    return _score_batches(
        prior, operator, [_given_measurement(for_grid(prior, grid), operator, measurement)], [shape], config, {"measurement": "given"}, 1,
        progress, should_cancel, block_size, window, threshold, tiling=tiling, patch_batch=patch_batch, grid=grid, prior_z=prior_z,
    )[0]


def score_stack(
    images: Any,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: KlipConfig | None = None,
    batch_images: int | str = DEFAULT_KLIP_BATCH_IMAGES,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
    **options: Any,
) -> list[KlipResult]:
    """Score a stack of images with KLIP; image ``i`` uses seed ``config.seed + i``.

    Parameters
    ----------
    images : array-like
        ``(N, H, W)`` grey images (``(N, H, W, C)`` for a colour prior), in their own units: one
        intensity mapping (option ``intensity``) is resolved over the whole stack and used for
        every image.
    prior, config
        As for :func:`score_image`.
    batch_images : int or "auto"
        Images sampled together, one network call per step for all their ``N × S`` samples
        (``"auto"``: as many as a memory budget allows, :mod:`napari_klip.core.batching`; for a
        patch prior as many as fill one call of ``patch_batch`` tiles,
        :func:`~napari_klip.core.patches.images_per_call`). Each image keeps its own generator,
        so results equal those of ``batch_images=1`` up to the float rounding of the network's
        batch-size-dependent kernels (``docs/benchmarks.md``) — except with a patch prior, where
        the images of a batch share one sequence of tile offsets, drawn from the seed of its
        first image: only that image equals its ``batch_images=1`` result, the others are
        another, equally valid draw.
    progress, should_cancel : callable, optional
        Progress (``step`` and ``total`` count image-steps over all images) and cancel check,
        after every step.
    **options
        ``operator``, ``operator_params``, ``noise_sigma``, ``block_size``, ``window``,
        ``threshold``, ``device``, ``intensity``, ``tiling``, ``patch_batch``, ``prior_z``: as for :func:`score_image`.

    Returns
    -------
    list of KlipResult

    Raises
    ------
    Cancelled
        When ``should_cancel`` returned true (nothing is returned).
    """
    check_batch_images(batch_images)
    prior = resolve_prior(prior, options.pop("device", "auto"))
    config = config or KlipConfig()
    config.validate(prior.num_train_timesteps)
    stack = check_stack(images, prior.channels)
    grid_prior = for_grid(prior, stack[0].shape[:2]) if stack else prior  # the prior itself, or a patch prior on the images' grid
    operator = build_operator(options.pop("operator", "ct"), grid_prior.image_size, options.pop("operator_params", None))
    noise_sigma = options.pop("noise_sigma", 0.0)
    mapping = resolve_intensity(np.stack(stack), prior.metadata, options.pop("intensity", "auto"))
    measurements = [_simulated_measurement(grid_prior, operator, image, noise_sigma, config.seed + index, mapping)
                    for index, image in enumerate(stack)]
    return _score_batches(
        prior, operator, measurements, [tuple(image.shape) for image in stack], config,
        {"noise_sigma": noise_sigma, "measurement": "simulated"}, batch_images, progress, should_cancel, mapping=mapping, **options,
    )


def score_measurements(
    measurements: Any,
    operator: Operator,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: KlipConfig | None = None,
    batch_images: int | str = DEFAULT_KLIP_BATCH_IMAGES,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
    device: str = "auto",
    output_shape: tuple[int, int] | None = None,
    **options: Any,
) -> list[KlipResult]:
    """Score a stack of given measurements ``(N, *measurement_shape)`` (e.g. sinograms) with KLIP.

    Measurement ``i`` uses seed ``config.seed + i``; ``config``, ``batch_images``, ``progress``
    and ``should_cancel`` are those of :func:`score_stack`, ``output_shape`` and the other
    ``options`` (``block_size``, ``window``, ``threshold``, ``tiling``, ``patch_batch``, ``prior_z``) those of
    :func:`score_measurement`.
    """
    check_batch_images(batch_images)
    prior = resolve_prior(prior, device)
    config = config or KlipConfig()
    config.validate(prior.num_train_timesteps)
    grid, shape = _measured_grid(prior, operator, output_shape)
    items = [_given_measurement(for_grid(prior, grid), operator, item) for item in np.asarray(measurements)]
    return _score_batches(
        prior, operator, items, [shape] * len(items), config, {"measurement": "given"}, batch_images, progress, should_cancel,
        grid=grid, **options,
    )


def _measured_grid(prior: DiffusionPrior, operator: Operator, output_shape: tuple[int, ...] | None) -> tuple[tuple[int, int], tuple[int, ...]]:
    """The working grid of given measurements and the shape of their image-space outputs.

    The grid is the prior's image size, or for a patch prior the grid the operator measured
    (``operator.image_size()``, else ``output_shape``); outputs take ``output_shape``, else the grid.
    """
    measured = operator.image_size() or (tuple(output_shape)[:2] if output_shape is not None else tuple(prior.image_size))
    grid = working_grid(prior, tuple(measured))
    return grid, (tuple(output_shape) if output_shape is not None else tuple(grid))
