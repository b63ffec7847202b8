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

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F


if TYPE_CHECKING:  # pragma: no cover

    from ..prior import DiffusionPrior

from ..options import DISTANCE_NAMES
from ._distance_base import DistanceResult, ImageDistance, _result, _working_dtype, check_image_pair
from .lpips_distance import (
    ALEXNET_FEATURE_SHAPES,
    ALEXNET_WEIGHTS_ENV,
    LPIPS_MIN_SIZE,
    LPIPS_RANDOM_BACKBONE_NAME,
    TORCHVISION_ALEXNET_FILE,
    TORCHVISION_ALEXNET_URL,
    LpipsDistance,
    LpipsWeightsError,
    LpipsWeightsFormatError,
    find_alexnet_weights,
    load_lpips,
    read_alexnet_features,
)

__all__ = [
    "ALEXNET_FEATURE_SHAPES",
    "ALEXNET_WEIGHTS_ENV",
    "DISTANCES",
    "LPIPS_MIN_SIZE",
    "LPIPS_RANDOM_BACKBONE_NAME",
    "PRIOR_FEATURE_TIMESTEP",
    "TORCHVISION_ALEXNET_FILE",
    "TORCHVISION_ALEXNET_URL",
    "DistanceResult",
    "ImageDistance",
    "LpipsDistance",
    "LpipsWeightsError",
    "LpipsWeightsFormatError",
    "MseDistance",
    "PriorFeatureDistance",
    "SsimDistance",
    "check_image_pair",
    "find_alexnet_weights",
    "load_lpips",
    "make_distance",
    "prior_encoder_features",
    "read_alexnet_features",
    "ssim_maps",
]

#: Names accepted by :func:`make_distance`.
DISTANCES = DISTANCE_NAMES
#: Default timestep of the prior-features distance (of a 1000-step schedule; scaled for others).
PRIOR_FEATURE_TIMESTEP = 50


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
