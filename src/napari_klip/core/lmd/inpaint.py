"""The LMD "map" step: pull masked or noised images back to the prior's manifold.

One reverse DDPM process runs for all reconstructions of all images in one batch. At every
reverse step the whole image is denoised one (respaced) step, then the *known* pixels are
overwritten with the original image diffused to the new noise level (the replacement rule of
the LMD paper; no resampling). After the last step the known pixels equal the original exactly.

Two lifts share this process:

* mask + inpaint (the paper's default): start from pure noise in the hidden pixels at the first
  scheduled step;
* diffuse + denoise: no pixel is known; start from the image diffused to ``start_step`` and run
  the reverse process from there.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from ..prior import DiffusionPrior


@dataclass(frozen=True)
class ReverseStepProgress:
    """Progress of a reverse process: ``step`` of ``total`` done after ``elapsed_s`` seconds."""

    step: int
    total: int
    elapsed_s: float


def respaced_timesteps(prior: DiffusionPrior, num_steps: int, start_step: int | None = None) -> list[int]:
    """Training-schedule timesteps of a ``num_steps`` reverse process, largest first.

    The spacing is the prior's scheduler's (``set_timesteps``); with ``start_step`` only the
    timesteps ``<= start_step`` are kept (diffuse + denoise from that step).
    """
    total = prior.num_train_timesteps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or not 1 <= num_steps <= total:
        raise ValueError(f"num_steps must be an integer in 1..{total}, got {num_steps!r}")
    scheduler = copy.deepcopy(prior.scheduler)
    scheduler.set_timesteps(int(num_steps))
    timesteps = [int(t) for t in scheduler.timesteps]
    if start_step is not None:
        if not 0 <= start_step < total:
            raise ValueError(f"start_step must be in 0..{total - 1}, got {start_step}")
        timesteps = [t for t in timesteps if t <= start_step]
        if not timesteps:
            raise ValueError(f"no step of a {num_steps}-step schedule lies at or below start_step {start_step}; use more steps")
    return timesteps


def ddpm_reverse_step(
    state: torch.Tensor,
    predicted_noise: torch.Tensor,
    alpha_bar: torch.Tensor,
    alpha_bar_prev: torch.Tensor,
    noise: torch.Tensor | None,
    clip: float | None = 1.0,
) -> torch.Tensor:
    """One ancestral DDPM step ``x_t → x_prev`` between two (possibly respaced) timesteps.

    The posterior ``q(x_prev | x_t, x̂0)`` with the "fixed small" variance, as diffusers'
    ``DDPMScheduler.step`` computes it; ``x̂0`` is clipped to ``[-clip, clip]`` when ``clip`` is
    given. ``noise=None`` returns the posterior mean (the last step).
    """
    step_alpha = alpha_bar / alpha_bar_prev
    step_beta = 1.0 - step_alpha
    clean = (state - (1.0 - alpha_bar).sqrt() * predicted_noise) / alpha_bar.sqrt()
    if clip is not None:
        clean = clean.clamp(-clip, clip)
    mean = (alpha_bar_prev.sqrt() * step_beta / (1.0 - alpha_bar)) * clean + (
        step_alpha.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    ) * state
    if noise is None:
        return mean
    variance = ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * step_beta).clamp_min(1e-20)
    return mean + variance.sqrt() * noise


def _per_image_noise(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``(N, *shape)`` standard normal noise, image ``n`` drawn from its own generator (on the CPU)."""
    return torch.stack([torch.randn(shape, generator=generator) for generator in generators]).to(device)


def iter_reconstructions(
    prior: DiffusionPrior,
    images: torch.Tensor,
    masks: np.ndarray,
    num_steps: int,
    seed: int = 0,
    start_step: int | None = None,
) -> Generator[ReverseStepProgress, None, torch.Tensor]:
    """Reconstruct every image once per mask with the replacement rule, all in one batch.

    Parameters
    ----------
    prior : DiffusionPrior
        Runs on its device.
    images : torch.Tensor
        ``(N, C, H, W)`` in the model range ``[-1, 1]``; not modified.
    masks : numpy.ndarray
        ``(R, H, W)`` bool, ``True`` = inpainted (hidden), ``False`` = known. All-``True``
        masks with ``start_step`` give the diffuse + denoise lift.
    num_steps : int
        Length of the respaced reverse schedule (``prior.num_train_timesteps`` = no respacing).
    seed : int
        Seed of all noise. Every image draws from its own generator seeded with ``seed``, so an
        image's reconstructions do not depend on the other images in the batch.
    start_step : int, optional
        Start the reverse process at this training timestep from the image diffused to it (every
        pixel); by default start at the first scheduled step from pure noise in the hidden pixels.

    Yields
    ------
    ReverseStepProgress
        After every reverse step (one batched network call). Closing the generator stops.

    Returns
    -------
    torch.Tensor
        ``(N, R, C, H, W)`` reconstructions in ``[-1, 1]`` on the prior's device.
    """
    if images.ndim != 4 or images.shape[1:] != (prior.channels, *prior.image_size):
        raise ValueError(
            f"images must be shaped (N, {prior.channels}, {prior.image_size[0]}, {prior.image_size[1]}), got {tuple(images.shape)}"
        )
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3 or masks.shape[1:] != tuple(prior.image_size):
        raise ValueError(f"masks must be bool shaped (R, {prior.image_size[0]}, {prior.image_size[1]}), got {masks.dtype} {masks.shape}")
    timesteps = respaced_timesteps(prior, num_steps, start_step)
    device = prior.device
    count, repeats = images.shape[0], masks.shape[0]
    sample_shape = (repeats, prior.channels, *prior.image_size)
    original = images.detach().to(device=device, dtype=torch.float32)[:, None].expand(count, *sample_shape)
    hidden = torch.from_numpy(masks).to(device)[None, :, None]  # (1, R, 1, H, W)
    alphas_cumprod = prior.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    one = torch.ones((), device=device)
    clip = float(prior.scheduler.config.clip_sample_range) if prior.scheduler.config.get("clip_sample", True) else None
    generators = [torch.Generator().manual_seed(int(seed)) for _ in range(count)]

    def diffused(timestep: int) -> torch.Tensor:
        alpha_bar = alphas_cumprod[timestep] if timestep >= 0 else one
        return alpha_bar.sqrt() * original + (1 - alpha_bar).sqrt() * _per_image_noise(generators, sample_shape, device)

    start = time.perf_counter()
    first = timesteps[0]
    state = diffused(first)
    if start_step is None:
        state = torch.where(hidden, _per_image_noise(generators, sample_shape, device), state)
    flat = (count * repeats, *sample_shape[1:])
    with torch.no_grad():
        for index, timestep in enumerate(timesteps):
            previous = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            alpha_bar = alphas_cumprod[timestep]
            alpha_bar_prev = alphas_cumprod[previous] if previous >= 0 else one
            predicted = prior.predict_noise(state.reshape(flat), timestep).reshape(state.shape)
            noise = _per_image_noise(generators, sample_shape, device) if previous >= 0 else None
            state = ddpm_reverse_step(state, predicted, alpha_bar, alpha_bar_prev, noise, clip)
            state = torch.where(hidden, state, diffused(previous) if previous >= 0 else original)
            yield ReverseStepProgress(index + 1, len(timesteps), time.perf_counter() - start)
    return state.clamp(-1.0, 1.0)
