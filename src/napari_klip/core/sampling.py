"""Unconditional sampling from a prior: the quickest check of what a prior has learned."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .diffusion import ancestral_step, respaced_timesteps, reverse_steps
from .prior import DiffusionPrior
from .progress import Progress


def sample_prior(
    prior: DiffusionPrior,
    count: int,
    num_inference_steps: int = 100,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
) -> np.ndarray:
    """Draw images from the prior with ancestral DDPM sampling.

    Parameters
    ----------
    prior : DiffusionPrior
        The prior (sampling runs on its device).
    count : int
        Number of images.
    num_inference_steps : int
        Reverse steps, evenly respaced over the training schedule (1 .. num_train_timesteps).
    seed : int
        Seed of the initial and per-step noise (drawn on the CPU: same seed, same images on
        every device up to float rounding).
    progress : callable, optional
        Called with a :class:`~napari_klip.core.progress.Progress` after each reverse step.

    Returns
    -------
    numpy.ndarray
        ``(count, H, W)`` for grey priors or ``(count, H, W, C)``, float32, in the prior's
        intensity units (see ``prior.metadata.intensity_range``), clipped to that range.
    """
    import torch

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not 1 <= num_inference_steps <= prior.num_train_timesteps:
        raise ValueError(f"num_inference_steps must be in 1..{prior.num_train_timesteps}, got {num_inference_steps}")
    steps = reverse_steps(prior, respaced_timesteps(prior, num_inference_steps), prior.device)
    generator = torch.Generator().manual_seed(seed)
    shape = (count, prior.channels, *prior.image_size)
    sample = torch.randn(shape, generator=generator).to(prior.device)
    start = time.perf_counter()
    with torch.no_grad():
        for step in steps:
            noise_prediction = prior.predict_noise(sample, step.timestep)
            sample = ancestral_step(prior, sample, noise_prediction, step, generator)
            if progress is not None:
                progress(Progress(step.index + 1, len(steps), time.perf_counter() - start))
    images = prior.from_model_range(sample.clamp(-1, 1)).cpu().numpy()
    images = np.moveaxis(images, 1, -1)
    return images[..., 0] if prior.channels == 1 else images

