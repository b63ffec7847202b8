"""LMD (lift, map, detect) over numpy arrays: score an image or a stack.

Example
-------
>>> from napari_klip.api import lmd_score                                  # doctest: +SKIP
>>> from napari_klip.core.lmd import LmdConfig
>>> result = lmd_score(digit, "priors/mnist32-tiny-cpu",
...                    config=LmdConfig(num_steps=100, distance="lpips"),
...                    lpips_weights="alexnet_features_imagenet.npz")
>>> result.score, result.heatmap.shape, result.reconstructions.shape      # doctest: +SKIP

Intensities are mapped to the prior's units by the ``intensity`` rule
(:mod:`napari_klip.core.intensity`; ``"auto"`` by default) and the reconstructions come back in the
input's units. With a whole-image prior, images whose size differs from the prior's are resized to
it for scoring; the heatmap, masks and reconstructions are resized back to the input's shape, and
``result.parameters["resized"]`` says so. With a patch prior images are scored at their native
size, the network running by tiles (:mod:`napari_klip.core.patches`). Inputs are never modified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.grid import check_image, check_stack, resize_note, resize_record, to_input_grid, to_prior_grid
from ..core.intensity import IntensityMapping, resolve_intensity
from ..core.lmd import LmdConfig, LmdReconstructions, LmdScores, run_lmd
from ..core.diffusion import respaced_timesteps
from ..core.lmd.distances import make_distance
from ..core.batching import batch_sizes, resolve_batch_images
from ..core.options import DEFAULT_LMD_BATCH_SIZE, TILINGS, check_batch_images
from ..core.patches import TiledPrior, for_grid, tile_progress, tiling_parameters
from ..core.prior import DiffusionPrior, resolve_prior
from ..core.prior_quality import require_finite_weights
from ..core.progress import ProgressCallback, ShouldCancel, stack_progress

__all__ = ["LmdResult", "score_image", "score_stack"]


@dataclass
class LmdResult:
    """The LMD analysis of one image.

    Attributes
    ----------
    score : float
        The aggregated distance (median over reconstructions by default); larger = more
        out-of-distribution.
    distances : numpy.ndarray
        ``(R,)`` distance of each reconstruction to the image.
    heatmap : numpy.ndarray
        Per-pixel distance, averaged over the reconstructions that inpainted each pixel, shaped
        like the input (float32).
    reconstructions : numpy.ndarray
        ``(R, *input_shape)`` float32 in the input's intensity units.
    masks : numpy.ndarray
        ``(R, H, W)`` bool on the input's grid, ``True`` = inpainted.
    parameters : dict
        Settings, distance, prior, device, network calls and time — for result files; ``intensity``
        (the mapping used), ``resized`` and ``notes`` as for KLIP's result.
    """

    score: float
    distances: np.ndarray
    heatmap: np.ndarray
    reconstructions: np.ndarray
    masks: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


def score_stack(
    images: Any,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: LmdConfig | None = None,
    device: str = "auto",
    lpips_weights: str | Path | None = None,
    batch_images: int | str | None = None,
    batch_size: int | str | None = None,
    intensity: str | tuple[float, float] | IntensityMapping = "auto",
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> list[LmdResult]:
    """Score a stack of images with LMD, ``batch_images`` images (× R reconstructions) per batch.

    Parameters
    ----------
    images : array-like
        ``(N, H, W)`` grey images (``(N, H, W, C)`` for a colour prior) in their own intensity
        units; one mapping (``intensity``) is resolved over the whole stack.
    prior : DiffusionPrior, str, Path or None
        A loaded prior, a prior folder, or ``None`` for the bundled default.
    config : LmdConfig, optional
        Reconstructions, steps, mask, lift, distance, aggregate, seed.
    device : str
        Where to load a prior given as a path (``auto``/``cuda``/``mps``/``cpu``).
    lpips_weights : str or Path, optional
        ImageNet AlexNet weights for ``distance="lpips"``; without them the torch cache and
        ``$NAPARI_KLIP_ALEXNET_WEIGHTS`` are searched, and their absence is an error raised before
        any sampling.
    batch_images : int or "auto", optional
        Images per batched reverse process, one network call per step for all their
        reconstructions (default ``DEFAULT_LMD_BATCH_SIZE``, 8; ``"auto"``: as many as a memory budget
        allows, :mod:`napari_klip.core.batching`; for a patch prior as many as fill one call of
        ``patch_batch`` tiles). Results do not depend on it beyond the float
        rounding of the network's batch-size-dependent kernels: every image draws its noise from
        its own generator seeded with ``config.seed`` (and, for a patch prior, every batch
        draws the same tile offsets from ``config.seed``).
    batch_size : int or "auto", optional
        The older name of ``batch_images``; give one of them.
    intensity : {"auto", "none"}, tuple of float or IntensityMapping
        How the images' intensities reach the prior's units, as for
        :func:`napari_klip.api.klip.score_image`.
    tiling : {"random-shift", "overlap"}
        Patch priors only: how the image is covered by patches at each step
        (:class:`~napari_klip.core.patches.TiledPrior`).
    patch_batch : int, optional
        Patch priors only: patches per network call (the memory budget).
    progress : callable, optional
        Called with a :class:`~napari_klip.core.progress.Progress` after every step, counting
        image-steps over the whole stack (after step ``k`` of a batch of ``n`` images that starts
        at image ``b``: ``b·K + k·n`` of ``N·K``); for a patch prior after every network call too,
        counting patches (steps × tiles × reconstructions per image).
    should_cancel : callable, optional
        Polled after every step; returning true stops the run.

    Returns
    -------
    list of LmdResult

    Raises
    ------
    Cancelled
        When ``should_cancel`` returned true.
    """
    if batch_images is not None and batch_size is not None:
        raise TypeError("give batch_images or its older name batch_size, not both")
    name, given = ("batch_size", batch_size) if batch_size is not None else ("batch_images", batch_images)
    requested = DEFAULT_LMD_BATCH_SIZE if given is None else check_batch_images(given, name)
    config = config or LmdConfig()
    prior = resolve_prior(prior, device)
    require_finite_weights(prior)
    checked = check_stack(images, prior.channels)
    mapping = resolve_intensity(np.stack(checked), prior.metadata, intensity)
    grid_hw = checked[0].shape[:2] if checked else prior.image_size

    def sampling_prior() -> Any:  # a fresh tiling generator per batch: results do not depend on batch_images
        return for_grid(prior, grid_hw, tiling=tiling, patch_batch=patch_batch, seed=config.seed)

    grid_prior = sampling_prior()
    config.validate(grid_prior)
    distance = make_distance(config.distance, prior=grid_prior, lpips_weights=lpips_weights, device=prior.device)
    model_images = torch.from_numpy(np.stack([to_prior_grid(mapping.apply(image), grid_prior) for image in checked]))

    size = resolve_batch_images(requested, grid_prior, config.num_reconstructions, len(checked))
    results: list[LmdResult] = []
    steps = len(respaced_timesteps(prior, config.num_steps, config.start_step))
    for begin, end in batch_sizes(len(checked), size):
        batch = model_images[begin:end]
        batch_prior = sampling_prior()
        # in the update's unit (steps, or patches for a patch prior), the same total for every batch
        report = stack_progress(progress, begin, end - begin, len(checked), steps_cover_the_batch=not isinstance(batch_prior, TiledPrior))
        report_tiles = tile_progress(batch_prior, batch.shape[0] * config.num_reconstructions, steps, report)
        reconstructions, scores = run_lmd(batch_prior, batch, config, distance=distance, progress=report_tiles, should_cancel=should_cancel)
        for index in range(batch.shape[0]):
            image = checked[len(results)]
            results.append(_result(batch_prior, config, image, reconstructions, scores, index, mapping))
    return results


def score_image(
    image: Any,
    prior: DiffusionPrior | str | Path | None = None,
    *,
    config: LmdConfig | None = None,
    device: str = "auto",
    lpips_weights: str | Path | None = None,
    intensity: str | tuple[float, float] | IntensityMapping = "auto",
    tiling: str = TILINGS[0],
    patch_batch: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> LmdResult:
    """Score one image with LMD: mask, inpaint with the prior, measure the distance.

    Parameters
    ----------
    image : array-like
        One ``(H, W)`` grey image (``(H, W, C)`` for a colour prior) in its own intensity units.
    prior, config, device, lpips_weights, intensity, tiling, patch_batch, progress, should_cancel
        As for :func:`score_stack`.

    Returns
    -------
    LmdResult
    """
    prior = resolve_prior(prior, device)
    checked = check_image(image, prior.channels)
    options = {"config": config, "device": device, "lpips_weights": lpips_weights, "intensity": intensity,
               "tiling": tiling, "patch_batch": patch_batch, "progress": progress, "should_cancel": should_cancel}
    return score_stack(checked[None], prior, batch_images=1, **options)[0]


def _result(
    prior: DiffusionPrior, config: LmdConfig, image: np.ndarray, reconstructions: LmdReconstructions, scores: LmdScores, index: int,
    mapping: IntensityMapping,
) -> LmdResult:
    """Image ``index`` of a batch, back on the input's grid and in its intensity units."""
    shape = tuple(image.shape)
    recon = prior.from_model_range(reconstructions.images[index])  # (R, C, H, W)
    recon = recon[:, 0] if prior.channels == 1 else np.moveaxis(recon, 1, -1)
    recon = np.stack([mapping.invert(to_input_grid(r.astype(np.float32), shape, order=1)) for r in recon])
    masks = np.stack([to_input_grid(m.astype(np.uint8), shape[:2], order=0) for m in reconstructions.masks]).astype(bool)
    resized = resize_record(shape[:2], prior.image_size)
    parameters = {
        "method": "lmd",
        "settings": asdict(config),
        "distance": scores.distance,
        "prior": str(prior.path) if prior.path else None,
        "prior_image_size": list(prior.metadata.image_size),
        "input_shape": list(shape),
        "device": str(prior.device),
        "precision": prior.precision,
        "network_evaluations": reconstructions.evaluations_per_image,
        "batched_network_calls": reconstructions.network_calls,
        "images_in_batch": int(reconstructions.images.shape[0]),
        "batch_wall_time_s": round(reconstructions.wall_time_s, 3),
        "intensity": mapping.describe(),
        "resized": resized,
        "notes": mapping.notes() + ([resize_note(resized)] if resized else []),
        **tiling_parameters(prior),
    }
    return LmdResult(
        score=float(scores.scores[index]),
        distances=scores.distances[index].astype(np.float32),
        heatmap=to_input_grid(scores.heatmaps[index], shape[:2], order=1),
        reconstructions=recon,
        masks=masks,
        parameters=parameters,
    )
