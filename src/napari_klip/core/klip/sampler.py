"""DDPM posterior sampling with measurement guidance that records the KLIP guidance energy.

Per image, ``S`` posterior samples run in one batch. At every reverse step ``k`` the sampler

1. predicts the noise ``ε = ε_θ(x, t)`` and the clean image ``x̂0 = (x − √(1−ᾱ_t) ε) / √ᾱ_t``;
2. takes a guidance step ``Δ`` towards the measurement, with residual ``r = y − A(x̂0)``:

   * ``jacobian-free`` (default; the KLIP reference's DDPM sampler, one network call per
     step): ``Δ = ζ0 / ‖r‖ · Aᵀ r / σ_y² / √ᾱ_t`` (``‖r‖`` averaged over the samples);
   * ``dps``: ``Δ = ζ0 / ‖r‖ · (−∇_x ‖r‖² / (2σ_y²))`` by back-propagation through the network;
   * ``consistency``: a measurement-consistency step, ``Δ = λ · √ᾱ_t · B r`` with ``B`` the
     operator's approximate inverse (filtered back-projection for CT): it moves ``x̂0`` by
     ``λ B r`` towards the measurement, as the consistency step of the reference's CT
     sampler (Song et al. 2022) does. ``Aᵀ r`` for CT is ``Aᵀ A`` applied to the error of
     ``x̂0``, a ``1/|x|`` blur that spreads any error into one central blob; ``B r`` keeps the
     error where it is (``docs/klip.md``);
3. records the normalised update ``u = Δ / √β_k`` as the per-pixel energy
   ``trace[k] = mean_s Σ_c u²`` (kept on the device; one host copy at the end);
4. takes the scheduler's ancestral DDPM step from the guided ``x``, reusing ``ε``.

``β_k = 1 − ᾱ_t / ᾱ_prev`` is the variance of the (respaced) reverse step, i.e. the DDPM
diffusion coefficient ``g_k²`` of that step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..operators import Operator
from ..prior import DiffusionPrior

GUIDANCE_MODES = ("jacobian-free", "dps", "consistency")


@dataclass
class KlipConfig:
    """Settings of KLIP posterior sampling (defaults: the KLIP paper's).

    Attributes
    ----------
    num_samples : int
        Posterior samples ``S`` per image, drawn in one batch.
    num_steps : int
        Reverse steps ``K``, respaced over the prior's training schedule.
    zeta : float
        Guidance step size ``ζ0`` of the rule ``ζ = ζ0 / ‖r‖``.
    sigma_y : float
        Measurement noise level ``σ_y`` in the network's intensity units.
    guidance : {"jacobian-free", "dps", "consistency"}
        Guidance step (see the module docstring). ``consistency`` needs an operator with an
        approximate inverse (all but ``blur``) and ignores ``zeta`` and ``sigma_y``.
    consistency_weight : float
        ``λ`` of the ``consistency`` step: the fraction of the residual's back-projection added
        to ``x̂0`` (1 = full consistency on what the operator measures).
    seed : int
        Seed of the initial and per-step noise (drawn on the CPU).
    stop_after_step : int, optional
        Stop after this many steps (e.g. the end of the score window) when only scores are
        needed; the reconstruction is then the mean Tweedie estimate ``x̂0`` at that step.
    """

    num_samples: int = 8
    num_steps: int = 100
    zeta: float = 0.3
    sigma_y: float = 1.0
    guidance: str = "jacobian-free"
    consistency_weight: float = 1.0
    seed: int = 0
    stop_after_step: int | None = None

    def validate(self, num_train_timesteps: int) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        if not isinstance(self.num_samples, (int, np.integer)) or self.num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {self.num_samples!r}")
        if not isinstance(self.num_steps, (int, np.integer)) or not 1 <= self.num_steps <= num_train_timesteps:
            raise ValueError(f"num_steps must be an integer in 1..{num_train_timesteps}, got {self.num_steps!r}")
        if not (self.zeta > 0 and math.isfinite(self.zeta)):
            raise ValueError(f"zeta must be a finite number > 0, got {self.zeta!r}")
        if not (self.sigma_y > 0 and math.isfinite(self.sigma_y)):
            raise ValueError(f"sigma_y must be a finite number > 0, got {self.sigma_y!r}")
        if not (self.consistency_weight > 0 and math.isfinite(self.consistency_weight)):
            raise ValueError(f"consistency_weight must be a finite number > 0, got {self.consistency_weight!r}")
        if self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {', '.join(GUIDANCE_MODES)}, got {self.guidance!r}")
        if self.stop_after_step is not None and not 1 <= self.stop_after_step <= self.num_steps:
            raise ValueError(f"stop_after_step must be in 1..{self.num_steps}, got {self.stop_after_step!r}")


@dataclass
class KlipProgress:
    """One reverse step, as yielded by :func:`iter_klip_sampling`."""

    step: int
    total_steps: int
    elapsed_s: float


@dataclass
class KlipTrace:
    """What one KLIP sampling run produced.

    Attributes
    ----------
    energy : numpy.ndarray
        ``(K_run, H, W)`` float32: per step, the normalised guidance energy per pixel, averaged
        over samples and summed over channels. ``K_run`` is the number of steps run.
    reconstruction : numpy.ndarray
        ``(C, H, W)`` mean over samples of the final state (model range ``[-1, 1]``).
    reconstruction_std : numpy.ndarray
        ``(C, H, W)`` per-pixel standard deviation over samples.
    timesteps : numpy.ndarray
        The training-schedule timestep of each step run.
    config : dict
        The :class:`KlipConfig` used.
    network_calls : int
        Network evaluations (forward passes over the whole batch of samples).
    wall_time_s : float
        Sampling time.
    """

    energy: np.ndarray
    reconstruction: np.ndarray
    reconstruction_std: np.ndarray
    timesteps: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    network_calls: int = 0
    wall_time_s: float = 0.0


def measurement_to_model_range(prior: DiffusionPrior, operator: Operator, measurement: Any) -> Any:
    """Express a measurement of an image in intensity units as one of the image in model units.

    The prior maps intensities affinely, ``x_model = a·x + b``; for a linear ``A`` this gives
    ``A(x_model) = a·A(x) + b·A(1)``.

    Parameters
    ----------
    prior : DiffusionPrior
    operator : Operator
    measurement : torch.Tensor
        ``(B, C, *measurement_shape)`` in the intensity units of the prior's metadata.

    Returns
    -------
    torch.Tensor
        The same measurement in model units (a new tensor).

    Raises
    ------
    ShapeMismatchError
        If the measurement does not fit the operator for the prior's image size.
    """
    import torch

    operator.check_measurement(measurement, prior.image_size)
    low, high = prior.metadata.intensity_range
    scale = 2.0 / (high - low)
    offset = -2.0 * low / (high - low) - 1.0
    ones = torch.ones((1, measurement.shape[1], *prior.image_size), dtype=measurement.dtype, device=measurement.device)
    return scale * measurement + offset * operator(ones)


def iter_klip_sampling(
    prior: DiffusionPrior,
    operator: Operator,
    measurement: Any,
    config: KlipConfig | None = None,
) -> Generator[KlipProgress, None, KlipTrace]:
    """Posterior sampling for one measurement that records the KLIP guidance-energy trace.

    Parameters
    ----------
    prior : DiffusionPrior
        The diffusion prior (sampling runs on its device).
    operator : Operator
        The forward model; it is moved to the prior's device.
    measurement : torch.Tensor
        ``(1, C, *measurement_shape)`` in the network's units (see
        :func:`measurement_to_model_range`).
    config : KlipConfig, optional

    Yields
    ------
    KlipProgress
        After every reverse step. Closing the generator stops sampling.

    Returns
    -------
    KlipTrace
        As the generator's return value.
    """
    import torch

    config = config or KlipConfig()
    config.validate(prior.num_train_timesteps)
    device = prior.device
    operator = operator.to(device)
    image_shape = (prior.channels, *prior.image_size)
    if measurement.ndim != 4 or measurement.shape[0] != 1:
        raise ValueError(f"expected one measurement shaped (1, C, ...), got shape {tuple(measurement.shape)}")
    operator.check_measurement(measurement, prior.image_size)
    if measurement.shape[1] != prior.channels:
        raise ValueError(f"the measurement has {measurement.shape[1]} channel(s), the prior {prior.channels}")
    if not bool(torch.isfinite(measurement).all()):
        raise ValueError("the measurement holds NaN or infinite values")
    if config.guidance == "consistency" and not operator.has_approximate_inverse():
        raise ValueError(f"guidance 'consistency' needs an operator with an approximate inverse; '{operator.name}' has none "
                         "(use 'jacobian-free' or 'dps')")
    measurement = measurement.to(device=device, dtype=torch.float32)

    scheduler = copy.deepcopy(prior.scheduler)
    scheduler.set_timesteps(config.num_steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    steps_to_run = config.stop_after_step or len(timesteps)
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    final_alpha = scheduler.one if hasattr(scheduler, "one") else torch.tensor(1.0)
    generator = torch.Generator().manual_seed(config.seed)
    batch_shape = (config.num_samples, *image_shape)
    state = torch.randn(batch_shape, generator=generator).to(device)
    energy = torch.zeros((steps_to_run, *prior.image_size), dtype=torch.float32, device=device)
    inverse_sigma2 = 1.0 / config.sigma_y**2
    start = time.perf_counter()
    clean_estimate = state

    for index in range(steps_to_run):
        timestep = timesteps[index]
        previous = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        alpha_bar = alphas_cumprod[timestep]
        alpha_bar_prev = alphas_cumprod[previous] if previous >= 0 else final_alpha.to(device)
        step_beta = 1.0 - alpha_bar / alpha_bar_prev

        if config.guidance == "dps":
            state = state.detach().requires_grad_(True)
            with torch.enable_grad():
                noise = prior.predict_noise(state, timestep)
                clean_estimate = (state - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
                residual = measurement - operator(clean_estimate)
                (gradient,) = torch.autograd.grad(0.5 * inverse_sigma2 * residual.pow(2).sum(), state)
            ascent = -gradient
            noise, clean_estimate, residual, state = noise.detach(), clean_estimate.detach(), residual.detach(), state.detach()
        else:
            with torch.no_grad():
                noise = prior.predict_noise(state, timestep)
                clean_estimate = (state - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
                residual = measurement - operator(clean_estimate)
                if config.guidance == "consistency":
                    ascent = operator.approximate_inverse(residual)
                else:
                    ascent = operator.adjoint(residual) * (inverse_sigma2 / alpha_bar.sqrt())

        with torch.no_grad():
            if config.guidance == "consistency":
                step_size = config.consistency_weight * alpha_bar.sqrt()  # x̂0 moves by λ B r
            else:
                step_size = config.zeta / residual.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            update = step_size * ascent
            state = state + update
            energy[index] = (update.pow(2) / step_beta).sum(dim=1).mean(dim=0)
            state = scheduler.step(noise, timestep, state, generator=generator).prev_sample
        yield KlipProgress(index + 1, steps_to_run, time.perf_counter() - start)

    final = state if steps_to_run == len(timesteps) else clean_estimate
    final = final.detach()
    trace = KlipTrace(
        energy=energy.cpu().numpy(),
        reconstruction=final.mean(dim=0).cpu().numpy(),
        reconstruction_std=final.std(dim=0, unbiased=False).cpu().numpy(),
        timesteps=np.asarray(timesteps[:steps_to_run]),
        config=asdict(config),
        network_calls=steps_to_run,
        wall_time_s=time.perf_counter() - start,
    )
    return trace


def run_klip(
    prior: DiffusionPrior,
    operator: Operator,
    measurement: Any,
    config: KlipConfig | None = None,
    progress: Callable[[KlipProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> KlipTrace | None:
    """Run :func:`iter_klip_sampling` to the end; returns ``None`` if ``should_cancel`` stopped it."""
    from ..progress import drive

    _, trace, _ = drive(iter_klip_sampling(prior, operator, measurement, config), progress, should_cancel)
    return trace
