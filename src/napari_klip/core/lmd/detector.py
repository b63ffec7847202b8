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

from ..prior import DiffusionPrior
from .inpaint import ReverseStepProgress, iter_reconstructions, respaced_timesteps
from .masks import MASK_KINDS, make_masks

LIFTS = ("mask", "diffuse")
AGGREGATES = ("median", "mean")
DISTANCE_NAMES = ("lpips", "mse", "ssim", "prior-features")


@dataclass
class LmdConfig:
    """Settings of LMD.

    Attributes
    ----------
    num_reconstructions : int
        ``R`` reconstructions per image, run in one batch (paper: 10).
    num_steps : int
        Reverse steps, respaced over the prior's training schedule (the paper uses the full
        1,000; see ``docs/benchmarks.md`` for the cost-accuracy curve).
    mask : {"alternating-checkerboard", "checkerboard", "center", "random-patches"}
        Lift mask (paper: alternating checkerboard).
    mask_grid : int
        Patches per side of the patch-based masks (paper: 8).
    lift : {"mask", "diffuse"}
        ``mask``: hide pixels and inpaint them; ``diffuse``: noise the whole image to
        ``diffuse_step`` and denoise back (the paper's alternative lift).
    diffuse_step : int
        Training timestep the ``diffuse`` lift starts from (paper: 250, 500 or 750 of 1,000).
    distance : {"lpips", "mse", "ssim", "prior-features"}
        Image distance (paper: LPIPS with ImageNet AlexNet; ``prior-features`` needs no external
        weights).
    aggregate : {"median", "mean"}
        How the ``R`` distances become the score (paper: median).
    seed : int
        Seed of the sampler's noise and of ``random-patches`` masks.
    """

    num_reconstructions: int = 10
    num_steps: int = 100
    mask: str = "alternating-checkerboard"
    mask_grid: int = 8
    lift: str = "mask"
    diffuse_step: int = 500
    distance: str = "lpips"
    aggregate: str = "median"
    seed: int = 0

    def validate(self, prior: DiffusionPrior) -> None:
        """Raise ``ValueError`` naming the first setting ``prior`` cannot run with."""
        if isinstance(self.num_reconstructions, bool) or not isinstance(self.num_reconstructions, int) or self.num_reconstructions < 1:
            raise ValueError(f"num_reconstructions must be an integer >= 1, got {self.num_reconstructions!r}")
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or not 1 <= self.num_steps <= prior.num_train_timesteps:
            raise ValueError(f"num_steps must be an integer in 1..{prior.num_train_timesteps}, got {self.num_steps!r}")
        if self.lift not in LIFTS:
            raise ValueError(f"unknown lift {self.lift!r}; expected one of {', '.join(LIFTS)}")
        if self.mask not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.mask!r}; expected one of {', '.join(MASK_KINDS)}")
        if self.distance not in DISTANCE_NAMES:
            raise ValueError(f"unknown distance {self.distance!r}; expected one of {', '.join(DISTANCE_NAMES)}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {self.aggregate!r}; expected one of {', '.join(AGGREGATES)}")
        if self.lift == "diffuse" and not 0 < self.diffuse_step < prior.num_train_timesteps:
            raise ValueError(f"diffuse_step must be in 1..{prior.num_train_timesteps - 1}, got {self.diffuse_step}")
        lift_masks(self, prior.image_size)  # mask grid against the image size
        if self.lift == "diffuse":
            respaced_timesteps(prior, self.num_steps, self.diffuse_step)


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


def lift_masks(config: LmdConfig, image_size: tuple[int, int]) -> np.ndarray:
    """The ``(R, H, W)`` masks a config uses; the ``diffuse`` lift hides every pixel."""
    if config.lift == "diffuse":
        return np.ones((config.num_reconstructions, *image_size), bool)
    return make_masks(config.mask, image_size, config.num_reconstructions, grid=config.mask_grid, seed=config.seed)


def iter_lmd_reconstructions(
    prior: DiffusionPrior, images: torch.Tensor, config: LmdConfig | None = None
) -> Generator[ReverseStepProgress, None, LmdReconstructions]:
    """Lift and map: reconstruct every image ``R`` times in one batched reverse process.

    Parameters
    ----------
    prior : DiffusionPrior
    images : torch.Tensor
        ``(N, C, H, W)`` in the model range; not modified.
    config : LmdConfig, optional

    Yields
    ------
    ReverseStepProgress
        After every reverse step; closing the generator stops.

    Returns
    -------
    LmdReconstructions
    """
    config = config or LmdConfig()
    config.validate(prior)
    masks = lift_masks(config, prior.image_size)
    start_step = config.diffuse_step if config.lift == "diffuse" else None
    timesteps = respaced_timesteps(prior, config.num_steps, start_step)
    start = time.perf_counter()
    reconstructed = yield from iter_reconstructions(prior, images, masks, config.num_steps, config.seed, start_step)
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
    if how == "mean":
        return distances.mean(axis=1)
    raise ValueError(f"unknown aggregate {how!r}; expected one of {', '.join(AGGREGATES)}")


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
    progress: Callable[[ReverseStepProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[LmdReconstructions, LmdScores] | None:
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
    (LmdReconstructions, LmdScores) or None
        ``None`` when cancelled.
    """
    from ..progress import drive

    config = config or LmdConfig()
    config.validate(prior)
    if distance is None:
        from .distances import make_distance

        distance = make_distance(config.distance, prior=prior, lpips_weights=lpips_weights, device=prior.device)
    finished, reconstructions, _ = drive(iter_lmd_reconstructions(prior, images, config), progress, should_cancel)
    if not finished:
        return None
    return reconstructions, measure(distance, images.to(prior.device), reconstructions, config.aggregate)
