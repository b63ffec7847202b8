"""Every vocabulary and default of napari-klip, written once, importable without torch.

The settings records (:class:`KlipConfig`, :class:`LmdConfig`, :class:`OperatorSettings`) and the
names a setting may take (guidance modes, operators, devices, LMD masks, lifts, distances, ...)
live here so that the samplers, the Python API, the command line (which must start without
importing torch) and the napari widgets all read the same values. Nothing here imports torch,
diffusers, napari or Qt, and nothing of napari-klip but :mod:`napari_klip.core.diffusion` (for
respacing checks; it imports nothing of napari-klip itself): every other module may import this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

# --- vocabularies ---------------------------------------------------------------------------

#: Torch device requests; ``auto`` picks CUDA, then Apple MPS, then the CPU.
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
#: Network precision: ``auto`` runs bf16 autocast where the hardware has bf16 matrix units
#: (a bf16 GPU, a CPU with Intel AMX) and fp32 elsewhere (:mod:`napari_klip.core.precision`).
PRECISIONS = ("auto", "fp32", "bf16")
#: Forward operators by registry name, and how the widgets and measurement layers name them.
OPERATOR_LABELS = {
    "ct": "CT sinogram (sparse views)",
    "blur": "Gaussian blur",
    "inpaint": "masked pixels",
    "downsample": "downsampled",
    "denoise": "noisy image",
}
OPERATOR_NAMES = tuple(OPERATOR_LABELS)
#: KLIP guidance steps (see :mod:`napari_klip.core.klip.guidance`).
GUIDANCE_MODES = ("jacobian-free", "dps", "consistency")
#: KLIP label rules, each written ``NAME:NUMBER``.
THRESHOLD_RULES = ("median-multiple", "percentile", "value")
#: The default label rule: blocks scoring above three times the map's median.
DEFAULT_THRESHOLD = "median-multiple:3"
#: LMD lift masks, lifts, image distances and aggregates.
MASK_KINDS = ("alternating-checkerboard", "checkerboard", "center", "random-patches")
LIFTS = ("mask", "diffuse")
DISTANCE_NAMES = ("lpips", "mse", "ssim", "prior-features")
AGGREGATES = ("median", "mean")
#: The detectors (``napari-klip evaluate --method``).
METHODS = ("klip", "lmd")
#: How training images of another size reach the training size.
SIZE_MODES = ("resize", "random-crop", "center-crop")
#: What a prior's network predicts (diffusers' ``prediction_type``, stored in its scheduler config):
#: the noise, the velocity ``v`` or the clean image (:mod:`napari_klip.core.parameterization`).
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: How training weighs the timesteps: equally, or by Min-SNR-γ (Hang et al. 2023).
LOSS_WEIGHTINGS = ("uniform", "min-snr")
#: γ of the Min-SNR weighting (the paper's default).
DEFAULT_MIN_SNR_GAMMA = 5.0
#: How training draws each image's timestep: uniformly over the schedule (DDPM), or at the
#: noise level ``σ = √((1−ᾱ)/ᾱ)`` nearest a log-normal draw (EDM, Karras et al. 2022).
TIMESTEP_SAMPLINGS = ("uniform", "edm")
#: EDM's training distribution of ``ln σ``: mean and standard deviation (the paper's P_mean, P_std).
EDM_LOG_SIGMA_MEAN = -1.2
EDM_LOG_SIGMA_STD = 1.2
#: How a patch prior covers a whole image at each reverse step (:mod:`napari_klip.core.patches`):
#: non-overlapping tiles on a grid shifted at random per step (PaDIS; the default, one network
#: evaluation per pixel), or tiles at half-patch stride blended by a window (four per pixel).
TILINGS = ("random-shift", "overlap")
#: Input pixels per network call when a patch prior runs by tiles (the memory budget of a step):
#: 256 patches of 32², 64 of 64².
DEFAULT_PATCH_BATCH_PIXELS = 256 * 32 * 32
#: Images per batched LMD reverse process in the API and the command line.
DEFAULT_LMD_BATCH_SIZE = 8
#: Images per batched KLIP sampling run by default (1: one image after another, as before batching).
DEFAULT_KLIP_BATCH_IMAGES = 1
#: ``batch_images="auto"``: as many images per network call as the memory budget allows.
AUTO_BATCH = "auto"
#: Share of the memory a device has free that ``auto`` batching may fill with network activations.
AUTO_BATCH_MEMORY_FRACTION = 0.25
#: Most network rows (images × samples) ``auto`` puts in one call, by device type: on the CPU a
#: forward of more than ~64 rows of a 32² network stops gaining throughput per row
#: (``benchmarks/throughput.py``); accelerators are bound by memory only.
AUTO_BATCH_MAX_ROWS = {"cpu": 64, "other": 4096}
#: How inputs reach the prior's intensity units (:mod:`napari_klip.core.intensity`): ``auto`` maps
#: inputs that are clearly in other units, ``none`` trusts them; ``(LOW, HIGH)`` is the third form.
INTENSITY_MODES = ("auto", "none")
#: Percentiles a prior records of its training intensities (in training units).
TRAINING_PERCENTILES = (0.5, 1.0, 50.0, 99.0, 99.5)
#: The robust percentiles ``auto`` maps: the input's onto the prior's training ones.
MAPPING_PERCENTILES = (1.0, 99.0)
#: Seconds to wait for a Dask scheduler (``--dask ADDRESS``) before giving up with an error.
DEFAULT_DASK_TIMEOUT_S = 20.0


def check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``, naming them all."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")


def check_mask_grid(grid: Any, image_size: tuple[int, int]) -> tuple[int, int]:
    """Patch height and width of a ``grid × grid`` split of an image; the image sides must divide."""
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"mask grid must be an integer >= 2, got {grid!r}")
    height, width = image_size
    if height % grid or width % grid:
        raise ValueError(
            f"a {grid}x{grid} mask grid needs image sides divisible by {grid}; the image is {height}x{width} "
            f"(try a grid among {[g for g in range(2, min(height, width) + 1) if height % g == 0 and width % g == 0][:8]})"
        )
    return height // grid, width // grid


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_batch_images(value: Any, name: str = "batch_images") -> int | str:
    """``value`` as an ``int >= 1`` or ``"auto"``; anything else is a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, str):
        if value != AUTO_BATCH:
            raise ValueError(f"{name} must be an integer >= 1 or {AUTO_BATCH!r}, got {value!r}")
        return value
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer >= 1 or {AUTO_BATCH!r}, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1 or {AUTO_BATCH!r}, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> None:
    """Raise ``TypeError`` unless ``seed`` is an integer (a ``"1"`` would otherwise fail deep inside torch)."""
    if not _is_int(seed):
        raise TypeError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")


def check_window(window: Any) -> tuple[int, int] | None:
    """``None`` or a ``(start, stop)`` pair of integers; anything else is a ``TypeError`` or ``ValueError`` naming ``window``."""
    if window is None:
        return None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__"):
        raise TypeError(f"window must be a (start, stop) pair of step indices, got {window!r}")
    if len(window) != 2:
        raise ValueError(f"window must be a (start, stop) pair of step indices, got {len(window)} values: {tuple(window)!r}")
    if not all(_is_int(value) for value in window):
        raise TypeError(f"window must hold integer step indices, got {tuple(window)!r} (not rounded: say which steps)")
    return int(window[0]), int(window[1])


# --- settings records -----------------------------------------------------------------------


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
        Guidance step (see :mod:`napari_klip.core.klip.guidance`). ``consistency`` needs an
        operator with an approximate inverse (all but ``blur``) and ignores ``zeta`` and ``sigma_y``.
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
    guidance: str = GUIDANCE_MODES[0]
    consistency_weight: float = 1.0
    seed: int = 0
    stop_after_step: int | None = None

    def validate(self, num_train_timesteps: int) -> None:
        """Raise ``ValueError`` naming the first setting out of range (``TypeError`` for a seed that is no integer)."""
        check_seed(self.seed)
        if not _is_int(self.num_samples) or self.num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {self.num_samples!r}")
        if not _is_int(self.num_steps) or not 1 <= self.num_steps <= num_train_timesteps:
            raise ValueError(f"num_steps must be an integer in 1..{num_train_timesteps}, got {self.num_steps!r}")
        for name in ("zeta", "sigma_y", "consistency_weight"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {', '.join(GUIDANCE_MODES)}, got {self.guidance!r}")
        if self.stop_after_step is not None and not 1 <= self.stop_after_step <= self.num_steps:
            raise ValueError(f"stop_after_step must be in 1..{self.num_steps}, got {self.stop_after_step!r}")


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
    mask: str = MASK_KINDS[0]
    mask_grid: int = 8
    lift: str = LIFTS[0]
    diffuse_step: int = 500
    distance: str = DISTANCE_NAMES[0]
    aggregate: str = AGGREGATES[0]
    seed: int = 0

    def validate(self, prior: Any) -> None:
        """Raise ``ValueError`` naming the first setting ``prior`` cannot run with (``TypeError`` for a seed that is no integer)."""
        from .diffusion import respaced_timesteps

        check_seed(self.seed)

        if not _is_int(self.num_reconstructions) or self.num_reconstructions < 1:
            raise ValueError(f"num_reconstructions must be an integer >= 1, got {self.num_reconstructions!r}")
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or not 1 <= self.num_steps <= prior.num_train_timesteps:
            raise ValueError(f"num_steps must be an integer in 1..{prior.num_train_timesteps}, got {self.num_steps!r}")
        check_choice("lift", self.lift, LIFTS)
        check_choice("mask kind", self.mask, MASK_KINDS)
        check_choice("distance", self.distance, DISTANCE_NAMES)
        check_choice("aggregate", self.aggregate, AGGREGATES)
        if self.lift == "diffuse" and not 0 < self.diffuse_step < prior.num_train_timesteps:
            raise ValueError(f"diffuse_step must be in 1..{prior.num_train_timesteps - 1}, got {self.diffuse_step}")
        if self.lift == "mask" and self.mask != "center":
            check_mask_grid(self.mask_grid, prior.image_size)
        if self.lift == "diffuse":
            respaced_timesteps(prior, self.num_steps, self.diffuse_step)

    @property
    def start_step(self) -> int | None:
        """The training timestep the reverse process starts from (``diffuse`` lift), else ``None``."""
        return self.diffuse_step if self.lift == "diffuse" else None


@dataclass(frozen=True)
class OperatorSettings:
    """A forward operator by name and the parameters of every kind (only its own are used).

    Attributes
    ----------
    name : {"ct", "blur", "inpaint", "downsample", "denoise"}
    n_views : int
        CT: equally spaced angles over [0°, 180°).
    kernel_size, sigma : int, float
        Blur: odd kernel side and Gaussian standard deviation, in grid pixels.
    factor : int
        Downsampling factor (must divide the grid).
    known_fraction, mask_seed : float, int
        Inpainting: fraction of known pixels of the seeded random mask.
    """

    name: str = "ct"
    n_views: int = 24
    kernel_size: int = 9
    sigma: float = 2.0
    factor: int = 2
    known_fraction: float = 0.5
    mask_seed: int = 0

    def operator_params(self, grid: tuple[int, int]) -> dict[str, Any]:
        """Keyword arguments of :func:`napari_klip.core.operators.build_operator` for images of ``grid``."""
        if self.name not in OPERATOR_LABELS:
            raise ValueError(f"unknown operator {self.name!r}; expected one of {', '.join(OPERATOR_LABELS)}")
        return {
            "ct": lambda: {"n_views": int(self.n_views)},
            "blur": lambda: {"kernel_size": int(self.kernel_size), "sigma": float(self.sigma)},
            "inpaint": lambda: {"mask": random_known_mask(grid, self.known_fraction, self.mask_seed)},
            "downsample": lambda: {"factor": int(self.factor)},
            "denoise": dict,
        }[self.name]()

    def build(self, grid: tuple[int, int]) -> Any:
        """The :class:`~napari_klip.core.operators.Operator` for images of size ``grid``."""
        from .operators import build_operator

        return build_operator(self.name, tuple(grid), self.operator_params(grid))

    def describe(self) -> str:
        """A short human-readable description, e.g. ``"CT sinogram (sparse views), 24 views"``."""
        details = {
            "ct": f"{self.n_views} views",
            "blur": f"kernel {self.kernel_size}, sigma {self.sigma:g}",
            "inpaint": f"{self.known_fraction:.0%} pixels known (mask seed {self.mask_seed})",
            "downsample": f"factor {self.factor}",
            "denoise": "",
        }[self.name]
        return OPERATOR_LABELS[self.name] + (f", {details}" if details else "")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "OperatorSettings":
        """Rebuild from :func:`dataclasses.asdict` output (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown operator settings {sorted(unknown)}")
        return cls(**values)


def random_known_mask(grid: tuple[int, int], known_fraction: float, seed: int) -> np.ndarray:
    """The seeded random pixel mask of the ``inpaint`` operator: ``True`` marks a known pixel.

    Parameters
    ----------
    grid : tuple of int
        ``(H, W)`` of the mask.
    known_fraction : float
        Probability that a pixel is known, in ``(0, 1]``.
    seed : int
        Seed of the mask (the same seed gives the same mask).

    Returns
    -------
    numpy.ndarray of bool
    """
    if not 0 < known_fraction <= 1:
        raise ValueError(f"known_fraction must be in (0, 1], got {known_fraction!r}")
    return np.random.default_rng(int(seed)).random(tuple(grid)) < known_fraction
