"""Train a diffusion prior on a user's in-distribution images.

The loop is written once, as the generator :func:`iter_training`, which yields a
:class:`TrainingProgress` after every step; :func:`train_prior` drives it with a progress
callback and a cancel check (the CLI's progress bar and the napari widget both use it).
Everything random (initialisation, batches, timesteps, noise, crops) comes from ``seed``, and a
run resumed from its checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .networks import unet_config
from .data import center_crop_stack, check_image_stack, default_intensity_range, resize_stack, to_channels_first
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import Cancelled, TrainingCancelled
from .intensity import training_statistics
from .outputs import output_lock, remove_path, replace_tree
from .options import DEFAULT_MIN_SNR_GAMMA, LOSS_WEIGHTINGS, PRECISIONS, PREDICTION_TYPES, SIZE_MODES, TIMESTEP_SAMPLINGS, check_choice
from .parameterization import loss_weights, sample_timesteps, training_target
from .precision import autocast, resolve_precision
from .prior import METADATA_FILE, PriorMetadata, create_prior, write_prior_folder
from .patches import random_patches
from .progress import Progress, drive

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "training_log.json"
#: Suffix of the sibling folder an ``overwrite`` run trains in until it is complete.
STAGING_SUFFIX = ".new"
#: Files a training run writes into its output folder (the only ones ``overwrite`` removes).
OUTPUT_ENTRIES = ("unet", "scheduler", "model_index.json", METADATA_FILE, CHECKPOINT_FILE, LOG_FILE)


@dataclass
class TrainingConfig:
    """Settings of a training run.

    Attributes
    ----------
    image_size : int
        Side of the square training images.
    size_mode : {"resize", "random-crop", "center-crop"}
        How images of another size are brought to ``image_size``.
    network : {"tiny", "small", "base"}
        Network size preset.
    steps : int
        Optimiser steps in total (a resumed run continues up to this number).
    batch_size : int
        Images per step.
    learning_rate : float
        AdamW learning rate after warm-up.
    warmup_steps : int
        Linear learning-rate warm-up.
    ema_decay : float
        Decay of the exponential moving average of the weights that is saved as the prior
        (0 disables it).
    seed : int
        Seed of everything random.
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``.
    checkpoint_every : int
        Steps between checkpoints (the prior folder is rewritten at each).
    log_every : int
        Steps between loss entries in the training log.
    intensity_range : tuple of float, optional
        Intensities mapped to ``[-1, 1]``; by default from the data (see
        :func:`napari_klip.core.data.default_intensity_range`).
    horizontal_flip : bool
        Augment with random left-right flips (off by default: anatomy is not mirror-symmetric).
    training_data : str
        Description stored in the prior's metadata.
    precision : {"auto", "fp32", "bf16"}
        Precision of the network's forward pass (weights, optimiser and loss stay float32);
        ``auto`` is bf16 where the hardware has bf16 matrix units (:mod:`.precision`).
    patch_size : int, optional
        Train a *patch prior*: every batch holds random ``patch_size``² crops (an independent
        position per image) of the full-size images, which are never resized, and the metadata
        records the patch size, so KLIP and LMD run the prior on whole images at their native size
        by tiling (:mod:`.patches`). Overrides ``image_size`` and ``size_mode``. Images must be at
        least ``patch_size`` on each side.
    time_limit_s : float, optional
        Wall-clock budget of this run in seconds (not counting earlier runs of a resumed one):
        training stops after the step that reaches it and writes the prior as at the end, with
        ``time_limit_reached`` in its training summary; ``resume`` with the same ``steps``
        continues from there. For machines lent for a fixed time (a GPU session).
    prediction_type : {"epsilon", "v_prediction", "sample"}
        What the network learns to predict: the noise (DDPM), the velocity ``v`` or the clean
        image (:mod:`.parameterization`); stored in the prior's scheduler config, so the folder
        stays a diffusers pipeline, and every sampler here converts the output to ε.
    loss_weighting : {"uniform", "min-snr"}
        Weight of each image's loss by its timestep: equal, or Min-SNR-γ (Hang et al. 2023).
        The logged training loss is the weighted one; compare priors by their held-out
        ε-error (``napari-klip info --heldout``), which does not depend on either choice.
    min_snr_gamma : float
        γ of ``min-snr``.
    timestep_sampling : {"uniform", "edm"}
        Which timesteps training sees: uniformly drawn (DDPM), or EDM's log-normal noise levels,
        which put most of the training at low and middle noise (Karras et al. 2022; with
        ``prediction_type="v_prediction"`` and uniform weighting, EDM's preconditioning at
        ``σ_data = 1``; :mod:`.parameterization`).
    """

    image_size: int = 32
    size_mode: str = "resize"
    network: str = "small"
    steps: int = 10_000
    batch_size: int = 64
    learning_rate: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 1000
    log_every: int = 50
    intensity_range: tuple[float, float] | None = None
    horizontal_flip: bool = False
    training_data: str = "user images"
    precision: str = PRECISIONS[0]
    patch_size: int | None = None
    time_limit_s: float | None = None
    prediction_type: str = PREDICTION_TYPES[0]
    loss_weighting: str = LOSS_WEIGHTINGS[0]
    min_snr_gamma: float = DEFAULT_MIN_SNR_GAMMA
    timestep_sampling: str = TIMESTEP_SAMPLINGS[0]

    def __post_init__(self) -> None:
        if self.patch_size is not None:
            self.image_size = self.patch_size
            self.size_mode = "random-crop"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that is out of range."""
        positive = ("image_size", "steps", "batch_size", "checkpoint_every", "log_every")
        if self.patch_size is not None:
            positive = ("patch_size", *positive)
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.size_mode not in SIZE_MODES:
            raise ValueError(f"size_mode must be one of {', '.join(SIZE_MODES)}, got {self.size_mode!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        check_choice("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        check_choice("timestep_sampling", self.timestep_sampling, TIMESTEP_SAMPLINGS)
        if not (self.min_snr_gamma > 0 and math.isfinite(self.min_snr_gamma)):
            raise ValueError(f"min_snr_gamma must be > 0, got {self.min_snr_gamma!r}")
        if self.time_limit_s is not None and not (self.time_limit_s > 0 and math.isfinite(self.time_limit_s)):
            raise ValueError(f"time_limit_s must be > 0 seconds, got {self.time_limit_s!r}")
        unet_config(self.image_size, 1, self.network)  # raises for an unknown preset or an unusable size


@dataclass(frozen=True)
class TrainingProgress(Progress):
    """One step of a training run, as yielded by :func:`iter_training`: a :class:`Progress` with the loss."""

    loss: float = float("nan")
    learning_rate: float = float("nan")


@dataclass
class TrainingResult:
    """What a finished (or cancelled) run produced."""

    out_dir: Path
    steps_done: int
    final_loss: float
    wall_time_s: float
    cancelled: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    time_limit_reached: bool = False


def _prepare_images(images: np.ndarray, config: TrainingConfig) -> tuple[np.ndarray, tuple[float, float], dict[str, Any]]:
    stack = check_image_stack(images, name="training images")
    stats = training_statistics(stack)
    intensity_range = tuple(config.intensity_range) if config.intensity_range else default_intensity_range(stack)
    low, high = intensity_range
    data = to_channels_first(stack)
    data = (data - low) / (high - low) * 2.0 - 1.0
    if config.size_mode == "resize":
        data = resize_stack(data, config.image_size)
    elif config.size_mode == "center-crop":
        data = center_crop_stack(data, config.image_size)
    elif min(data.shape[-2:]) < config.image_size:
        what = "patches" if config.patch_size is not None else "crops"
        raise ValueError(f"cannot take random {config.image_size}² {what} from {data.shape[-2]}×{data.shape[-1]} images")
    return np.ascontiguousarray(data, dtype=np.float32), (float(low), float(high)), stats


def _batch_within_data(config: TrainingConfig, count: int) -> TrainingConfig:
    """``config`` with the batch size lowered to ``count`` images (with a warning) when it asks for more."""
    if config.batch_size <= count or config.patch_size is not None:
        return config  # a patch prior's batch holds distinct random crops even of a single image
    import warnings
    from dataclasses import replace

    warnings.warn(
        f"batch size {config.batch_size} is larger than the {count} training images; using {count} "
        "(a larger batch only repeats images and costs memory)",
        UserWarning,
        stacklevel=3,
    )
    return replace(config, batch_size=count)


def _hardware(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


class _EMA:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, parameters: list[Any], decay: float):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in parameters]
        self.updates = 0

    def update(self, parameters: list[Any]) -> None:
        import torch

        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for shadow, param in zip(self.shadow, parameters, strict=True):
                shadow.lerp_(param.detach(), 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for shadow, saved in zip(self.shadow, state["shadow"], strict=True):
            shadow.copy_(saved)
        self.updates = int(state["updates"])


def staging_folder(out_dir: Path) -> Path:
    """Where an ``overwrite`` run trains, beside ``out_dir``, until it finishes and replaces it."""
    return out_dir.with_name(out_dir.name + STAGING_SUFFIX)


def checkpoint_folder(out_dir: str | Path) -> Path | None:
    """The folder whose checkpoint ``resume`` continues (an unfinished ``overwrite`` run first), or None."""
    out_dir = Path(out_dir)
    for folder in (staging_folder(out_dir), out_dir):
        if (folder / CHECKPOINT_FILE).is_file():
            return folder
    return None


def _prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> tuple[Path, bool]:
    """Make the folder to train in ready; return it and whether a checkpoint is to be resumed.

    Earlier output is never deleted here: an ``overwrite`` run trains in :func:`staging_folder` and
    replaces ``out_dir`` only when it finishes, so an interrupted or failed run leaves the old prior.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"'{out_dir}' is a file, not a folder")
    if resume:
        folder = checkpoint_folder(out_dir)
        if folder is None:
            raise FileNotFoundError(f"cannot resume: '{out_dir / CHECKPOINT_FILE}' does not exist")
        return folder, True
    staged = staging_folder(out_dir)
    existing = [name for name in OUTPUT_ENTRIES if (out_dir / name).exists()]
    if (existing or staged.exists()) and not overwrite:
        held = ", ".join(existing) if existing else f"an unfinished run in '{staged}'"
        raise FileExistsError(
            f"'{out_dir}' already holds training output ({held}); pass resume to continue "
            "from its checkpoint or overwrite to replace it"
        )
    remove_path(staged)
    folder = staged if existing else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder, False


def _replace_output(staged: Path, out_dir: Path) -> None:
    """Move a finished run's entries from ``staged`` over ``out_dir``'s (each by renames), then drop ``staged``."""
    for name in OUTPUT_ENTRIES:
        if (staged / name).exists():
            replace_tree(staged / name, out_dir / name)
        else:
            remove_path(out_dir / name)
    remove_path(staged)


def iter_training(
    images: np.ndarray,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """Train a prior, yielding progress after every optimiser step.

    Parameters
    ----------
    images : numpy.ndarray
        In-distribution images, ``(N, H, W)`` or ``(N, H, W, C)``; never modified.
    out_dir : str or Path
        Folder that receives the prior (diffusers layout + metadata), ``checkpoint.pt`` and
        ``training_log.json``; rewritten at every checkpoint and at the end.
    config : TrainingConfig, optional
        Settings; defaults to ``TrainingConfig()``.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (its settings must match ``config``'s image
        size, channels and network).
    overwrite : bool
        Replace earlier training output in ``out_dir``. The new run trains in the sibling
        ``<out_dir>.new`` and replaces the old prior only when it finishes; until then (and if it is
        cancelled or fails) the old prior is untouched, and ``resume`` continues the new run.
        Without ``resume`` or ``overwrite`` an ``out_dir`` holding training output is an error, and
        nothing is touched. Another run training into ``out_dir`` at the same time is an
        :class:`~napari_klip.core.errors.OutputLockedError`.

    Yields
    ------
    TrainingProgress
        After each step. Closing the generator (``.close()``) saves a checkpoint first, and so
        does a ``KeyboardInterrupt`` raised inside a step.

    Returns
    -------
    TrainingResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    ValueError, napari_klip.core.data.ImageDataError
        For bad settings or unusable images (raised before anything is written).
    FileExistsError, FileNotFoundError
        For an occupied ``out_dir`` without ``overwrite``, or ``resume`` without a checkpoint.
    """
    from .device import resolve_device

    config = config or TrainingConfig()
    config.validate()
    out_dir = Path(out_dir)
    data, intensity_range, stats = _prepare_images(images, config)
    config = _batch_within_data(config, len(data))
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    with output_lock(out_dir):
        work_dir, resuming = _prepare_out_dir(out_dir, resume, overwrite)
        try:
            result = yield from _train(data, intensity_range, config, device, precision, work_dir, resuming, stats)
        except BaseException:
            if work_dir != out_dir and not (work_dir / CHECKPOINT_FILE).exists():
                remove_path(work_dir)  # a staged run that failed before its first checkpoint: nothing to resume
            raise
        if work_dir != out_dir:
            _replace_output(work_dir, out_dir)
        result.out_dir = out_dir
        return result


def _train(
    data: np.ndarray, intensity_range: tuple[float, float], config: TrainingConfig, device: Any, precision: str,
    out_dir: Path, resuming: bool, intensity_stats: dict[str, Any] | None = None,
) -> Generator[TrainingProgress, None, TrainingResult]:
    """The training loop of :func:`iter_training`, in ``out_dir`` (the output or its staging folder)."""
    import torch

    channels = data.shape[1]
    prior = create_prior(
        config.image_size, channels, config.network, intensity_range, config.training_data, seed=config.seed,
        schedule={"prediction_type": config.prediction_type},
    )
    unet = prior.unet.to(device).train()
    parameters = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    ema = _EMA(parameters, config.ema_decay) if config.ema_decay > 0 else None
    generator = torch.Generator(device=device).manual_seed(config.seed)
    alphas_cumprod = prior.scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    train_images = torch.from_numpy(data).to(device)
    history: list[dict[str, float]] = []
    step = 0
    elapsed_before = 0.0

    if resuming:
        state = load_checkpoint(out_dir / CHECKPOINT_FILE, device)
        saved = state["config"]
        defaults = TrainingConfig()  # checkpoints older than a setting were trained with its default
        for key in ("patch_size", "image_size", "network", "size_mode", "prediction_type", "loss_weighting", "min_snr_gamma",
                    "timestep_sampling"):
            if key == "min_snr_gamma" and config.loss_weighting != "min-snr":
                continue  # γ plays no part in a uniform run
            trained_with = saved.get(key, getattr(defaults, key))
            if trained_with != getattr(config, key):
                raise ValueError(f"cannot resume: the checkpoint was trained with {key}={trained_with!r}, not {getattr(config, key)!r}")
        if state["channels"] != channels:
            raise ValueError(f"cannot resume: the checkpoint has {state['channels']} channel(s), the data {channels}")
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"].cpu())
        step, history, elapsed_before = int(state["step"]), list(state["history"]), float(state["elapsed_s"])
        intensity_range = tuple(state["intensity_range"])

    metadata = PriorMetadata(
        image_size=(config.image_size, config.image_size),
        channels=channels,
        intensity_range=intensity_range,
        training_data=config.training_data,
        intensity_stats=intensity_stats or {},
        patch_size=config.patch_size,
    )

    def save(final: bool, cancelled: bool = False, time_limited: bool = False) -> TrainingResult:
        elapsed = elapsed_before + (time.perf_counter() - start)
        save_checkpoint(
            {
                "unet": unet.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "generator": generator.get_state(),
                "step": step,
                "history": history,
                "elapsed_s": elapsed,
                "config": asdict(config),
                "channels": channels,
                "intensity_range": list(intensity_range),
            },
            out_dir / CHECKPOINT_FILE,
        )
        final_loss = history[-1]["loss"] if history else float("nan")
        summary = {
            "steps": step,
            "final_loss": final_loss,
            "wall_time_s": round(elapsed, 2),
            "hardware": _hardware(device),
            "batch_size": config.batch_size,
            "network": config.network,
            "parameters": prior.num_parameters,
            "precision": precision,
            "prediction_type": config.prediction_type,
            "loss_weighting": config.loss_weighting if config.loss_weighting == "uniform" else f"{config.loss_weighting} (gamma {config.min_snr_gamma:g})",
            "timestep_sampling": config.timestep_sampling,
            "time_limit_reached": time_limited,
        }
        export = _export_unet(unet, ema)
        write_prior_folder(out_dir, export, prior.scheduler, _with_training(metadata, summary))
        log = {
            "config": asdict(config),
            "data": {"images": int(data.shape[0]), "shape": list(data.shape[1:]), "intensity_range": list(intensity_range)},
            "summary": summary,
            "finished": final,
            "cancelled": cancelled,
            "device": str(device),
            "versions": _versions(),
            "history": history,
        }
        (out_dir / LOG_FILE).write_text(json.dumps(log, indent=2) + "\n")
        return TrainingResult(out_dir, step, final_loss, elapsed, cancelled, list(history), time_limited)

    start = time.perf_counter()
    window_losses: list[float] = []
    time_limited = False
    try:
        while step < config.steps and not time_limited:
            batch = _sample_batch(train_images, config, generator)
            timesteps = sample_timesteps(batch.shape[0], alphas_cumprod, config.timestep_sampling, generator)
            noise = torch.randn(batch.shape, device=device, generator=generator)
            alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
            noisy = alpha_bar.sqrt() * batch + (1 - alpha_bar).sqrt() * noise
            learning_rate = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            with autocast(precision, device):
                prediction = unet(noisy, timesteps).sample
            loss = _loss(prediction.float(), batch, noise, alpha_bar, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            if ema is not None:
                ema.update(parameters)
            step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"the training loss became {loss_value} at step {step}; lower the learning rate")
            window_losses.append(loss_value)
            # the step that reaches the time limit ends this run (and logs its window, so the summary's loss is current)
            time_limited = config.time_limit_s is not None and step < config.steps and time.perf_counter() - start >= config.time_limit_s
            if step % config.log_every == 0 or step == config.steps or time_limited:
                history.append(
                    {"step": step, "loss": float(np.mean(window_losses)), "elapsed_s": round(elapsed_before + time.perf_counter() - start, 2)}
                )
                window_losses = []
            if step % config.checkpoint_every == 0 and step < config.steps and not time_limited:  # the final save follows
                save(final=False)
            yield TrainingProgress(step, config.steps, elapsed_before + time.perf_counter() - start, loss_value, learning_rate)
    except (GeneratorExit, KeyboardInterrupt):
        # Closing the generator lands between steps; a KeyboardInterrupt may land inside one, and the
        # checkpoint then holds the state as far as that step got (the CLI defers Ctrl-C to step ends).
        save(final=False, cancelled=True)
        raise
    return save(final=not time_limited, time_limited=time_limited)


def _loss(prediction: Any, clean: Any, noise: Any, alpha_bar: Any, config: TrainingConfig) -> Any:
    """The training loss of one batch: the mean squared error to the target, weighted per image by timestep."""
    import torch

    target = training_target(clean, noise, alpha_bar, config.prediction_type)
    if config.loss_weighting == "uniform":
        return torch.nn.functional.mse_loss(prediction, target)
    per_image = ((prediction - target) ** 2).flatten(1).mean(dim=1)
    return (loss_weights(alpha_bar.flatten(), config.prediction_type, config.loss_weighting, config.min_snr_gamma) * per_image).mean()


def _sample_batch(train_images: Any, config: TrainingConfig, generator: Any) -> Any:
    import torch

    count = train_images.shape[0]
    indices = torch.randint(0, count, (config.batch_size,), device=train_images.device, generator=generator)
    batch = train_images[indices]
    if config.patch_size is not None:
        batch = random_patches(batch, config.patch_size, generator)
    elif config.size_mode == "random-crop":
        height, width = batch.shape[-2:]
        size = config.image_size
        top = int(torch.randint(0, height - size + 1, (1,), device=train_images.device, generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), device=train_images.device, generator=generator))
        batch = batch[..., top : top + size, left : left + size]
    if config.horizontal_flip:
        flip = torch.rand(batch.shape[0], device=batch.device, generator=generator) < 0.5
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
    return batch


def _export_unet(trained: Any, ema: _EMA | None) -> Any:
    """A CPU copy of the trained network carrying the EMA weights when there are some."""
    import copy

    import torch

    export = copy.deepcopy(trained).to("cpu").eval()
    if ema is not None:
        with torch.no_grad():
            for param, shadow in zip([p for p in export.parameters() if p.requires_grad], ema.shadow, strict=True):
                param.copy_(shadow.cpu())
    return export


def _with_training(metadata: PriorMetadata, summary: dict[str, Any]) -> PriorMetadata:
    from dataclasses import replace

    return replace(metadata, training=summary)


def _versions() -> dict[str, str]:
    import diffusers
    import torch

    from .. import __version__

    return {"napari_klip": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version()}


def train_prior(
    images: np.ndarray,
    out_dir: str | Path,
    config: TrainingConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[TrainingProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train a prior to completion, reporting progress and honouring a cancel request.

    Parameters
    ----------
    images, out_dir, config, resume, overwrite
        As for :func:`iter_training`.
    progress : callable, optional
        Called with a :class:`TrainingProgress` after every step.
    should_cancel : callable, optional
        Polled after every step; when it returns true the run saves a checkpoint (resumable
        with ``resume=True``) and :class:`TrainingCancelled` is raised.

    Returns
    -------
    TrainingResult
    """
    steps = iter_training(images, out_dir, config, resume=resume, overwrite=overwrite)
    try:
        return drive(steps, progress, should_cancel)
    except Cancelled as cancelled:
        step = cancelled.last_update.step
        raise TrainingCancelled(f"training cancelled at step {step}; resume from '{out_dir}'", cancelled.last_update) from None
