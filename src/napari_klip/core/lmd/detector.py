"""LMD — lift, map, detect: settings, the batched reconstruction run, and the scores.

``score(x) = aggregate_i distance(x, inpaint(x, M_i))`` over ``R`` masks ``M_i`` (the LMD paper's
median over 10 alternating-checkerboard reconstructions by default). Larger = more
out-of-distribution. The per-pixel distance maps, averaged over the reconstructions that
inpainted each pixel, give a localization heatmap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..diffusion import respaced_timesteps
from ..options import AGGREGATES, DISTANCE_NAMES, LIFTS, LmdConfig, check_choice
from ..prior import DiffusionPrior
from ..progress import Progress, drive
from .inpaint import iter_reconstructions
from .masks import lift_masks

#: Progress of LMD's reverse process (the shared :class:`~napari_klip.core.progress.Progress`).
LmdProgress = Progress

__all__ = ["AGGREGATES", "DISTANCE_NAMES", "LIFTS", "LmdConfig", "LmdProgress", "lift_masks"]

@dataclass
class LmdReconstructions:
    """What the map step made for a batch of images.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, R, C, H, W)`` float32 reconstructions in the model range ``[-1, 1]``.
    masks : numpy.ndarray
        ``(R, H, W)`` bool, ``True`` = inpainted.
    timesteps : numpy.ndarray
        The training timesteps of the reverse process, largest first.
    network_calls : int
        Batched network calls (one per reverse step, all images and reconstructions at once).
    evaluations_per_image : int
        Network evaluations one image costs: ``R × steps`` (the paper's count: 10 × 1,000).
    wall_time_s : float
    """

    images: np.ndarray
    masks: np.ndarray
    timesteps: np.ndarray
    network_calls: int
    evaluations_per_image: int
    wall_time_s: float


@dataclass
class LmdScores:
    """The detect step for a batch of images.

    Attributes
    ----------
    distances : numpy.ndarray
        ``(N, R)`` distance of each reconstruction to its image.
    scores : numpy.ndarray
        ``(N,)`` aggregated over the reconstructions; larger = more out-of-distribution.
    heatmaps : numpy.ndarray
        ``(N, H, W)`` per-pixel distance averaged over the reconstructions that inpainted the pixel
        (all reconstructions where none did).
    distance : str
        The distance's name (``lpips-random-backbone`` marks an untrained LPIPS backbone).
    aggregate : str
    """

    distances: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray
    distance: str
    aggregate: str


def iter_lmd_reconstructions(
    prior: DiffusionPrior, images: torch.Tensor, config: LmdConfig | None = None
) -> Generator[Progress, None, LmdReconstructions]:
    """Lift and map: reconstruct every image ``R`` times in one batched reverse process.

    Parameters
    ----------
    prior : DiffusionPrior
    images : torch.Tensor
        ``(N, C, H, W)`` in the model range; not modified.
    config : LmdConfig, optional

    Yields
    ------
    Progress
        After every reverse step; closing the generator stops.

    Returns
    -------
    LmdReconstructions
    """
    config = config or LmdConfig()
    config.validate(prior)
    masks = lift_masks(config, prior.image_size)
    timesteps = respaced_timesteps(prior, config.num_steps, config.start_step)
    start = time.perf_counter()
    reconstructed = yield from iter_reconstructions(prior, images, masks, config.num_steps, config.seed, config.start_step)
    return LmdReconstructions(
        images=reconstructed.cpu().numpy().astype(np.float32),
        masks=masks,
        timesteps=np.asarray(timesteps),
        network_calls=len(timesteps),
        evaluations_per_image=len(timesteps) * config.num_reconstructions,
        wall_time_s=time.perf_counter() - start,
    )


def aggregate_distances(distances: np.ndarray, how: str = "median") -> np.ndarray:
    """Aggregate ``(N, R)`` distances over the reconstructions (``median`` or ``mean``) → ``(N,)``."""
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or distances.shape[1] < 1:
        raise ValueError(f"distances must be shaped (N, R) with R >= 1, got {distances.shape}")
    if how == "median":
        return np.median(distances, axis=1)
    check_choice("aggregate", how, AGGREGATES)
    return distances.mean(axis=1)


def masked_mean_maps(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Average ``(N, R, H, W)`` distance maps over the reconstructions that inpainted each pixel.

    Pixels no reconstruction inpainted (e.g. outside a centre mask) get the plain mean.
    """
    weights = masks[None].astype(np.float64)
    covered = weights.sum(axis=1)
    masked = (maps * weights).sum(axis=1) / np.maximum(covered, 1.0)
    return np.where(covered > 0, masked, maps.mean(axis=1)).astype(np.float32)


def measure(
    distance: Callable[[torch.Tensor, torch.Tensor], Any],
    images: torch.Tensor,
    reconstructions: LmdReconstructions,
    aggregate: str = "median",
    chunk_size: int = 256,
) -> LmdScores:
    """Detect: distances of every reconstruction to its image, the scores and the heatmaps.

    Parameters
    ----------
    distance : ImageDistance
        From :func:`napari_klip.core.lmd.distances.make_distance`.
    images : torch.Tensor
        ``(N, C, H, W)`` originals in the model range; the distance runs on their device.
    reconstructions : LmdReconstructions
    aggregate : {"median", "mean"}
    chunk_size : int
        Image pairs per distance call (bounds memory).

    Returns
    -------
    LmdScores
    """
    recon = torch.from_numpy(reconstructions.images).to(images.device)
    count, repeats = recon.shape[:2]
    if images.shape[0] != count or tuple(images.shape[1:]) != tuple(recon.shape[2:]):
        raise ValueError(f"images {tuple(images.shape)} do not match reconstructions {tuple(recon.shape)}")
    reference = images.detach().float()[:, None].expand(recon.shape).reshape(-1, *recon.shape[2:])
    candidates = recon.reshape(-1, *recon.shape[2:])
    values, maps = [], []
    for begin in range(0, reference.shape[0], chunk_size):
        result = distance(reference[begin : begin + chunk_size], candidates[begin : begin + chunk_size])
        values.append(result.values.detach().cpu().numpy())
        maps.append(result.maps.detach().cpu().numpy())
    distances = np.concatenate(values).reshape(count, repeats).astype(np.float64)
    pixel_maps = np.concatenate(maps).reshape(count, repeats, *recon.shape[-2:])
    return LmdScores(
        distances=distances,
        scores=aggregate_distances(distances, aggregate),
        heatmaps=masked_mean_maps(pixel_maps, reconstructions.masks),
        distance=getattr(distance, "name", str(distance)),
        aggregate=aggregate,
    )


def run_lmd(
    prior: DiffusionPrior,
    images: torch.Tensor,
    config: LmdConfig | None = None,
    distance: Callable[[torch.Tensor, torch.Tensor], Any] | None = None,
    lpips_weights: Any = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[LmdReconstructions, LmdScores]:
    """LMD on a batch of images: build the distance (failing before any sampling), map, detect.

    Parameters
    ----------
    prior : DiffusionPrior
    images : torch.Tensor
        ``(N, C, H, W)`` in the model range.
    config : LmdConfig, optional
    distance : ImageDistance, optional
        A ready distance; by default ``config.distance`` is built for the prior's device.
    lpips_weights : str or Path, optional
        ImageNet AlexNet weights for LPIPS (see :func:`~napari_klip.core.lmd.distances.find_alexnet_weights`).
    progress, should_cancel : callable, optional
        Per-step progress callback and cancel check.

    Returns
    -------
    (LmdReconstructions, LmdScores)

    Raises
    ------
    Cancelled
        When ``should_cancel`` stopped it.
    """
    config = config or LmdConfig()
    config.validate(prior)
    if distance is None:
        from .distances import make_distance

        distance = make_distance(config.distance, prior=prior, lpips_weights=lpips_weights, device=prior.device)
    reconstructions = drive(iter_lmd_reconstructions(prior, images, config), progress, should_cancel)
    return reconstructions, measure(distance, images.to(prior.device), reconstructions, config.aggregate)
