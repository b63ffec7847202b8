"""DDPM posterior sampling with measurement guidance that records the KLIP guidance energy.

Per image, ``S`` posterior samples run in one batch. At every reverse step ``k`` the sampler

1. predicts the noise ``ε = ε_θ(x, t)`` and the clean image ``x̂0 = (x − √(1−ᾱ_t) ε) / √ᾱ_t``;
2. takes a guidance step ``Δ`` towards the measurement, with residual ``r = y − A(x̂0)``
   (:mod:`.guidance`, one function per mode):

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

import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..diffusion import ancestral_step, respaced_timesteps, reverse_steps
from ..operators import Operator
from ..options import GUIDANCE_MODES, KlipConfig
from ..prior import DiffusionPrior
from ..progress import Progress, drive
from .guidance import GUIDANCE_STEPS

#: One reverse step of KLIP sampling (the shared :class:`~napari_klip.core.progress.Progress`).
KlipProgress = Progress

__all__ = ["GUIDANCE_MODES", "KlipConfig", "KlipProgress", "KlipTrace", "iter_klip_sampling", "measurement_to_model_range", "run_klip"]


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
    coherent_energy : numpy.ndarray, optional
        ``(K_run, H, W)`` float32: per step, the energy of the sample-mean update
        ``Σ_c (mean_s u)²`` — the part of the guidance all posterior samples agree on
        (``energy = coherent_energy + the per-pixel variance of u over samples``). ``None`` in
        traces saved before it was recorded.
    """

    energy: np.ndarray
    reconstruction: np.ndarray
    reconstruction_std: np.ndarray
    timesteps: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    network_calls: int = 0
    wall_time_s: float = 0.0
    coherent_energy: np.ndarray | None = None


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
    Progress
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

    steps = reverse_steps(prior, respaced_timesteps(prior, config.num_steps), device)
    timesteps = [step.timestep for step in steps]
    steps_to_run = config.stop_after_step or len(steps)
    guide = GUIDANCE_STEPS[config.guidance]
    generator = torch.Generator().manual_seed(config.seed)
    state = torch.randn((config.num_samples, *image_shape), generator=generator).to(device)
    energy = torch.zeros((steps_to_run, *prior.image_size), dtype=torch.float32, device=device)
    coherent = torch.zeros_like(energy)
    start = time.perf_counter()
    clean_estimate = state

    for step in steps[:steps_to_run]:
        update, noise, clean_estimate = guide(prior, operator, measurement, state, step, config)
        with torch.no_grad():
            state = state + update
            energy[step.index] = (update.pow(2) / step.beta).sum(dim=1).mean(dim=0)
            coherent[step.index] = (update.mean(dim=0).pow(2) / step.beta).sum(dim=0)
            state = ancestral_step(prior, state, noise, step, generator)
        yield Progress(step.index + 1, steps_to_run, time.perf_counter() - start)

    final = state if steps_to_run == len(steps) else clean_estimate
    final = final.detach()
    trace = KlipTrace(
        energy=energy.cpu().numpy(),
        reconstruction=final.mean(dim=0).cpu().numpy(),
        reconstruction_std=final.std(dim=0, unbiased=False).cpu().numpy(),
        timesteps=np.asarray(timesteps[:steps_to_run]),
        config=asdict(config),
        network_calls=steps_to_run,
        wall_time_s=time.perf_counter() - start,
        coherent_energy=coherent.cpu().numpy(),
    )
    return trace


def run_klip(
    prior: DiffusionPrior,
    operator: Operator,
    measurement: Any,
    config: KlipConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> KlipTrace:
    """Run :func:`iter_klip_sampling` to the end.

    Raises
    ------
    Cancelled
        When ``should_cancel`` stopped it.
    """
    return drive(iter_klip_sampling(prior, operator, measurement, config), progress, should_cancel)
