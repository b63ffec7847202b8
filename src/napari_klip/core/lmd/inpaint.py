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

import time
from collections.abc import Generator

import numpy as np
import torch

from ..diffusion import clip_range, ddpm_reverse_step, diffuse, per_image_noise, respaced_timesteps, reverse_steps
from ..prior import DiffusionPrior
from ..progress import Progress

#: Progress of a reverse process (the shared :class:`~napari_klip.core.progress.Progress`).
ReverseStepProgress = Progress

__all__ = ["ReverseStepProgress", "ddpm_reverse_step", "iter_reconstructions", "respaced_timesteps"]


def iter_reconstructions(
    prior: DiffusionPrior,
    images: torch.Tensor,
    masks: np.ndarray,
    num_steps: int,
    seed: int = 0,
    start_step: int | None = None,
) -> Generator[Progress, None, torch.Tensor]:
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
    Progress
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
    device = prior.device
    steps = reverse_steps(prior, respaced_timesteps(prior, num_steps, start_step), device)
    count, repeats = images.shape[0], masks.shape[0]
    sample_shape = (repeats, prior.channels, *prior.image_size)
    original = images.detach().to(device=device, dtype=torch.float32)[:, None].expand(count, *sample_shape)
    hidden = torch.from_numpy(masks).to(device)[None, :, None]  # (1, R, 1, H, W)
    clip = clip_range(prior)
    generators = [torch.Generator().manual_seed(int(seed)) for _ in range(count)]

    def diffused(alpha_bar: torch.Tensor) -> torch.Tensor:
        return diffuse(original, alpha_bar, per_image_noise(generators, sample_shape, device))

    start = time.perf_counter()
    state = diffused(steps[0].alpha_bar)
    if start_step is None:
        state = torch.where(hidden, per_image_noise(generators, sample_shape, device), state)
    flat = (count * repeats, *sample_shape[1:])
    with torch.no_grad():
        for step in steps:
            last = step.previous < 0
            predicted = prior.predict_noise(state.reshape(flat), step.timestep).reshape(state.shape)
            noise = None if last else per_image_noise(generators, sample_shape, device)
            state = ddpm_reverse_step(state, predicted, step.alpha_bar, step.alpha_bar_prev, noise, clip)
            state = torch.where(hidden, state, original if last else diffused(step.alpha_bar_prev))
            yield Progress(step.index + 1, len(steps), time.perf_counter() - start)
    return state.clamp(-1.0, 1.0)
