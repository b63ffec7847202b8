"""Diffusion priors: a diffusers ``UNet2DModel`` plus a DDPM noise schedule, kept in a folder.

A prior folder written by napari-klip has the layout of a diffusers ``DDPMPipeline``::

    prior/
      model_index.json              # makes the folder loadable by diffusers.DDPMPipeline too
      unet/config.json, unet/diffusion_pytorch_model.safetensors
      scheduler/scheduler_config.json
      napari_klip_prior.json        # our metadata: image size, channels, intensity mapping, ...

Any local diffusers DDPM folder loads as well — the pipeline layout above without our metadata,
or a bare ``UNet2DModel`` folder (``config.json`` + weights) with an optional
``scheduler_config.json`` beside it. Missing metadata takes documented defaults (see
:func:`load_prior`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .device import resolve_device
from .errors import PriorLoadError
from .options import PREDICTION_TYPES
from .outputs import remove_path, replace_tree

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

METADATA_FILE = "napari_klip_prior.json"
METADATA_FORMAT_VERSION = 1
#: The DDPM schedule of Ho et al. (2020), used by the KLIP paper and by default here.
DEFAULT_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": True,
    "variance_type": "fixed_small",
}
#: Intensity range assumed for folders without our metadata: inputs in [0, 1] map to [-1, 1].
FOREIGN_INTENSITY_RANGE = (0.0, 1.0)




@dataclass(frozen=True)
class PriorMetadata:
    """What napari-klip records next to the network.

    Attributes
    ----------
    image_size : tuple of int
        ``(H, W)`` the network was trained on.
    channels : int
        Image channels.
    intensity_range : tuple of float
        Input intensities ``(low, high)`` that map linearly to the network range ``[-1, 1]``.
    training_data : str
        Free-text description of the training images.
    training : dict
        Summary of the training run (steps, final loss, hardware, command), if known.
    assumed_defaults : bool
        True when the folder had no napari-klip metadata and defaults were assumed.
    format_version : int
        Version of this metadata format.
    intensity_stats : dict
        Intensity statistics of the training images in their own units (dtype, min, max, mean,
        std, percentiles; :func:`napari_klip.core.intensity.training_statistics`), empty for
        priors trained before they were recorded. Inputs are mapped to the prior's units with
        them (:mod:`napari_klip.core.intensity`).
    patch_size : int, optional
        Set for a *patch prior* (``napari-klip train --patch-size``): the network was trained on
        random ``patch_size``² crops of larger images (``image_size`` is then
        ``(patch_size, patch_size)``) and is applied to whole images at their native size by
        tiling (:mod:`napari_klip.core.patches`). ``None`` (older priors, foreign folders): a
        whole-image prior, run on images resized to ``image_size``.
    """

    image_size: tuple[int, int]
    channels: int
    intensity_range: tuple[float, float] = FOREIGN_INTENSITY_RANGE
    training_data: str = "unknown"
    training: dict[str, Any] = field(default_factory=dict)
    assumed_defaults: bool = False
    format_version: int = METADATA_FORMAT_VERSION
    # --- input intensities (issue 14); optional, so older metadata files load unchanged ---
    intensity_stats: dict[str, Any] = field(default_factory=dict)
    # --- patch priors (issue 14) ---
    patch_size: int | None = None

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.intensity_range)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"intensity_range must be two finite numbers with high > low, got {self.intensity_range!r}")
        object.__setattr__(self, "intensity_range", (low, high))
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        if self.patch_size is not None:
            patch = int(self.patch_size)
            if patch < 1 or self.image_size != (patch, patch):
                raise ValueError(f"a patch prior's image_size must be (patch_size, patch_size), got {self.image_size} and {self.patch_size!r}")
            object.__setattr__(self, "patch_size", patch)

    @property
    def is_patch_prior(self) -> bool:
        """True for a patch prior (run on whole images by tiling), false for a whole-image prior."""
        return self.patch_size is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the content of ``napari_klip_prior.json``)."""
        data = asdict(self)
        data.pop("assumed_defaults")
        data["image_size"] = list(self.image_size)
        data["intensity_range"] = list(self.intensity_range)
        if self.patch_size is None:
            data.pop("patch_size")  # whole-image priors keep the metadata older napari-klip versions wrote
        return data


class DiffusionPrior:
    """A trained diffusion model ``ε_θ(x_t, t)`` with its noise schedule and metadata.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        The noise-prediction network.
    scheduler : diffusers.DDPMScheduler
        The training noise schedule (``betas``, ``alphas_cumprod``).
    metadata : PriorMetadata
        Image size, channels, intensity mapping and provenance.
    path : pathlib.Path, optional
        The folder it was loaded from.
    """

    def __init__(self, unet: "UNet2DModel", scheduler: "DDPMScheduler", metadata: PriorMetadata, path: Path | None = None):
        self.unet = unet
        self.scheduler = scheduler
        self.metadata = metadata
        self.path = path
        self.precision = "fp32"
        self.channels_last = False
        self.compiled: Any = None
        self.unet.eval()

    def __repr__(self) -> str:
        return (
            f"DiffusionPrior(image_size={self.image_size}, channels={self.channels}, "
            f"parameters={self.num_parameters:,}, device={self.device}, path={str(self.path) if self.path else None!r})"
        )

    # --- properties -----------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images the network was trained on."""
        return self.metadata.image_size

    @property
    def is_patch_prior(self) -> bool:
        """True when the network was trained on patches and runs on whole images by tiling."""
        return self.metadata.is_patch_prior

    @property
    def channels(self) -> int:
        """Number of image channels."""
        return self.metadata.channels

    @property
    def device(self) -> "torch.device":
        """The device the network's weights live on."""
        return next(self.unet.parameters()).device

    @property
    def num_parameters(self) -> int:
        """Number of network parameters."""
        return sum(p.numel() for p in self.unet.parameters())

    @property
    def prediction_type(self) -> str:
        """What the network predicts (``epsilon``, ``v_prediction`` or ``sample``); :meth:`predict_noise` always returns ε."""
        return str(self.scheduler.config.get("prediction_type", "epsilon"))

    @property
    def num_train_timesteps(self) -> int:
        """Length of the training noise schedule."""
        return int(self.scheduler.config.num_train_timesteps)

    def to(self, device: "str | torch.device") -> "DiffusionPrior":
        """Move the network to ``device`` (``auto``/``cuda``/``mps``/``cpu``) in place and return self."""
        self.unet.to(resolve_device(device))
        return self

    def set_precision(self, precision: str) -> "DiffusionPrior":
        """Run :meth:`predict_noise` at ``precision`` (``auto``, ``fp32`` or ``bf16``) on the current device.

        ``bf16`` is autocast: the weights stay float32 and outputs come back as float32.
        ``auto`` resolves to bf16 only on hardware with bf16 matrix units
        (:func:`napari_klip.core.precision.resolve_precision`). Returns self.
        """
        from .precision import resolve_precision

        self.precision = resolve_precision(precision, self.device)
        return self

    def set_channels_last(self, enabled: bool = True) -> "DiffusionPrior":
        """Run :meth:`predict_noise` in the ``channels_last`` memory layout (or back to the default); returns self.

        Only the layout of the network's weights and activations changes; inputs and outputs of
        :meth:`predict_noise` keep the default layout. Whether it is faster depends on the
        hardware (``benchmarks/throughput.py``).
        """
        import torch

        self.channels_last = bool(enabled)
        self.unet.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return self

    def set_compile(self, enabled: bool = True) -> "DiffusionPrior":
        """Run :meth:`predict_noise` through ``torch.compile(unet)`` (or eagerly again); returns self.

        The first call at each input shape compiles (about two minutes for the bundled prior on a
        2-core CPU); ``docs/benchmarks.md`` has what it gained there.
        """
        import torch

        self.compiled = torch.compile(self.unet) if enabled else None
        return self

    # --- intensities --------------------------------------------------------------------------
    def to_model_range(self, images: Any) -> Any:
        """Map intensities linearly from ``metadata.intensity_range`` to ``[-1, 1]``.

        Works on numpy arrays (returns float32) and torch tensors (keeps dtype); the input is
        not modified. Values outside the range map outside ``[-1, 1]``; nothing is clipped.
        """
        low, high = self.metadata.intensity_range
        if isinstance(images, np.ndarray):
            return ((images.astype(np.float32) - low) / (high - low) * 2.0 - 1.0).astype(np.float32)
        return (images - low) / (high - low) * 2.0 - 1.0

    def from_model_range(self, images: Any) -> Any:
        """Inverse of :meth:`to_model_range`."""
        low, high = self.metadata.intensity_range
        if isinstance(images, np.ndarray):
            return ((images.astype(np.float32) + 1.0) / 2.0 * (high - low) + low).astype(np.float32)
        return (images + 1.0) / 2.0 * (high - low) + low

    # --- network ----------------------------------------------------------------------------
    def predict_noise(self, noisy: "torch.Tensor", timesteps: "torch.Tensor | int") -> "torch.Tensor":
        """Evaluate ``ε_θ(x_t, t)``.

        Parameters
        ----------
        noisy : torch.Tensor
            ``(B, C, H, W)`` noisy images in the model range, on :attr:`device`.
        timesteps : torch.Tensor or int
            Training-schedule timesteps (``0 .. num_train_timesteps - 1``), scalar or ``(B,)``.

        Returns
        -------
        torch.Tensor
            Predicted noise, shaped like ``noisy``.
        """
        import torch

        if not isinstance(timesteps, torch.Tensor):
            timesteps = torch.tensor(timesteps, device=noisy.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(noisy.shape[0])
        if self.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        network = self.unet if self.compiled is None else self.compiled
        timesteps = timesteps.to(noisy.device)
        if self.precision == "fp32":
            predicted = network(noisy, timesteps).sample
        else:
            from .precision import autocast

            with autocast(self.precision, noisy.device):
                predicted = network(noisy, timesteps).sample.float()
        if self.prediction_type != "epsilon":
            from .diffusion import alphas_cumprod
            from .parameterization import noise_from_output

            alpha_bar = alphas_cumprod(self, noisy.device)[0][timesteps]
            predicted = noise_from_output(predicted, noisy, alpha_bar.view(-1, *([1] * (noisy.ndim - 1))), self.prediction_type)
        return predicted.contiguous() if self.channels_last else predicted

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the prior as a diffusers pipeline folder with napari-klip metadata.

        Parameters
        ----------
        path : str or Path
            Target folder.
        overwrite : bool
            Replace the prior files of an existing prior folder. Without it, a folder that
            already holds a prior is an error. Unrelated files in the folder are never touched.

        Returns
        -------
        Path
            The folder written.

        Raises
        ------
        FileExistsError
            If the folder already holds a prior and ``overwrite`` is false.
        """
        folder = Path(path)
        if (folder / METADATA_FILE).exists() or (folder / "model_index.json").exists():
            if not overwrite:
                raise FileExistsError(f"'{folder}' already holds a prior; pass overwrite=True to replace it")
        write_prior_folder(folder, self.unet, self.scheduler, self.metadata)
        return folder


def write_prior_folder(folder: Path, unet: "UNet2DModel", scheduler: "DDPMScheduler", metadata: PriorMetadata) -> None:
    """Write ``unet``, ``scheduler`` and ``metadata`` into ``folder`` (pipeline layout), replacing prior files.

    Everything is written into a hidden subfolder first and then renamed into place entry by entry,
    so a killed process never leaves a truncated weights file; the weights are safetensors.
    """
    import diffusers

    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".prior.partial"
    remove_path(staging)
    staging.mkdir()
    unet.save_pretrained(staging / "unet", safe_serialization=True)
    scheduler.save_pretrained(staging / "scheduler")
    model_index = {
        "_class_name": "DDPMPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", type(scheduler).__name__],
        "unet": ["diffusers", "UNet2DModel"],
    }
    (staging / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    (staging / METADATA_FILE).write_text(json.dumps(metadata.to_json(), indent=2) + "\n")
    for name in ("unet", "scheduler", "model_index.json", METADATA_FILE):
        replace_tree(staging / name, folder / name)
    remove_path(staging)


def create_prior(
    image_size: int,
    channels: int = 1,
    network: str = "small",
    intensity_range: tuple[float, float] = (0.0, 1.0),
    training_data: str = "untrained",
    seed: int = 0,
    schedule: dict[str, Any] | None = None,
) -> DiffusionPrior:
    """Build an untrained prior with a network preset and the DDPM schedule.

    Parameters
    ----------
    image_size : int
        Side of the square images.
    channels : int
        Image channels.
    network : {"tiny", "small", "base"}
        Network size (see :data:`napari_klip.core.networks.NETWORK_PRESETS`).
    intensity_range : tuple of float
        Input intensities that map to ``[-1, 1]``.
    training_data : str
        Description stored in the metadata.
    seed : int
        Seed of the weight initialisation (the global torch RNG is left untouched).
    schedule : dict, optional
        Overrides of :data:`DEFAULT_SCHEDULE`.

    Returns
    -------
    DiffusionPrior
        On the CPU.
    """
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from .networks import unet_config

    config = unet_config(image_size, channels, network)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DModel(**config)
    scheduler = DDPMScheduler(**{**DEFAULT_SCHEDULE, **(schedule or {})})
    metadata = PriorMetadata(
        image_size=(image_size, image_size),
        channels=channels,
        intensity_range=intensity_range,
        training_data=training_data,
    )
    return DiffusionPrior(unet, scheduler, metadata)


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PriorLoadError(folder, f"'{path.name}' is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise PriorLoadError(folder, f"'{path.name}' does not hold a JSON object")
    return data


def _locate_unet(folder: Path) -> tuple[Path, str | None]:
    """Return the folder and subfolder holding the UNet config."""
    if (folder / "unet" / "config.json").is_file():
        return folder, "unet"
    if (folder / "config.json").is_file():
        return folder, None
    raise PriorLoadError(
        folder,
        "no UNet found: expected 'unet/config.json' (diffusers pipeline layout) or 'config.json' "
        "(a bare UNet2DModel folder)",
    )


def _load_scheduler(folder: Path) -> "DDPMScheduler":
    from diffusers import DDPMScheduler

    for candidate in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if candidate.is_file():
            config = _read_json(candidate, folder)
            kind = config.get("_class_name", "DDPMScheduler")
            if "beta_schedule" not in config and "trained_betas" not in config:
                raise PriorLoadError(
                    folder,
                    f"'{candidate.relative_to(folder)}' describes a {kind} without a beta schedule; only "
                    "variance-preserving (DDPM/DDIM-style) schedules are supported",
                )
            prediction_type = config.get("prediction_type", "epsilon")
            if prediction_type not in PREDICTION_TYPES:
                raise PriorLoadError(
                    folder,
                    f"'{candidate.relative_to(folder)}' has prediction_type {prediction_type!r}; supported: "
                    f"{', '.join(PREDICTION_TYPES)}",
                )
            try:
                return DDPMScheduler.from_config(config)
            except (TypeError, ValueError, NotImplementedError) as error:
                raise PriorLoadError(folder, f"invalid scheduler config '{candidate.name}': {error}") from error
    return DDPMScheduler(**DEFAULT_SCHEDULE)


def _metadata_for(folder: Path, unet: "UNet2DModel") -> PriorMetadata:
    sample_size = unet.config.sample_size
    size = tuple(sample_size) if isinstance(sample_size, (list, tuple)) else (int(sample_size), int(sample_size))
    channels = int(unet.config.in_channels)
    path = folder / METADATA_FILE
    if not path.is_file():
        _check_foreign_unet(folder, unet, size)
        return PriorMetadata(image_size=size, channels=channels, assumed_defaults=True)
    data = _read_json(path, folder)
    try:
        metadata = PriorMetadata(
            image_size=tuple(data.get("image_size", size)),
            channels=int(data.get("channels", channels)),
            intensity_range=tuple(data.get("intensity_range", FOREIGN_INTENSITY_RANGE)),
            training_data=str(data.get("training_data", "unknown")),
            training=dict(data.get("training", {})),
            format_version=int(data.get("format_version", METADATA_FORMAT_VERSION)),
            intensity_stats=dict(data.get("intensity_stats", {})),
            patch_size=None if data.get("patch_size") is None else int(data["patch_size"]),
        )
    except (TypeError, ValueError) as error:
        raise PriorLoadError(folder, f"invalid '{METADATA_FILE}': {error}") from error
    if metadata.format_version > METADATA_FORMAT_VERSION:
        raise PriorLoadError(
            folder,
            f"'{METADATA_FILE}' has format version {metadata.format_version}; this napari-klip reads up to "
            f"{METADATA_FORMAT_VERSION} — upgrade napari-klip",
        )
    if metadata.channels != channels or metadata.image_size != size:
        raise PriorLoadError(
            folder,
            f"'{METADATA_FILE}' says {metadata.channels} channel(s) at {metadata.image_size} but the UNet config "
            f"says {channels} at {size}",
        )
    return metadata


def _check_foreign_unet(folder: Path, unet: "UNet2DModel", size: tuple[int, int]) -> None:
    """For a folder without napari-klip metadata: refuse a ``sample_size`` the UNet cannot run at, warn about the rest.

    Nothing in the weights records the size they were trained at, so the config's ``sample_size``
    is taken on trust — and said so.
    """
    import warnings

    levels = len(unet.config.down_block_types)
    multiple = 2 ** (levels - 1)
    if any(side < multiple or side % multiple for side in size):
        raise PriorLoadError(
            folder,
            f"the UNet config says sample_size {size}, but a UNet with {levels} resolution levels needs sides that are "
            f"multiples of {multiple}; fix 'sample_size' in its config.json or add '{METADATA_FILE}'",
        )
    warnings.warn(
        f"'{folder}' has no {METADATA_FILE}: assuming the image size {size[0]}×{size[1]} of the UNet config's sample_size "
        "and intensities in [0, 1]; if the network was trained otherwise its scores are meaningless — write a "
        f"{METADATA_FILE} (see docs/priors.md)",
        UserWarning,
        stacklevel=3,
    )


def load_prior(path: str | Path, device: "str | torch.device" = "auto") -> DiffusionPrior:
    """Load a diffusion prior from a local folder. Never downloads anything.

    Parameters
    ----------
    path : str or Path
        A prior folder written by napari-klip, a diffusers ``DDPMPipeline`` folder (``unet/`` and
        ``scheduler/``), or a bare ``UNet2DModel`` folder (``config.json`` + weights, optionally
        ``scheduler_config.json``).
    device : {"auto", "cuda", "mps", "cpu"} or torch.device
        Where to put the network.

    Returns
    -------
    DiffusionPrior

    Raises
    ------
    PriorLoadError
        If the folder is missing, lacks a UNet or its weights, or holds corrupt files.
    DeviceUnavailableError
        If the requested device is absent.

    Notes
    -----
    Defaults for folders without ``napari_klip_prior.json``: image size and channels from the
    UNet config, intensities in ``[0, 1]`` mapped to the network range ``[-1, 1]``
    (``metadata.assumed_defaults`` is then true); without a scheduler config, the linear DDPM
    schedule of Ho et al. (1000 steps, β from 1e-4 to 0.02).
    """
    from diffusers import UNet2DModel

    torch_device = resolve_device(device)
    folder = Path(path).expanduser()
    if not folder.exists():
        raise PriorLoadError(folder, "the folder does not exist")
    if not folder.is_dir():
        raise PriorLoadError(folder, "this is a file, not a prior folder")
    root, subfolder = _locate_unet(folder)
    unet_dir = root / subfolder if subfolder else root
    config = _read_json(unet_dir / "config.json", folder)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise PriorLoadError(folder, f"the network is a {config.get('_class_name')}, not a diffusers UNet2DModel")
    if not any(unet_dir.glob("*.safetensors")) and any(unet_dir.glob("*.bin")):
        raise PriorLoadError(
            folder,
            f"'{unet_dir}' has only pickle weights (.bin), which could run code when loaded; napari-klip reads "
            "safetensors only — re-save the UNet with save_pretrained(..., safe_serialization=True) where you trust it",
        )
    try:
        unet = UNet2DModel.from_pretrained(
            root, subfolder=subfolder, local_files_only=True, low_cpu_mem_usage=False, use_safetensors=True
        )
    except Exception as error:  # diffusers raises OSError, ValueError, safetensors errors, ...
        raise PriorLoadError(folder, f"the UNet weights could not be read ({type(error).__name__}: {error})") from error
    scheduler = _load_scheduler(folder)
    metadata = _metadata_for(folder, unet)
    unet.to(torch_device)
    return DiffusionPrior(unet, scheduler, metadata, path=folder)


#: The prior bundled with the package, used when no prior is given.
DEFAULT_PRIOR_NAME = "organamnist32-tiny-cpu"


def default_prior_path() -> Path:
    """Folder of the prior bundled with the package (used when no prior is given).

    It is ``organamnist32-tiny-cpu``: a 1.1 M-parameter UNet trained by ``napari-klip train`` on
    the OrganAMNIST train split (abdominal CT crops, 32×32); see ``docs/priors.md``.
    """
    return Path(__file__).parents[1] / "data" / "priors" / DEFAULT_PRIOR_NAME


#: The microscopy patch prior bundled with the package (``skimage.data.cell()``; ``docs/priors.md``).
MICROSCOPY_PRIOR_NAME = "cell32-patch-tiny-cpu"
#: The liver CT prior bundled with the package (OrganAMNIST liver slices at their native 28²; the demo's prior; ``docs/priors.md``).
LIVER_PRIOR_NAME = "organamnist-liver28-tiny-cpu"
#: Priors shipped inside the package, loadable by name (``--model cell32-patch-tiny-cpu``).
BUNDLED_PRIORS = (DEFAULT_PRIOR_NAME, MICROSCOPY_PRIOR_NAME, LIVER_PRIOR_NAME)


def bundled_prior_path(name: str) -> Path:
    """Folder of a prior shipped inside the package (one of :data:`BUNDLED_PRIORS`).

    Raises
    ------
    ValueError
        For a name that is not a bundled prior.
    """
    if name not in BUNDLED_PRIORS:
        raise ValueError(f"no bundled prior named {name!r}; bundled: {', '.join(BUNDLED_PRIORS)}")
    return default_prior_path().parent / name


def resolve_prior(prior: "DiffusionPrior | str | Path | None", device: str = "auto") -> DiffusionPrior:
    """Accept a loaded prior or a folder path; ``None`` loads the bundled default prior.

    Parameters
    ----------
    prior : DiffusionPrior, str, Path or None
        A loaded prior (returned as is), a prior folder, the name of a bundled prior
        (:data:`BUNDLED_PRIORS`; a folder of that name in the working directory wins), or
        ``None`` for :func:`default_prior_path`.
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``, for priors given as paths.

    Returns
    -------
    DiffusionPrior
    """
    from ._llvm import avoid_triton_llvm_clash

    avoid_triton_llvm_clash()  # a napari viewer opened before the first prior load would otherwise crash on Mesa OpenGL
    if isinstance(prior, DiffusionPrior):
        return prior
    if prior is not None and not isinstance(prior, (str, Path)):
        raise TypeError(f"prior must be a DiffusionPrior, a prior folder (str or Path) or None, got {type(prior).__name__} {prior!r}")
    if prior is not None and str(prior) in BUNDLED_PRIORS and not Path(prior).exists():
        prior = bundled_prior_path(str(prior))
    return load_prior(default_prior_path() if prior is None else prior, device=device)
