"""The DDPM arithmetic every sampler here shares: respacing, ᾱ bookkeeping, the reverse step.

KLIP's guided posterior sampling, LMD's replacement-rule inpainting and unconditional sampling
all run a *respaced* reverse process: ``num_steps`` of the prior's training timesteps, largest
first (the prior's scheduler's ``set_timesteps`` spacing). :func:`reverse_steps` pairs every
timestep with the one after it and their ``ᾱ`` (``ᾱ = 1`` after the last step);
:func:`ddpm_reverse_step` is the ancestral step between two of them. Importing this module does
not import torch; the functions take and return torch tensors.

The step takes the predicted *noise* ε — ``DiffusionPrior.predict_noise`` converts a v- or
x0-predicting network's output to it (:mod:`napari_klip.core.parameterization`) — and the "fixed
small" posterior variance of DDPM (``DEFAULT_SCHEDULE`` in :mod:`napari_klip.core.prior`); it
equals diffusers' ``DDPMScheduler.step`` for an ε-prior bit for bit on the CPU, and for v- and
x0-priors to float rounding (``tests/core/test_parameterization.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: A :class:`~napari_klip.core.prior.DiffusionPrior` (not imported: this module imports nothing of napari-klip).
DiffusionPrior = Any


def respaced_timesteps(prior: "DiffusionPrior", num_steps: int, start_step: int | None = None) -> list[int]:
    """Training-schedule timesteps of a ``num_steps`` reverse process, largest first.

    The spacing is the prior's scheduler's (``set_timesteps``); with ``start_step`` only the
    timesteps ``<= start_step`` are kept (diffuse + denoise from that step).

    Raises
    ------
    ValueError
        For a step count outside ``1..num_train_timesteps``, or a ``start_step`` no step reaches.
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


@dataclass(frozen=True)
class ReverseStep:
    """One step ``x_t → x_prev`` of a respaced reverse process.

    Attributes
    ----------
    index : int
        Position in the process (0 = first).
    timestep, previous : int
        Training timesteps of this step and of the next one (``-1`` after the last step).
    alpha_bar, alpha_bar_prev : torch.Tensor
        ``ᾱ`` at ``timestep`` and at ``previous`` (``1`` after the last step), float32 scalars.
    """

    index: int
    timestep: int
    previous: int
    alpha_bar: Any
    alpha_bar_prev: Any

    @property
    def beta(self) -> Any:
        """``β = 1 − ᾱ_t / ᾱ_prev``: the variance of this (respaced) step, DDPM's ``g²``."""
        return 1.0 - self.alpha_bar / self.alpha_bar_prev


def alphas_cumprod(prior: "DiffusionPrior", device: Any) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The prior's ``ᾱ`` schedule as float32 on ``device``, and ``ᾱ = 1`` (after the last step)."""
    import torch

    return prior.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32), torch.ones((), device=device)


def reverse_steps(prior: "DiffusionPrior", timesteps: list[int], device: Any) -> list[ReverseStep]:
    """Pair each of ``timesteps`` with the next one and both ``ᾱ`` (on ``device``)."""
    schedule, one = alphas_cumprod(prior, device)
    steps = []
    for index, timestep in enumerate(timesteps):
        previous = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        steps.append(ReverseStep(index, timestep, previous, schedule[timestep], schedule[previous] if previous >= 0 else one))
    return steps


def clip_range(prior: "DiffusionPrior") -> float | None:
    """Where the scheduler clips ``x̂0`` (``clip_sample_range``), or ``None`` when it does not clip."""
    config = prior.scheduler.config
    return float(config.clip_sample_range) if config.get("clip_sample", True) else None


def clean_estimate(state: "torch.Tensor", predicted_noise: "torch.Tensor", alpha_bar: "torch.Tensor") -> "torch.Tensor":
    """Tweedie's estimate ``x̂0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t``."""
    return (state - (1.0 - alpha_bar).sqrt() * predicted_noise) / alpha_bar.sqrt()


def diffuse(clean: "torch.Tensor", alpha_bar: "torch.Tensor", noise: "torch.Tensor") -> "torch.Tensor":
    """The forward process ``x_t = √ᾱ_t x0 + √(1−ᾱ_t) n``."""
    return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise


def ddpm_reverse_step(
    state: "torch.Tensor",
    predicted_noise: "torch.Tensor",
    alpha_bar: "torch.Tensor",
    alpha_bar_prev: "torch.Tensor",
    noise: "torch.Tensor | None",
    clip: float | None = 1.0,
) -> "torch.Tensor":
    """One ancestral DDPM step ``x_t → x_prev`` between two (possibly respaced) timesteps.

    The posterior ``q(x_prev | x_t, x̂0)`` with the "fixed small" variance, as diffusers'
    ``DDPMScheduler.step`` computes it; ``x̂0`` is clipped to ``[-clip, clip]`` when ``clip`` is
    given. ``noise=None`` returns the posterior mean (the last step).
    """
    step_alpha = alpha_bar / alpha_bar_prev
    step_beta = 1.0 - step_alpha
    clean = clean_estimate(state, predicted_noise, alpha_bar)
    if clip is not None:
        clean = clean.clamp(-clip, clip)
    mean = (alpha_bar_prev.sqrt() * step_beta / (1.0 - alpha_bar)) * clean + (
        step_alpha.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    ) * state
    if noise is None:
        return mean
    variance = ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * step_beta).clamp_min(1e-20)
    return mean + variance.sqrt() * noise


def per_image_noise(generators: "Sequence[torch.Generator]", shape: tuple[int, ...], device: Any) -> "torch.Tensor":
    """``(N, *shape)`` standard normal noise, row ``n`` drawn on the CPU from ``generators[n]``.

    Row ``n`` equals ``torch.randn(shape, generator=generators[n])``: what image ``n`` would draw
    alone, so batching images together does not change any image's noise.
    """
    import torch

    return torch.stack([torch.randn(shape, generator=generator) for generator in generators]).to(device)


def ancestral_step(
    prior: "DiffusionPrior",
    state: "torch.Tensor",
    predicted_noise: "torch.Tensor",
    step: ReverseStep,
    generator: "torch.Generator | Sequence[torch.Generator]",
) -> "torch.Tensor":
    """:func:`ddpm_reverse_step` with noise drawn on the CPU, as diffusers does (none at ``t = 0``).

    ``generator`` is one generator for the whole ``state``, or one per image: then ``state``'s
    rows are ``len(generator)`` equal groups, image-major, and group ``n`` draws from
    ``generator[n]`` (:func:`per_image_noise`).
    """
    import torch

    noise = None
    if step.timestep > 0:
        if isinstance(generator, torch.Generator):
            noise = torch.randn(state.shape, generator=generator).to(state.device)
        else:
            rows = (state.shape[0] // len(generator), *state.shape[1:])
            noise = per_image_noise(generator, rows, state.device).reshape(state.shape)
    return ddpm_reverse_step(state, predicted_noise, step.alpha_bar, step.alpha_bar_prev, noise, clip_range(prior))
