"""LPIPS (AlexNet) for LMD, with the ImageNet backbone read from a local file — never downloaded.

The calibrated linear layers ship with the ``lpips`` package; the AlexNet backbone comes from a
file the user provides (our ``.npz`` of the ``features.*`` tensors, or torchvision's checkpoint)
or, by default, the float16 copy shipped in napari-klip — found by :func:`find_alexnet_weights`.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import LpipsWeightsError, LpipsWeightsFormatError

if TYPE_CHECKING:  # pragma: no cover
    import lpips


from ._distance_base import DistanceResult, _result, check_image_pair

#: Environment variable naming an AlexNet weights file for LPIPS.
ALEXNET_WEIGHTS_ENV = "NAPARI_KLIP_ALEXNET_WEIGHTS"
#: File name of torchvision's ImageNet AlexNet checkpoint (what ``lpips`` would download).
TORCHVISION_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
TORCHVISION_ALEXNET_URL = f"https://download.pytorch.org/models/{TORCHVISION_ALEXNET_FILE}"
#: The ImageNet AlexNet conv layers shipped with napari-klip (float16; provenance and licences beside it).
PACKAGED_ALEXNET_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "weights" / "alexnet_features_imagenet_fp16.npz"
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
LPIPS_RANDOM_BACKBONE_NAME = "lpips-random-backbone"




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
    cache, ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``; the float16 copy shipped
    in the package (:data:`PACKAGED_ALEXNET_WEIGHTS`, see ``data/weights/PROVENANCE.md``), so LPIPS
    works offline on a fresh install.

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
    if PACKAGED_ALEXNET_WEIGHTS.is_file():
        return PACKAGED_ALEXNET_WEIGHTS
    raise LpipsWeightsError(
        "LPIPS needs ImageNet-trained AlexNet weights and none were found (no path given, "
        f"{ALEXNET_WEIGHTS_ENV} unset, '{cached}' absent, and the packaged '{PACKAGED_ALEXNET_WEIGHTS}' is missing — "
        f"reinstall napari-klip); napari-klip never downloads them. {_weights_hint()}"
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
