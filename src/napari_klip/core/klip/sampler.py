"""DDPM posterior sampling with measurement guidance that records the KLIP guidance energy.

Per image, ``S`` posterior samples run in one batch (:func:`iter_klip_batch`: ``N`` images × ``S``
samples in one batch, each image with its own generator). At every reverse step ``k`` the sampler

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
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..diffusion import ancestral_step, per_image_noise, respaced_timesteps, reverse_steps
from ..operators import Operator
from ..options import GUIDANCE_MODES, KlipConfig, check_seed
from ..prior import DiffusionPrior
from ..progress import Progress, drive
from .guidance import GUIDANCE_STEPS

#: One reverse step of KLIP sampling (the shared :class:`~napari_klip.core.progress.Progress`).
KlipProgress = Progress

__all__ = ["GUIDANCE_MODES", "KlipConfig", "KlipProgress", "KlipTrace", "iter_klip_batch", "iter_klip_sampling", "measurement_to_model_range", "run_klip"]


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
        Network evaluations (forward passes over the whole batch of samples; in a batch of
        several images each call served all of them).
    wall_time_s : float
        Sampling time (of the whole batch the image ran in).
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


def _check_measurements(prior: DiffusionPrior, operator: Operator, measurements: Any, config: KlipConfig) -> None:
    """Fail before sampling on measurements or a guidance mode the operator cannot run."""
    import torch

    if measurements.ndim != 4 or measurements.shape[0] < 1:
        raise ValueError(f"expected measurements shaped (N, C, ...), got shape {tuple(measurements.shape)}")
    operator.check_measurement(measurements, prior.image_size)
    if measurements.shape[1] != prior.channels:
        raise ValueError(f"the measurement has {measurements.shape[1]} channel(s), the prior {prior.channels}")
    if not bool(torch.isfinite(measurements).all()):
        raise ValueError("the measurement holds NaN or infinite values")
    if config.guidance == "consistency" and not operator.has_approximate_inverse():
        raise ValueError(f"guidance 'consistency' needs an operator with an approximate inverse; '{operator.name}' has none "
                         "(use 'jacobian-free' or 'dps')")


def iter_klip_batch(
    prior: DiffusionPrior,
    operator: Operator,
    measurements: Any,
    config: KlipConfig | None = None,
    seeds: Sequence[int] | None = None,
) -> Generator[KlipProgress, None, list[KlipTrace]]:
    """Posterior sampling for ``N`` measurements at once, one network call per step for all of them.

    The ``N × S`` posterior samples run as one batch. Image ``n`` draws all its noise from its own
    generator seeded ``seeds[n]`` and its step size, energy and reconstruction are reduced over
    its own ``S`` samples only, so its trace is the one :func:`iter_klip_sampling` gives it alone
    with ``seed = seeds[n]`` (to float rounding: the network's kernels may sum in another order
    at another batch size; ``docs/benchmarks.md`` states the measured difference).

    Parameters
    ----------
    prior : DiffusionPrior
        The diffusion prior (sampling runs on its device).
    operator : Operator
        The forward model, applied to every image of the batch; it is moved to the prior's device.
    measurements : torch.Tensor
        ``(N, C, *measurement_shape)`` in the network's units (see :func:`measurement_to_model_range`).
    config : KlipConfig, optional
        Sampler settings; ``config.seed`` is ignored when ``seeds`` is given.
    seeds : sequence of int, optional
        One seed per measurement; default ``config.seed + n`` (the seeds a stack scored image by
        image uses).

    Yields
    ------
    Progress
        After every reverse step (of all ``N`` images). Closing the generator stops sampling.

    Returns
    -------
    list of KlipTrace
        One per measurement, in order; each records its own seed in ``config``.
    """
    import torch

    config = config or KlipConfig()
    config.validate(prior.num_train_timesteps)
    _check_measurements(prior, operator, measurements, config)
    count, samples = measurements.shape[0], config.num_samples
    seeds = [config.seed + index for index in range(count)] if seeds is None else list(seeds)
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seed(s) for {count} measurement(s)")
    for seed in seeds:
        check_seed(seed)
    device = prior.device
    operator = operator.to(device)
    image_shape = (prior.channels, *prior.image_size)
    # One measurement row per state row: image n's measurement repeated for its S samples.
    rows = measurements.to(device=device, dtype=torch.float32).repeat_interleave(samples, dim=0)

    steps = reverse_steps(prior, respaced_timesteps(prior, config.num_steps), device)
    timesteps = [step.timestep for step in steps]
    steps_to_run = config.stop_after_step or len(steps)
    guide = GUIDANCE_STEPS[config.guidance]
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    state = per_image_noise(generators, (samples, *image_shape), device).reshape(count * samples, *image_shape)
    energy = torch.zeros((count, steps_to_run, *prior.image_size), dtype=torch.float32, device=device)
    coherent = torch.zeros_like(energy)
    start = time.perf_counter()
    clean_estimate = state

    for step in steps[:steps_to_run]:
        update, noise, clean_estimate = guide(prior, operator, rows, state, step, config)
        with torch.no_grad():
            state = state + update
            per_image = update.reshape(count, samples, *image_shape)
            energy[:, step.index] = (per_image.pow(2) / step.beta).sum(dim=2).mean(dim=1)
            coherent[:, step.index] = (per_image.mean(dim=1).pow(2) / step.beta).sum(dim=1)
            state = ancestral_step(prior, state, noise, step, generators)
        yield Progress(step.index + 1, steps_to_run, time.perf_counter() - start)

    final = state if steps_to_run == len(steps) else clean_estimate
    final = final.detach().reshape(count, samples, *image_shape)
    mean, spread = final.mean(dim=1).cpu().numpy(), final.std(dim=1, unbiased=False).cpu().numpy()
    energy_host, coherent_host = energy.cpu().numpy(), coherent.cpu().numpy()
    wall_time = time.perf_counter() - start
    return [
        KlipTrace(
            energy=energy_host[index],
            reconstruction=mean[index],
            reconstruction_std=spread[index],
            timesteps=np.asarray(timesteps[:steps_to_run]),
            config=asdict(replace(config, seed=int(seeds[index]))),
            network_calls=steps_to_run,
            wall_time_s=wall_time,
            coherent_energy=coherent_host[index],
        )
        for index in range(count)
    ]


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
    if measurement.ndim != 4 or measurement.shape[0] != 1:
        raise ValueError(f"expected one measurement shaped (1, C, ...), got shape {tuple(measurement.shape)}")
    config = config or KlipConfig()
    traces = yield from iter_klip_batch(prior, operator, measurement, config, seeds=[config.seed])
    return traces[0]


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
