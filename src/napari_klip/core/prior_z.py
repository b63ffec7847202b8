"""The prior z-map: where an image is unlike what the diffusion prior expects, per pixel.

The image ``x`` (in the prior's units) is noised to ``x_t = √ᾱ_t x + √(1−ᾱ_t) ε`` with ``draws``
independent noises at each of several timesteps, and denoised in one Tweedie step,
``x̂0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t``. The residual ``r = x − x̂0`` is the part of the
image the prior does not restore. Per pixel and timestep the map is the residual's z-score over
the draws, ``|mean r| / (std r + 10⁻³)``: large where the prior consistently pulls the pixel
elsewhere, whatever the noise — small where a residual is only noise-to-noise variation (edges
and texture the prior can place either way). The map is the mean of the z-scores over the
timesteps (several noise levels at once), then averaged over channels.

This is a reconstruction-based diffusion anomaly map in the spirit of Wyatt et al. (AnoDDPM,
CVPR-W 2022) and Graham et al. (CVPR-W 2023, who compare reconstructions from a range of
noise levels), with the per-pixel spread over noise draws as the normalizer; it needs no
anomalous examples and no calibration. The defaults are the settings that won on the
validation split of the liver-lesion benchmark (``docs/benchmarks.md``).

Importing this module does not import torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .progress import Progress, ProgressCallback, ShouldCancel, drive

#: Noise levels of the default map (timesteps of the 1,000-step schedule), chosen on validation data.
DEFAULT_Z_TIMESTEPS: tuple[int, ...] = (50, 100, 250, 400, 500, 600, 750)
#: Noise draws per timestep.
DEFAULT_Z_DRAWS = 16
#: Gaussian smoothing of the map, in pixels of the grid the prior sees (chosen on validation data).
DEFAULT_Z_SMOOTHING = 2.0
#: Added to the residual's spread so that a pixel every draw restores exactly does not divide by zero.
SPREAD_FLOOR = 1e-3


def check_z_settings(timesteps: Sequence[int], draws: int, num_train_timesteps: int) -> tuple[int, ...]:
    """Validate the timesteps and draw count; return the timesteps as a tuple of ints.

    Raises
    ------
    ValueError
        For no timesteps, a timestep outside ``[0, num_train_timesteps)``, or ``draws < 2``
        (a spread needs two draws).
    """
    steps = tuple(timesteps)
    if not steps:
        raise ValueError("prior z-map: give at least one timestep")
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 0 <= step < num_train_timesteps:
            raise ValueError(f"prior z-map: timesteps must be integers in [0, {num_train_timesteps}), got {step!r}")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 2:
        raise ValueError(f"prior z-map: draws must be an integer >= 2 (a spread needs two), got {draws!r}")
    return tuple(int(step) for step in steps)


@dataclass(frozen=True)
class PriorZSettings:
    """How the prior z-map of a scoring run is computed (``prior_z=PriorZSettings(...)``; ``True`` = these defaults).

    Attributes
    ----------
    timesteps : tuple of int
        Noise levels averaged (timesteps of the prior's training schedule).
    draws : int
        Noise draws per level (at least 2).
    smoothing : float
        Gaussian smoothing of the averaged map, in pixels of the grid the prior sees (0 = none).
        The default won on the pooled validation tables; the best single task's value ranged from
        1 px (lesions of 0.3 contrast) to 3 px (star artefacts), ``docs/benchmarks.md``.
    """

    timesteps: tuple[int, ...] = DEFAULT_Z_TIMESTEPS
    draws: int = DEFAULT_Z_DRAWS
    smoothing: float = DEFAULT_Z_SMOOTHING

    def validated(self, num_train_timesteps: int) -> "PriorZSettings":
        """These settings with the timesteps as a tuple of ints, checked against the prior's schedule.

        Raises
        ------
        ValueError
            For bad timesteps or draws (:func:`check_z_settings`), or a smoothing that is not a
            finite number ``>= 0``.
        """
        steps = check_z_settings(self.timesteps, self.draws, num_train_timesteps)
        return PriorZSettings(timesteps=steps, draws=int(self.draws), smoothing=check_smoothing(self.smoothing))

    def record(self) -> dict[str, Any]:
        """The settings as JSON-ready values (for result files)."""
        return {"timesteps": list(self.timesteps), "draws": int(self.draws), "smoothing_px": float(self.smoothing)}


def resolve_prior_z(value: "bool | PriorZSettings | None") -> PriorZSettings | None:
    """``prior_z`` of the scoring functions as settings: ``True`` → the defaults, ``False``/``None`` → no z-map.

    Raises
    ------
    TypeError
        For anything else (e.g. a number or a dict).
    """
    if value is None or value is False:
        return None
    if value is True:
        return PriorZSettings()
    if isinstance(value, PriorZSettings):
        return value
    raise TypeError(f"prior_z must be True, False or a PriorZSettings, got {type(value).__name__}")


def smooth_z_map(z_map: np.ndarray, smoothing: float) -> np.ndarray:
    """``z_map`` smoothed by a Gaussian of ``smoothing`` pixels (a copy; 0 returns it unchanged as float32)."""
    from scipy import ndimage as ndi

    values = np.asarray(z_map, dtype=np.float32)
    return ndi.gaussian_filter(values, float(smoothing)) if smoothing > 0 else values.copy()


def denoising_residuals(prior: Any, clean: Any, timestep: int, draws: int, generator: Any) -> np.ndarray:
    """What one Tweedie denoising step does not restore, for ``draws`` noisings of an image at ``timestep``.

    Parameters
    ----------
    prior : DiffusionPrior or TiledPrior
        Anything with ``predict_noise`` and ``scheduler``.
    clean : torch.Tensor
        ``(1, C, H, W)`` image in model units, on the CPU.
    timestep : int
        The noise level (a timestep of the prior's schedule).
    draws : int
        Noisings, all drawn at once from ``generator``.
    generator : torch.Generator
        CPU generator of the noise.

    Returns
    -------
    numpy.ndarray
        ``(draws, C, H, W)`` float32 residuals ``x − x̂0``.
    """
    import torch

    alpha_bar = prior.scheduler.alphas_cumprod.float()[timestep]
    noise = torch.randn((draws, *clean.shape[1:]), generator=generator)
    noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    with torch.no_grad():
        predicted = prior.predict_noise(noisy.to(prior.device), timestep).float().cpu()
    return (clean - (noisy - (1 - alpha_bar).sqrt() * predicted) / alpha_bar.sqrt()).numpy()


def check_smoothing(smoothing: Any) -> float:
    """``smoothing`` as a float after checking it is a finite number of pixels ``>= 0``.

    Raises
    ------
    ValueError
        Otherwise (also for a bool).
    """
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)) \
            or not math.isfinite(smoothing) or smoothing < 0:
        raise ValueError(f"prior z-map: smoothing must be a finite number of pixels >= 0, got {smoothing!r}")
    return float(smoothing)


def iter_prior_z_maps(
    prior: Any,
    image_model: np.ndarray,
    *,
    timesteps: Sequence[int] = DEFAULT_Z_TIMESTEPS,
    draws: int = DEFAULT_Z_DRAWS,
    seed: int = 0,
) -> Generator[Progress, None, dict[int, np.ndarray]]:
    """Compute the z-map of each timestep, yielding a :class:`Progress` after each.

    The maps are the generator's return value (``StopIteration.value``); :func:`prior_z_map`
    runs it and averages them.

    Parameters
    ----------
    prior : DiffusionPrior or TiledPrior
        Anything with ``predict_noise``, ``scheduler``, ``device`` and ``image_size``; a patch
        prior on the image's grid (:func:`~napari_klip.core.patches.for_grid`) works by tiles.
    image_model : numpy.ndarray
        ``(C, H, W)`` or ``(H, W)`` image in the prior's model units ([-1, 1]), on the prior's grid.
    timesteps, draws : sequence of int, int
        Noise levels and noise draws per level (see the module notes). The noise of all draws of
        a timestep is drawn at once, timestep after timestep, from one generator.
    seed : int
        Seed of the noise draws: the same seed gives the same maps.

    Returns
    -------
    dict of int to numpy.ndarray
        ``{timestep: (H, W) float32 z-map}``, averaged over channels (via ``StopIteration``).

    Raises
    ------
    ValueError
        For bad timesteps or draws (:func:`check_z_settings`), a non-finite image, or an image
        that is not on the prior's grid.
    """
    import torch

    steps = check_z_settings(timesteps, draws, len(prior.scheduler.alphas_cumprod))
    image = np.asarray(image_model, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or not np.isfinite(image).all():
        raise ValueError(f"prior z-map: expected a finite (C, H, W) or (H, W) image, got shape {np.shape(image_model)}")
    if tuple(image.shape[1:]) != tuple(prior.image_size):
        raise ValueError(f"prior z-map: the image is {image.shape[1]}×{image.shape[2]}, the prior's grid {tuple(prior.image_size)}")
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(int(seed))
    clean = torch.from_numpy(image)[None]
    maps: dict[int, np.ndarray] = {}
    for done, step in enumerate(steps, start=1):
        residual = denoising_residuals(prior, clean, step, draws, generator)
        z = np.abs(residual.mean(axis=0)) / (residual.std(axis=0) + SPREAD_FLOOR)
        maps[step] = z.mean(axis=0).astype(np.float32)
        yield Progress(done, len(steps), time.perf_counter() - started)
    return maps


def prior_z_map(
    prior: Any,
    image_model: np.ndarray,
    *,
    timesteps: Sequence[int] = DEFAULT_Z_TIMESTEPS,
    draws: int = DEFAULT_Z_DRAWS,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    should_cancel: ShouldCancel | None = None,
) -> np.ndarray:
    """The prior z-map of one image: the mean of :func:`iter_prior_z_maps`' maps over the timesteps.

    ``progress`` and ``should_cancel`` are called after every timestep (:func:`~napari_klip.core.progress.drive`);
    the other parameters are those of :func:`iter_prior_z_maps`.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float32.

    Examples
    --------
    >>> from napari_klip.core.prior import bundled_prior_path, load_prior           # doctest: +SKIP
    >>> prior = load_prior(bundled_prior_path("organamnist-liver28-tiny-cpu"))  # doctest: +SKIP
    >>> z = prior_z_map(prior, prior.to_model_range(ct_slice), seed=0)            # doctest: +SKIP
    """
    maps = drive(iter_prior_z_maps(prior, image_model, timesteps=timesteps, draws=draws, seed=seed), progress, should_cancel)
    return np.mean(list(maps.values()), axis=0).astype(np.float32)
