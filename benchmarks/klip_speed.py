"""Time and memory of recording the KLIP guidance energy: on the device (ours) vs. per-step host copies.

What it compares
----------------
Both variants run the *same* DDPM posterior sampler with Jacobian-free measurement guidance
(``Δ = ζ0/‖r‖ · Aᵀr / σ_y² / √ᾱ_t``, then the scheduler's ancestral step with the same seeded
CPU generator), with the same prior, operator, measurement, ``S`` samples, ``K`` steps and seed:

(a) **reference style** — the way the KLIP paper's public code records the trace: at every step
    the full normalised update ``u = Δ / √β_k`` (``S × C × H × W``) is copied to the host as a
    float32 numpy array and kept (``K × S × C × H × W`` in all); the energy
    ``(U**2).sum(axis=2).mean(axis=1)`` is computed once sampling has finished. The loop is
    re-implemented in this file (:func:`reference_style_sampling`) from the public pieces of
    napari-klip; it is not the paper's code.
(b) **ours** — :func:`napari_klip.core.klip.run_klip`, which accumulates the per-pixel energy
    (mean over samples, sum over channels) into a preallocated ``(K, H, W)`` float32 tensor on the
    device and copies it to the host once at the end.

Before reporting anything, the script checks that (a) and (b) give the same energy
(``numpy.testing.assert_allclose``, ``rtol=1e-3``) and the same reconstruction: the timings
compare two ways of recording one computation, not two computations.

What is measured
----------------
* **time** — wall time of one whole sampling run (final host copies included, CUDA synchronised),
  the median over ``--repeats`` runs taken alternately (a, b, a, b, ...) after ``--warmup``
  unmeasured runs of each. Runs that measure memory are separate and not timed, because
  ``tracemalloc`` slows Python allocations.
* **stored trace** — bytes of the trace each variant keeps: ``K·S·C·H·W·4`` for (a),
  ``K·H·W·4`` for (b); the formula is checked against the ``nbytes`` of the arrays returned.
* **host peak (tracemalloc)** — peak of the Python/numpy heap during one run, relative to its
  start. It sees the numpy store of (a); it does not see tensors allocated by torch's own CPU
  allocator, so on the CPU it does not see (b)'s ``(K, H, W)`` buffer (a torch tensor; its
  ``.numpy()`` is a view, not a copy), nor the network's activations.
* **device peak (CUDA only)** — ``torch.cuda.max_memory_allocated()`` during one run minus the
  memory allocated before it (after ``reset_peak_memory_stats``): activations, the samples and,
  for (b), the ``(K, H, W)`` buffer.

Process RSS is not reported: the C allocator keeps and reuses freed pages, so RSS differences
between runs in one process mostly measure allocator history, not the variants.

Configurations
--------------
``ct32``       32×32 grey, ``create_prior(32, 1, network="tiny")`` (random weights),
               ``SparseViewCT(32, n_views=24)`` — runs anywhere.
``celeba256``  256×256 RGB, a random-weight ``UNet2DModel`` with the layout of the CelebA-HQ
               DDPM (``google/ddpm-celebahq-256``: block_out_channels (128, 128, 256, 256, 512,
               512), 2 layers per block, attention in the 5th down / 2nd up block, ~114 M
               parameters), ``GaussianBlur(21, 9.0)`` — by default CUDA only; on the CPU it needs
               ``--allow-slow`` (and a small ``--steps``).

Usage
-----
::

    .venv/bin/python benchmarks/klip_speed.py --device cpu --repeats 2 --threads 1   # ct32; 1 thread on a busy CPU
    .venv/bin/python benchmarks/klip_speed.py --device cuda --repeats 3          # ct32 and celeba256
    .venv/bin/python benchmarks/klip_speed.py --device cpu --configs celeba256 --allow-slow --steps 3 --repeats 1

Prints a hardware line and a markdown table (one row per configuration).
"""

from __future__ import annotations

import argparse
import copy
import gc
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_klip.core.device import resolve_device
from napari_klip.core.klip import KlipConfig, measurement_to_model_range, run_klip
from napari_klip.core.operators import GaussianBlur, Operator, SparseViewCT
from napari_klip.core.prior import DEFAULT_SCHEDULE, DiffusionPrior, PriorMetadata, create_prior

FLOAT32_BYTES = 4


# --- configurations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchCase:
    """One benchmark configuration.

    Attributes
    ----------
    name : str
        Key used by ``--configs``.
    description : str
        Shown in the table.
    build_prior : callable
        Returns a random-weight :class:`DiffusionPrior` on the CPU.
    build_operator : callable
        Returns the forward operator.
    heavy : bool
        Too slow for the CPU: skipped there unless ``--allow-slow``.
    """

    name: str
    description: str
    build_prior: Callable[[], DiffusionPrior]
    build_operator: Callable[[], Operator]
    heavy: bool = False


def celebahq_ddpm_prior(seed: int = 0) -> DiffusionPrior:
    """A random-weight prior with the network layout of the CelebA-HQ 256² DDPM.

    Parameters
    ----------
    seed : int
        Seed of the weight initialisation (the global torch RNG is left untouched).

    Returns
    -------
    DiffusionPrior
        On the CPU, 3 channels at 256×256, the linear 1000-step DDPM schedule.

    Notes
    -----
    Only the layout that sets the cost is taken from ``google/ddpm-celebahq-256``; the remaining
    ``UNet2DModel`` arguments keep diffusers' defaults (they do not change the work per call).
    """
    from diffusers import DDPMScheduler, UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DModel(
            sample_size=256,
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 128, 256, 256, 512, 512),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        )
    metadata = PriorMetadata(image_size=(256, 256), channels=3, training_data="random weights (benchmark)")
    return DiffusionPrior(unet, DDPMScheduler(**DEFAULT_SCHEDULE), metadata)


CASES: dict[str, BenchCase] = {
    case.name: case
    for case in (
        BenchCase(
            "ct32",
            "32×32 grey, tiny UNet, CT 24 views",
            lambda: create_prior(32, 1, network="tiny", seed=0),
            lambda: SparseViewCT(32, n_views=24),
        ),
        BenchCase(
            "celeba256",
            "256×256 RGB, CelebA-HQ-DDPM-size UNet, blur 21/9",
            celebahq_ddpm_prior,
            lambda: GaussianBlur(21, 9.0),
            heavy=True,
        ),
    )
}


def synthetic_image(channels: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """A smooth test image in ``[0, 1]``: a few Gaussian blobs per channel.

    Returns
    -------
    torch.Tensor
        ``(1, C, H, W)`` float32.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((channels, height, width))
    for channel in range(channels):
        for _ in range(5):
            cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
            radius = rng.uniform(0.08, 0.25) * min(height, width)
            image[channel] += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    image /= image.max()
    return torch.from_numpy(image.astype(np.float32))[None]


def make_measurement(prior: DiffusionPrior, operator: Operator, seed: int, noise_sigma: float = 0.01) -> torch.Tensor:
    """Simulate a noisy measurement of :func:`synthetic_image` and express it in model units."""
    image = synthetic_image(prior.channels, prior.image_size, seed)
    measurement = operator.simulate(image, noise_sigma=noise_sigma, seed=seed)
    return measurement_to_model_range(prior, operator, measurement)


# --- the reference-style sampler ---------------------------------------------------------------
@dataclass
class ReferenceResult:
    """What :func:`reference_style_sampling` returns.

    Attributes
    ----------
    energy : numpy.ndarray
        ``(K, H, W)`` float32, computed from the stored updates after sampling.
    reconstruction : numpy.ndarray
        ``(C, H, W)`` mean over samples of the final state.
    reconstruction_std : numpy.ndarray
        ``(C, H, W)`` standard deviation over samples (computed as :func:`run_klip` does).
    updates : numpy.ndarray
        The stored trace, ``(K, S, C, H, W)`` float32.
    """

    energy: np.ndarray
    reconstruction: np.ndarray
    reconstruction_std: np.ndarray
    updates: np.ndarray


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """One host copy of ``tensor`` as a float32 numpy array (also on the CPU, where ``.numpy()`` is a view)."""
    host = tensor.detach().to("cpu", torch.float32)
    array = host.numpy()
    return array.copy() if tensor.device.type == "cpu" else array


def reference_style_sampling(
    prior: DiffusionPrior,
    operator: Operator,
    measurement: torch.Tensor,
    config: KlipConfig,
    store: str = "array",
) -> ReferenceResult:
    """Jacobian-free KLIP sampling that keeps every per-step update ``u`` on the host.

    The sampling math is that of :func:`napari_klip.core.klip.iter_klip_sampling` with
    ``guidance="jacobian-free"``; only the recording differs: ``u = Δ / √β_k`` is copied to the
    host at every step and the energy is computed from all of them at the end.

    Parameters
    ----------
    prior : DiffusionPrior
    operator : Operator
        Moved to the prior's device.
    measurement : torch.Tensor
        ``(1, C, *measurement_shape)`` in model units.
    config : KlipConfig
        ``guidance`` must be ``"jacobian-free"``; ``stop_after_step`` is ignored.
    store : {"array", "list"}
        Copy each step into a preallocated ``(K, S, C, H, W)`` numpy array, or append it to a
        Python list and ``numpy.stack`` the list at the end (peak: twice the trace).

    Returns
    -------
    ReferenceResult
    """
    if config.guidance != "jacobian-free":
        raise ValueError("the reference-style loop implements the Jacobian-free guidance only")
    config.validate(prior.num_train_timesteps)
    device = prior.device
    operator = operator.to(device)
    measurement = measurement.to(device=device, dtype=torch.float32)
    scheduler = copy.deepcopy(prior.scheduler)
    scheduler.set_timesteps(config.num_steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    final_alpha = getattr(scheduler, "one", torch.tensor(1.0)).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    batch_shape = (config.num_samples, prior.channels, *prior.image_size)
    state = torch.randn(batch_shape, generator=generator).to(device)
    inverse_sigma2 = 1.0 / config.sigma_y**2

    stored: np.ndarray | list[np.ndarray]
    stored = np.empty((len(timesteps), *batch_shape), dtype=np.float32) if store == "array" else []
    with torch.no_grad():
        for index, timestep in enumerate(timesteps):
            previous = timesteps[index + 1] if index + 1 < len(timesteps) else -1
            alpha_bar = alphas_cumprod[timestep]
            alpha_bar_prev = alphas_cumprod[previous] if previous >= 0 else final_alpha
            step_beta = 1.0 - alpha_bar / alpha_bar_prev

            noise = prior.predict_noise(state, timestep)
            clean_estimate = (state - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()
            residual = measurement - operator(clean_estimate)
            ascent = operator.adjoint(residual) * (inverse_sigma2 / alpha_bar.sqrt())
            residual_norm = residual.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            update = (config.zeta / residual_norm) * ascent
            state = state + update
            normalised = update / step_beta.sqrt()
            if isinstance(stored, np.ndarray):
                stored[index] = _to_host(normalised)
            else:
                stored.append(_to_host(normalised))
            state = scheduler.step(noise, timestep, state, generator=generator).prev_sample

    updates = stored if isinstance(stored, np.ndarray) else np.stack(stored)
    del stored
    energy = (updates**2).sum(axis=2).mean(axis=1)
    return ReferenceResult(
        energy=energy,
        reconstruction=state.mean(dim=0).cpu().numpy(),
        reconstruction_std=state.std(dim=0, unbiased=False).cpu().numpy(),
        updates=updates,
    )


# --- measuring ---------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Run ``run()`` once; return its result and the wall time in seconds (CUDA synchronised)."""
    _synchronize(device)
    start = time.perf_counter()
    result = run()
    _synchronize(device)
    return result, time.perf_counter() - start


def memory_profile(run: Callable[[], Any], device: torch.device) -> tuple[Any, int, int | None]:
    """Run ``run()`` once under ``tracemalloc`` (and the CUDA peak counter).

    Returns
    -------
    result : Any
        What ``run`` returned.
    host_peak : int
        Peak bytes traced by ``tracemalloc`` above the level at the start.
    device_peak : int or None
        ``max_memory_allocated`` minus the bytes allocated at the start (CUDA), else ``None``.
    """
    gc.collect()
    device_base = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        device_base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    tracemalloc.start()
    try:
        host_base, _ = tracemalloc.get_traced_memory()
        result = run()
        _synchronize(device)
        _, host_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    device_peak = None
    if device_base is not None:
        device_peak = torch.cuda.max_memory_allocated(device) - device_base
    return result, host_peak - host_base, device_peak


@dataclass
class CaseResult:
    """Measurements of one configuration."""

    case: BenchCase
    shape: tuple[int, int, int, int, int]  # K, S, C, H, W
    reference_times: list[float]
    ours_times: list[float]
    reference_stored: int
    ours_stored: int
    reference_host_peak: int
    ours_host_peak: int
    reference_device_peak: int | None
    ours_device_peak: int | None
    max_relative_error: float


def benchmark_case(case: BenchCase, device: torch.device, config: KlipConfig, repeats: int, warmup: int, store: str) -> CaseResult:
    """Check that both variants agree, then time them and measure their memory.

    Raises
    ------
    AssertionError
        If the two variants' energies (``rtol=1e-3``) or reconstructions differ.
    """
    prior = case.build_prior().to(device)
    operator = case.build_operator()
    measurement = make_measurement(prior, operator, seed=config.seed)

    def reference() -> ReferenceResult:
        return reference_style_sampling(prior, operator, measurement, config, store=store)

    def ours() -> Any:
        return run_klip(prior, operator, measurement, config)

    reference_result, ours_result = reference(), ours()
    np.testing.assert_allclose(reference_result.energy, ours_result.energy, rtol=1e-3, atol=0, err_msg=f"{case.name}: energies differ")
    np.testing.assert_allclose(
        reference_result.reconstruction, ours_result.reconstruction, rtol=1e-4, atol=1e-5, err_msg=f"{case.name}: reconstructions differ"
    )
    scale = np.abs(ours_result.energy)
    max_relative_error = float(np.max(np.abs(reference_result.energy - ours_result.energy) / np.where(scale > 0, scale, 1.0)))

    shape = (config.num_steps, config.num_samples, prior.channels, *prior.image_size)
    steps, samples, channels, height, width = shape
    reference_stored = steps * samples * channels * height * width * FLOAT32_BYTES
    ours_stored = steps * height * width * FLOAT32_BYTES
    assert reference_result.updates.nbytes == reference_stored, "reference trace size differs from K·S·C·H·W·4"
    assert ours_result.energy.nbytes == ours_stored, "our trace size differs from K·H·W·4"
    del reference_result, ours_result

    for _ in range(max(warmup - 1, 0)):  # the check above was the first warm-up run of each
        reference()
        ours()
    reference_times, ours_times = [], []
    for _ in range(repeats):
        reference_times.append(timed(reference, device)[1])
        ours_times.append(timed(ours, device)[1])

    _, reference_host_peak, reference_device_peak = memory_profile(reference, device)
    _, ours_host_peak, ours_device_peak = memory_profile(ours, device)
    return CaseResult(
        case, shape, reference_times, ours_times, reference_stored, ours_stored,
        reference_host_peak, ours_host_peak, reference_device_peak, ours_device_peak, max_relative_error,
    )  # fmt: skip


# --- reporting ---------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_line(device: torch.device) -> str:
    """CPU model and cores, GPU name (CUDA), torch / diffusers / numpy versions and torch threads."""
    import os

    import diffusers

    parts = [f"CPU: {_cpu_model()} ({os.cpu_count()} logical cores)"]
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    parts.append(f"device: {device}")
    parts.append(f"torch {torch.__version__}, diffusers {diffusers.__version__}, numpy {np.__version__}")
    parts.append(f"torch threads: {torch.get_num_threads()}")
    parts.append(f"Python {platform.python_version()}")
    return " | ".join(parts)


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 2**20:.2f} MiB"


def _ratio(numerator: int | None, denominator: int | None) -> str:
    if numerator is None or denominator is None or denominator <= 0:
        return "–"
    return f"{numerator / denominator:.1f}×"


def markdown_table(results: list[CaseResult]) -> str:
    """The results as a markdown table."""
    header = (
        "| config | K×S×C×H×W | ref time [s] | ours time [s] | speed-up ref/ours "
        "| stored trace ref | stored trace ours | stored ratio "
        "| host peak ref (tracemalloc) | host peak ours (tracemalloc) | host peak ratio "
        "| CUDA peak ref | CUDA peak ours | CUDA peak ratio | max rel. diff of energy |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for result in results:
        reference_time = statistics.median(result.reference_times)
        ours_time = statistics.median(result.ours_times)
        lines.append(
            f"| {result.case.name}: {result.case.description} | {'×'.join(map(str, result.shape))} "
            f"| {reference_time:.3f} | {ours_time:.3f} | {reference_time / ours_time:.2f}× "
            f"| {_mib(result.reference_stored)} | {_mib(result.ours_stored)} | {_ratio(result.reference_stored, result.ours_stored)} "
            f"| {_mib(result.reference_host_peak)} | {_mib(result.ours_host_peak)} | {_ratio(result.reference_host_peak, result.ours_host_peak)} "
            f"| {_mib(result.reference_device_peak)} | {_mib(result.ours_device_peak)} "
            f"| {_ratio(result.reference_device_peak, result.ours_device_peak)} | {result.max_relative_error:.1e} |"
        )
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where sampling runs (default: auto)")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=sorted(CASES),
        help="configurations to run (default: all on CUDA, ct32 only on the CPU)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant; the median is reported (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each variant first, >= 1 (default: 1)")
    parser.add_argument("--steps", type=int, default=100, help="reverse steps K (default: 100, the paper's)")
    parser.add_argument("--samples", type=int, default=8, help="posterior samples S (default: 8, the paper's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling noise and the measurement (default: 0)")
    parser.add_argument(
        "--reference-store",
        default="array",
        choices=("array", "list"),
        help="reference style keeps u in a preallocated numpy array, or in a list stacked at the end (default: array)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--allow-slow", action="store_true", help="run the heavy configurations on the CPU too")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1:
        parser.error("--repeats and --warmup must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the hardware line and the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = args.configs or [name for name, case in CASES.items() if device.type == "cuda" or not case.heavy]
    config = KlipConfig(num_samples=args.samples, num_steps=args.steps, seed=args.seed, guidance="jacobian-free")
    print(hardware_line(device))
    print(
        f"S={config.num_samples}, K={config.num_steps}, ζ0={config.zeta}, σ_y={config.sigma_y}, seed={config.seed}, "
        f"repeats={args.repeats} (median), warm-up={args.warmup}, reference store={args.reference_store}"
    )
    results = []
    for name in names:
        case = CASES[name]
        if case.heavy and device.type != "cuda" and not args.allow_slow:
            print(f"skipping {name}: too slow without CUDA (pass --allow-slow, ideally with a small --steps)")
            continue
        print(f"running {name} ...", flush=True)
        results.append(benchmark_case(case, device, config, args.repeats, args.warmup, args.reference_store))
        print(f"  {name}: energies agree (max relative difference {results[-1].max_relative_error:.1e})", flush=True)
    if results:
        print()
        print(markdown_table(results))
        print()
        print(
            "Times: median wall time of a whole run. Stored trace: bytes of the arrays each variant keeps "
            "(ref K·S·C·H·W·4, ours K·H·W·4; checked against their nbytes). Host peak: tracemalloc peak of one run "
            "above its start = the Python/numpy heap only. It sees the reference's numpy store and its temporaries "
            "(U**2, the channel sum); it does not see torch tensors, so ours' column holds only Python objects "
            "(ours keeps no numpy array while sampling; its (K, H, W) buffer is a torch tensor, also on the CPU) and "
            "the host-peak ratio reads 'host store of the reference vs. none'. CUDA peak: max_memory_allocated "
            "during the run minus the memory allocated before it."
        )


if __name__ == "__main__":
    main()
