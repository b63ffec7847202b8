"""The LMD "detect" step: distances between images and their reconstructions.

Every distance compares a reference batch with a candidate batch, both ``(N, C, H, W)`` torch
tensors in the model range ``[-1, 1]``, and returns a :class:`DistanceResult`: one value per
image (larger = more different) and a per-pixel map of the same height and width (for
localization). Distances run on the device of their inputs, never modify them, and are
deterministic.

Four distances are offered (:data:`DISTANCES`):

``"lpips"``
    LPIPS (Zhang et al., 2018) with an ImageNet AlexNet backbone, the default of the LMD paper.
    The calibrated linear layers ship with the ``lpips`` package; the AlexNet backbone must be
    supplied as a file, because napari-klip never downloads anything (see
    :func:`find_alexnet_weights`).
``"mse"``
    Squared difference, averaged over channels (map) and pixels (value).
``"ssim"``
    ``1 - SSIM`` with a 7 × 7 uniform window, the conventions of
    :func:`skimage.metrics.structural_similarity`.
``"prior-features"``
    Cosine distance between intermediate features of the diffusion prior's own UNet at a small
    noise level; needs no external weights.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device

if TYPE_CHECKING:  # pragma: no cover
    import lpips

    from ..prior import DiffusionPrior

#: Names accepted by :func:`make_distance`.
DISTANCES = ("lpips", "mse", "ssim", "prior-features")
#: Environment variable naming an AlexNet weights file for LPIPS.
ALEXNET_WEIGHTS_ENV = "NAPARI_KLIP_ALEXNET_WEIGHTS"
#: File name of torchvision's ImageNet AlexNet checkpoint (what ``lpips`` would download).
TORCHVISION_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
TORCHVISION_ALEXNET_URL = f"https://download.pytorch.org/models/{TORCHVISION_ALEXNET_FILE}"
#: Shapes of AlexNet's convolution layers in torchvision's ``features`` layout.
ALEXNET_FEATURE_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
}
#: Where each torchvision ``features.<index>`` layer sits in ``lpips.LPIPS(net="alex")``.
_LPIPS_BACKBONE_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
#: Smallest image side AlexNet (hence LPIPS) accepts: two 3×3/2 max-pools after an 11×11/4 conv.
LPIPS_MIN_SIZE = 31
#: Default timestep of the prior-features distance (of a 1000-step schedule; scaled for others).
PRIOR_FEATURE_TIMESTEP = 50
LPIPS_RANDOM_BACKBONE_NAME = "lpips-random-backbone"


class LpipsWeightsError(FileNotFoundError):
    """No usable ImageNet AlexNet weights for LPIPS were found (napari-klip never downloads them)."""


class LpipsWeightsFormatError(LpipsWeightsError):
    """A file given as AlexNet weights does not hold AlexNet's convolution layers."""


@dataclass(frozen=True)
class DistanceResult:
    """Distances of ``N`` image pairs.

    Attributes
    ----------
    values : torch.Tensor
        ``(N,)`` float32, one distance per pair; larger means more different, 0 for identical
        images.
    maps : torch.Tensor
        ``(N, H, W)`` float32 per-pixel distances at the input's height and width.
    """

    values: torch.Tensor
    maps: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or self.maps.ndim != 3 or self.maps.shape[0] != self.values.shape[0]:
            raise ValueError(
                f"a DistanceResult needs values (N,) and maps (N, H, W); got {tuple(self.values.shape)} "
                f"and {tuple(self.maps.shape)}"
            )


class ImageDistance(Protocol):
    """A distance between two image batches (see the module docstring)."""

    name: str

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> DistanceResult: ...


# --- input checks ---------------------------------------------------------------------------


def check_image_pair(reference: torch.Tensor, candidate: torch.Tensor, distance: str) -> None:
    """Raise a clear error unless both are floating ``(N, C, H, W)`` tensors of one shape and device.

    Parameters
    ----------
    reference, candidate : torch.Tensor
        The image batches to compare.
    distance : str
        Name of the distance, for the message.

    Raises
    ------
    TypeError
        If an input is not a floating-point torch tensor.
    ValueError
        If the shapes differ, are not 4-D, hold no image, or the values are not finite.
    """
    for label, images in (("reference", reference), ("candidate", candidate)):
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"{distance}: {label} must be a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"{distance}: {label} must be a floating-point tensor in [-1, 1], got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(
                f"{distance}: {label} must be shaped (N, C, H, W), got {images.ndim}-D shape {tuple(images.shape)}"
            )
    if reference.shape != candidate.shape:
        raise ValueError(
            f"{distance}: reference {tuple(reference.shape)} and candidate {tuple(candidate.shape)} differ in shape"
        )
    if reference.device != candidate.device:
        raise ValueError(f"{distance}: reference is on {reference.device} but candidate on {candidate.device}")
    if reference.shape[0] == 0 or reference.shape[1] == 0:
        raise ValueError(f"{distance}: the batches hold no image, shape {tuple(reference.shape)}")
    if not (torch.isfinite(reference).all() and torch.isfinite(candidate).all()):
        raise ValueError(f"{distance}: the images contain NaN or infinite values")


def _result(values: torch.Tensor, maps: torch.Tensor, device: torch.device) -> DistanceResult:
    """Package float32 values and maps on ``device``."""
    return DistanceResult(
        values=values.to(device=device, dtype=torch.float32),
        maps=maps.to(device=device, dtype=torch.float32),
    )


def _working_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (CPU, CUDA), else float32 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


# --- MSE ------------------------------------------------------------------------------------


class MseDistance:
    """Mean squared error: map = squared difference averaged over channels, value = its mean."""

    name = "mse"

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> DistanceResult:
        check_image_pair(reference, candidate, self.name)
        dtype = _working_dtype(reference.device)
        with torch.no_grad():
            maps = (candidate.to(dtype) - reference.to(dtype)).square().mean(dim=1)
            return _result(maps.mean(dim=(1, 2)), maps, reference.device)

    def __repr__(self) -> str:
        return "MseDistance()"


# --- SSIM -----------------------------------------------------------------------------------


def _symmetric_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad the last two axes by mirroring about the edge (``d c b a | a b c d``, scipy's ``reflect``)."""

    def mirrored_indices(size: int) -> torch.Tensor:
        index = torch.arange(-pad, size + pad, device=images.device)
        index = torch.where(index < 0, -index - 1, index)
        return torch.where(index >= size, 2 * size - index - 1, index)

    return images.index_select(-2, mirrored_indices(images.shape[-2])).index_select(-1, mirrored_indices(images.shape[-1]))


def ssim_maps(
    reference: torch.Tensor, candidate: torch.Tensor, win_size: int = 7, data_range: float = 2.0
) -> torch.Tensor:
    """Per-channel SSIM maps with a uniform window, as :func:`skimage.metrics.structural_similarity`.

    Same conventions as ``structural_similarity(a, b, win_size=win_size, data_range=data_range,
    gaussian_weights=False, use_sample_covariance=True, full=True)`` applied per channel: local
    means and (sample) covariances over a ``win_size × win_size`` window, ``K1 = 0.01``,
    ``K2 = 0.03``, and borders filled by mirroring the image about its edge (scipy's
    ``reflect`` mode).

    Parameters
    ----------
    reference, candidate : torch.Tensor
        ``(N, C, H, W)`` images of one shape.
    win_size : int
        Odd window side, at most ``min(H, W)``.
    data_range : float
        Dynamic range of the images (2 for the model range ``[-1, 1]``).

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` SSIM values (1 where the images agree), in float64 (float32 on MPS).

    Raises
    ------
    ValueError
        For an even or too large window or a non-positive data range.
    """
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"ssim: win_size must be an odd integer >= 3, got {win_size!r}")
    height, width = reference.shape[-2:]
    if win_size > min(height, width):
        raise ValueError(f"ssim: the {win_size}x{win_size} window exceeds the {height}x{width} images; pass a smaller odd win_size")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")
    dtype = _working_dtype(reference.device)
    first, second = reference.to(dtype), candidate.to(dtype)
    channels = first.shape[1]
    stacked = torch.cat([first, second, first * first, second * second, first * second], dim=1)
    local = F.avg_pool2d(_symmetric_pad(stacked, win_size // 2), kernel_size=win_size, stride=1)
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = local.split(channels, dim=1)
    sample_correction = win_size**2 / (win_size**2 - 1)
    var_a = sample_correction * (mean_aa - mean_a * mean_a)
    var_b = sample_correction * (mean_bb - mean_b * mean_b)
    cov_ab = sample_correction * (mean_ab - mean_a * mean_b)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    numerator = (2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)
    denominator = (mean_a * mean_a + mean_b * mean_b + c1) * (var_a + var_b + c2)
    return numerator / denominator


class SsimDistance:
    """``1 - SSIM`` with a uniform window (scikit-image's conventions).

    The value is ``1 - mean SSIM`` over the pixels at least ``(win_size - 1) // 2`` from the
    border, averaged over channels — exactly ``1 - structural_similarity(...)`` of scikit-image.
    The map is ``1 - SSIM map`` averaged over channels and covers the whole image: border pixels
    use windows mirrored about the edge, so they are defined but excluded from the value (the
    value equals the mean of the map's interior, not of the whole map).

    Parameters
    ----------
    win_size : int
        Odd window side.
    data_range : float
        Dynamic range of the inputs; 2 for the model range ``[-1, 1]``.
    """

    name = "ssim"

    def __init__(self, win_size: int = 7, data_range: float = 2.0):
        self.win_size = win_size
        self.data_range = data_range

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> DistanceResult:
        check_image_pair(reference, candidate, self.name)
        with torch.no_grad():
            dissimilarity = 1.0 - ssim_maps(reference, candidate, self.win_size, self.data_range)
            crop = (self.win_size - 1) // 2
            interior = dissimilarity[..., crop : dissimilarity.shape[-2] - crop, crop : dissimilarity.shape[-1] - crop]
            return _result(interior.mean(dim=(1, 2, 3)), dissimilarity.mean(dim=1), reference.device)

    def __repr__(self) -> str:
        return f"SsimDistance(win_size={self.win_size}, data_range={self.data_range})"


# --- LPIPS ----------------------------------------------------------------------------------


def _weights_hint() -> str:
    torch_cache_file = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE
    return (
        f"Place torchvision's ImageNet AlexNet checkpoint '{TORCHVISION_ALEXNET_FILE}' "
        f"(published at {TORCHVISION_ALEXNET_URL}) at '{torch_cache_file}', or pass the path of that file "
        "(or of an .npz holding the conv layers 'features.{0,3,6,8,10}.{weight,bias}') explicitly, or set "
        f"the environment variable {ALEXNET_WEIGHTS_ENV} to it. The distances 'mse', 'ssim' and "
        "'prior-features' work without these weights."
    )


def find_alexnet_weights(path: str | Path | None = None) -> Path:
    """Locate ImageNet AlexNet weights for LPIPS. Never downloads anything.

    Search order: ``path``; the environment variable ``NAPARI_KLIP_ALEXNET_WEIGHTS``; torchvision's
    cache, ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``.

    Parameters
    ----------
    path : str or Path, optional
        A torchvision AlexNet state dict (``.pth``) or an ``.npz`` with the keys
        ``features.{0,3,6,8,10}.{weight,bias}``.

    Returns
    -------
    Path
        The weights file (not yet validated; :func:`read_alexnet_features` checks it).

    Raises
    ------
    LpipsWeightsError
        If ``path`` or the environment variable names a missing file, or nothing was found; the
        message says which file to place where and which distances work without it.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if not candidate.is_file():
            raise LpipsWeightsError(f"AlexNet weights for LPIPS: '{candidate}' is not a file. {_weights_hint()}")
        return candidate
    from_environment = os.environ.get(ALEXNET_WEIGHTS_ENV, "").strip()
    if from_environment:
        candidate = Path(from_environment).expanduser()
        if not candidate.is_file():
            raise LpipsWeightsError(
                f"AlexNet weights for LPIPS: {ALEXNET_WEIGHTS_ENV}='{from_environment}' is not a file. {_weights_hint()}"
            )
        return candidate
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE
    if cached.is_file():
        return cached
    raise LpipsWeightsError(
        "LPIPS needs ImageNet-trained AlexNet weights and none were found (no path given, "
        f"{ALEXNET_WEIGHTS_ENV} unset, '{cached}' absent); napari-klip never downloads them. {_weights_hint()}"
    )


def _is_npz(path: Path) -> bool:
    """True for a zip archive of ``.npy`` members (torch's own format is a zip archive too)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def _load_weight_arrays(path: Path) -> Mapping[str, Any]:
    """Read an ``.npz`` (no pickles) or a torch state dict (``weights_only``) into a name → array mapping."""
    try:
        if _is_npz(path):
            with np.load(path, allow_pickle=False) as archive:
                content = {key: archive[key] for key in archive.files}
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # numpy and torch raise many kinds on foreign files
        raise LpipsWeightsFormatError(
            f"'{path}' is neither an .npz nor a torch state dict of AlexNet weights ({type(error).__name__}: {error}). "
            + _weights_hint()
        ) from error
    if not isinstance(content, Mapping):
        raise LpipsWeightsFormatError(
            f"'{path}' holds a {type(content).__name__}, not a mapping of layer names to AlexNet weights. " + _weights_hint()
        )
    return content


def read_alexnet_features(path: str | Path) -> dict[str, torch.Tensor]:
    """Read and validate AlexNet's convolution layers from a weights file.

    Parameters
    ----------
    path : str or Path
        An ``.npz`` with the keys ``features.{0,3,6,8,10}.{weight,bias}`` (our layout) or
        torchvision's ``alexnet-owt-7be5be79.pth`` state dict (its ``classifier.*`` keys are
        ignored).

    Returns
    -------
    dict
        The ten ``features.*`` tensors, float32, on the CPU.

    Raises
    ------
    LpipsWeightsFormatError
        If the file cannot be read, lacks a layer, or a layer has the wrong shape.
    """
    path = Path(path)
    content = _load_weight_arrays(path)
    missing = [key for key in ALEXNET_FEATURE_SHAPES if key not in content]
    if missing:
        found = sorted(content)[:6]
        raise LpipsWeightsFormatError(
            f"'{path}' is not an AlexNet weights file: it lacks {', '.join(missing)} (it holds e.g. {found}). "
            + _weights_hint()
        )
    features = {}
    for key, shape in ALEXNET_FEATURE_SHAPES.items():
        tensor = torch.as_tensor(content[key])
        if tuple(tensor.shape) != shape:
            raise LpipsWeightsFormatError(
                f"'{path}' is not an AlexNet weights file: '{key}' has shape {tuple(tensor.shape)}, expected {shape}. "
                + _weights_hint()
            )
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise LpipsWeightsFormatError(f"'{path}': '{key}' does not hold finite floating-point weights")
        features[key] = tensor.detach().to(torch.float32).clone()
    return features


def _lpips_backbone_key(feature_key: str) -> str:
    """``features.3.weight`` → ``net.slice2.3.weight`` (the layer's place inside ``lpips.LPIPS``)."""
    _, index, kind = feature_key.split(".")
    return f"net.slice{_LPIPS_BACKBONE_SLICE[int(index)]}.{index}.{kind}"


def load_lpips(weights: str | Path | None = None, device: "str | torch.device" = "cpu", random_backbone: bool = False) -> "lpips.LPIPS":
    """Build ``lpips.LPIPS(net="alex", spatial=True)`` with ImageNet AlexNet weights from a file.

    The calibrated linear layers come with the ``lpips`` package; the AlexNet backbone is read
    from the file :func:`find_alexnet_weights` finds. Nothing is downloaded.

    Parameters
    ----------
    weights : str or Path, optional
        AlexNet weights (see :func:`find_alexnet_weights` for the search when omitted).
    device : str or torch.device
        Where to put the network.
    random_backbone : bool
        Keep a randomly initialised backbone (seeded, so reproducible) instead of ImageNet
        weights. **Only for testing the wiring**: such an LPIPS is not a perceptual distance.

    Returns
    -------
    lpips.LPIPS
        In eval mode, without gradients. Its attribute ``napari_klip_backbone`` records the
        weights file, or ``"random"``.

    Raises
    ------
    LpipsWeightsError
        If no weights file is found (before anything is built).
    LpipsWeightsFormatError
        If the file does not hold AlexNet's convolution layers.
    ValueError
        If both ``weights`` and ``random_backbone`` are given.
    """
    if random_backbone and weights is not None:
        raise ValueError("pass either AlexNet weights or random_backbone=True, not both")
    features = None
    source = "random"
    if not random_backbone:
        path = find_alexnet_weights(weights)
        features = read_alexnet_features(path)
        source = str(path)

    import lpips

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        # torchvision warns that lpips uses its deprecated ``pretrained`` argument; the random
        # initialisation is seeded so a random backbone is reproducible (global RNG untouched).
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(0)
        model = lpips.LPIPS(net="alex", pnet_rand=True, spatial=True, verbose=False)
    if features is not None:
        incompatible = model.load_state_dict({_lpips_backbone_key(key): value for key, value in features.items()}, strict=False)
        if incompatible.unexpected_keys:  # pragma: no cover - only if lpips renames its modules
            raise RuntimeError(f"this lpips version lays out AlexNet differently: {incompatible.unexpected_keys}")
    model.napari_klip_backbone = source
    return model.eval().requires_grad_(False).to(resolve_device(device))


class LpipsDistance:
    """LPIPS (AlexNet) between image batches, with its spatial map.

    Grey images are replicated to three channels; inputs are in ``[-1, 1]``. Both batches go
    through the backbone in one call. The value equals ``lpips.LPIPS(spatial=False)`` (the sum
    over the five layers of the spatially averaged, linearly weighted feature differences); the
    map equals ``lpips.LPIPS(spatial=True)`` (each layer's map bilinearly upsampled to ``H × W``
    and summed). Because bilinear upsampling from AlexNet's coarse grids (7 × 7, 3 × 3 and 1 × 1
    at 32 × 32 input) does not preserve averages exactly, the map's mean is close to (within
    about 0.2 % on 32 × 32 digits), but not exactly, the value.

    At 32 × 32 the three deepest layers are 1 × 1 and carry most of the value, so the map barely
    localizes. ``input_size`` computes LPIPS on both images bilinearly upsampled to a larger
    square (e.g. 128) instead, which gives a map that localizes; the values then differ from
    LPIPS at the native size, and the map is averaged back to ``H × W`` over areas.

    Parameters
    ----------
    model : lpips.LPIPS
        From :func:`load_lpips`; moved to the inputs' device when they differ.
    name : str, optional
        Defaults to ``"lpips"`` (``"lpips-random-backbone"`` for a random backbone), with
        ``"@<input_size>"`` appended when ``input_size`` is set.
    input_size : int, optional
        Side of the square the images are resized to before LPIPS; ``None`` keeps their size
        (the LMD paper's setting).
    """

    def __init__(self, model: "lpips.LPIPS", name: str | None = None, input_size: int | None = None):
        if input_size is not None and (
            isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < LPIPS_MIN_SIZE
        ):
            raise ValueError(f"lpips: input_size must be an integer >= {LPIPS_MIN_SIZE} or None, got {input_size!r}")
        self.model = model
        self.input_size = None if input_size is None else int(input_size)
        if name is None:
            name = LPIPS_RANDOM_BACKBONE_NAME if getattr(model, "napari_klip_backbone", None) == "random" else "lpips"
            if self.input_size is not None:
                name = f"{name}@{self.input_size}"
        self.name = name

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> DistanceResult:
        import lpips

        check_image_pair(reference, candidate, self.name)
        count, channels, height, width = reference.shape
        if channels not in (1, 3):
            raise ValueError(f"{self.name}: needs grey (C=1) or RGB (C=3) images, got C={channels}")
        if self.input_size is None and min(height, width) < LPIPS_MIN_SIZE:
            raise ValueError(
                f"{self.name}: AlexNet needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, got {height}x{width} "
                "(resize e.g. 28x28 images to 32x32, as the LMD paper does)"
            )
        device = reference.device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        with torch.no_grad():
            pairs = torch.cat([reference, candidate]).to(torch.float32).expand(-1, 3, -1, -1)
            if self.input_size is not None:
                pairs = F.interpolate(pairs, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
            map_size = pairs.shape[-2:]
            layer_outputs = self.model.net(self.model.scaling_layer(pairs))
            values = torch.zeros(count, device=device)
            maps = torch.zeros(count, 1, *map_size, device=device)
            for features, linear in zip(layer_outputs, self.model.lins):
                unit_features = lpips.normalize_tensor(features)
                layer_map = linear((unit_features[:count] - unit_features[count:]).square())
                values = values + layer_map.mean(dim=(1, 2, 3))
                maps = maps + F.interpolate(layer_map, size=map_size, mode="bilinear", align_corners=False)
            if self.input_size is not None:
                maps = F.adaptive_avg_pool2d(maps, (height, width))
        return _result(values, maps[:, 0], device)

    def __repr__(self) -> str:
        backbone = getattr(self.model, "napari_klip_backbone", "unknown")
        return f"LpipsDistance(name={self.name!r}, backbone={backbone!r}, input_size={self.input_size})"


# --- prior features -------------------------------------------------------------------------


class _FeaturesCollected(Exception):
    """Raised by the last feature hook to skip the UNet's decoder."""


def prior_encoder_features(prior: "DiffusionPrior", noisy: torch.Tensor, timestep: int) -> list[torch.Tensor]:
    """Encoder features of the prior's UNet: one map per down block (before its downsampling) and the mid block.

    Only the encoder runs; the decoder is skipped.

    Parameters
    ----------
    prior : DiffusionPrior
        Its ``unet`` must be a diffusers ``UNet2DModel`` (``down_blocks``, ``mid_block``).
    noisy : torch.Tensor
        ``(B, C, H, W)`` noisy images on the prior's device.
    timestep : int
        Training-schedule timestep given to the network.

    Returns
    -------
    list of torch.Tensor
        ``(B, channels_l, H_l, W_l)`` from fine to coarse.
    """
    unet = prior.unet
    collected: list[torch.Tensor] = []
    hooked = list(unet.down_blocks) + ([unet.mid_block] if getattr(unet, "mid_block", None) is not None else [])

    def keep(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, tuple):  # a down block: (hidden states, states of each layer)
            output = output[1][len(module.resnets) - 1]
        collected.append(output)
        if module is hooked[-1]:
            raise _FeaturesCollected

    handles = [module.register_forward_hook(keep) for module in hooked]
    try:
        prior.predict_noise(noisy, timestep)
    except _FeaturesCollected:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return collected


class PriorFeatureDistance:
    """Cosine distance between the prior UNet's encoder features at a small noise level.

    Both images of a pair are diffused to ``timestep`` with the *same* noise (one seeded noise
    image shared by all pairs, so a pair's distance does not depend on the rest of the batch and
    identical images are at distance 0), the concatenated batch goes once through the UNet's
    encoder (:func:`prior_encoder_features`), features are normalised to unit length over
    channels, and ``1 - cosine similarity`` is taken at each position. The value is the mean
    over layers of each layer's spatial mean; the map is the mean over layers of the per-layer
    maps bilinearly upsampled to ``H × W`` (for the power-of-two grids of a UNet the map's mean
    equals the value).

    Parameters
    ----------
    prior : DiffusionPrior
        The images must have its channels and image size.
    timestep : int, optional
        Noise level, default :data:`PRIOR_FEATURE_TIMESTEP` (50) of a 1000-step schedule,
        scaled for other schedule lengths. With the linear DDPM schedule, t = 50 has
        ``sqrt(1 - alpha_bar) ≈ 0.17`` (signal-to-noise ≈ 32): the image dominates the input,
        while the network sees inputs of the kind it was trained on (it never saw noise-free
        images, and at t ≈ 0 its features look for pixel-level noise).
    seed : int
        Seed of the shared noise image.
    """

    name = "prior-features"

    def __init__(self, prior: "DiffusionPrior", timestep: int | None = None, seed: int = 0):
        total = prior.num_train_timesteps
        if timestep is None:
            timestep = round(PRIOR_FEATURE_TIMESTEP * total / 1000)
        if isinstance(timestep, bool) or not isinstance(timestep, (int, np.integer)) or not 0 <= timestep < total:
            raise ValueError(f"prior-features: timestep must be an integer in 0..{total - 1}, got {timestep!r}")
        self.prior = prior
        self.timestep = int(timestep)
        self.seed = int(seed)

    def _shared_noise(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn((1, *shape), generator=generator).to(device=device, dtype=dtype)

    def __call__(self, reference: torch.Tensor, candidate: torch.Tensor) -> DistanceResult:
        check_image_pair(reference, candidate, self.name)
        count, channels, height, width = reference.shape
        expected = (self.prior.channels, *self.prior.image_size)
        if (channels, height, width) != expected:
            raise ValueError(
                f"{self.name}: the prior takes images of {expected[0]} channel(s) at {expected[1]}x{expected[2]}, "
                f"got {channels} at {height}x{width}"
            )
        device = self.prior.device
        dtype = next(self.prior.unet.parameters()).dtype
        alpha_bar = float(self.prior.scheduler.alphas_cumprod[self.timestep])
        with torch.no_grad():
            pairs = torch.cat([reference, candidate]).to(device=device, dtype=dtype)
            noise = self._shared_noise(pairs.shape[1:], device, dtype)
            noisy = alpha_bar**0.5 * pairs + (1.0 - alpha_bar) ** 0.5 * noise
            layer_features = prior_encoder_features(self.prior, noisy, self.timestep)
            values = torch.zeros(count, device=device, dtype=torch.float32)
            maps = torch.zeros(count, height, width, device=device, dtype=torch.float32)
            for features in layer_features:
                unit_features = F.normalize(features.float(), dim=1, eps=1e-10)
                # 1 - cos between unit vectors, written so identical features give exactly 0
                layer_map = 0.5 * (unit_features[:count] - unit_features[count:]).square().sum(dim=1, keepdim=True)
                values = values + layer_map.mean(dim=(1, 2, 3))
                maps = maps + F.interpolate(layer_map, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        layers = len(layer_features)
        return _result(values / layers, maps / layers, reference.device)

    def __repr__(self) -> str:
        return f"PriorFeatureDistance(timestep={self.timestep}, seed={self.seed}, prior={self.prior!r})"


# --- factory --------------------------------------------------------------------------------


def make_distance(
    name: str,
    *,
    prior: "DiffusionPrior | None" = None,
    lpips_weights: str | Path | None = None,
    device: "str | torch.device" = "cpu",
    random_lpips_backbone: bool = False,
) -> ImageDistance:
    """Build a distance by name.

    Parameters
    ----------
    name : {"lpips", "mse", "ssim", "prior-features"}
        See :data:`DISTANCES`.
    prior : DiffusionPrior, optional
        Required for ``"prior-features"``.
    lpips_weights : str or Path, optional
        AlexNet weights for ``"lpips"`` (see :func:`find_alexnet_weights`); checked here, so a
        missing file fails before any sampling.
    device : str or torch.device
        Where LPIPS's network is put first (it follows the inputs' device later).
    random_lpips_backbone : bool
        LPIPS with a random backbone, named ``"lpips-random-backbone"``; for tests only.

    Returns
    -------
    ImageDistance

    Raises
    ------
    ValueError
        For an unknown name, or ``"prior-features"`` without a prior.
    LpipsWeightsError
        For ``"lpips"`` without usable AlexNet weights.
    """
    if name == "lpips":
        return LpipsDistance(load_lpips(lpips_weights, device=device, random_backbone=random_lpips_backbone))
    if name == "mse":
        return MseDistance()
    if name == "ssim":
        return SsimDistance()
    if name == "prior-features":
        if prior is None:
            raise ValueError("the 'prior-features' distance needs a prior (make_distance(..., prior=...))")
        return PriorFeatureDistance(prior)
    raise ValueError(f"unknown distance {name!r}; expected one of {', '.join(DISTANCES)}")
