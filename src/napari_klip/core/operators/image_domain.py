"""Operators whose measurements live on a pixel grid: denoising, blur, inpainting, downsampling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import Operator, ShapeMismatchError


class Identity(Operator):
    """``A = I``: the measurement is the (noisy) image itself — plain denoising."""

    name = "denoise"

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.clone()

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        return measurement.clone()

    def _approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        return measurement.clone()


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel.

    Parameters
    ----------
    kernel_size : int
        Odd side length of the kernel in pixels.
    sigma : float
        Standard deviation in pixels, > 0.

    Returns
    -------
    torch.Tensor
        ``(kernel_size, kernel_size)`` float64 kernel summing to one.
    """
    if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    profile = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = torch.outer(profile, profile)
    return kernel / kernel.sum()


class GaussianBlur(Operator):
    """Convolution with a Gaussian kernel, zero outside the image ("same" output size).

    The image is taken to be zero outside its support, which makes the adjoint the
    correlation with the flipped kernel under the same padding (exactly).

    Parameters
    ----------
    kernel_size : int
        Odd side length of the kernel in pixels (the KLIP paper's deblurring used 21).
    sigma : float
        Standard deviation of the Gaussian in pixels (the paper used 9 at 256²).
    """

    name = "blur"

    def __init__(self, kernel_size: int = 9, sigma: float = 2.0):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self.register_buffer("kernel", gaussian_kernel(kernel_size, sigma).to(torch.float32), persistent=False)

    def params(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size, "sigma": self.sigma}

    def _convolve(self, batch: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        channels = batch.shape[1]
        weight = kernel.to(dtype=batch.dtype, device=batch.device).expand(channels, 1, -1, -1)
        return F.conv2d(batch, weight, padding=self.kernel_size // 2, groups=channels)

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        return self._convolve(image, self.kernel)

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        return self._convolve(measurement, torch.flip(self.kernel, dims=(0, 1)))


class Inpainting(Operator):
    """Keep the pixels where ``mask`` is true; the others are measured as zero.

    Parameters
    ----------
    mask : array-like or torch.Tensor
        Boolean or 0/1 array shaped ``(H, W)`` (shared by all channels) or ``(C, H, W)``;
        true marks a *known* pixel.
    """

    name = "inpaint"

    def __init__(self, mask: Any):
        super().__init__()
        mask_tensor = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask_tensor.ndim not in (2, 3):
            raise ShapeMismatchError(f"inpaint: mask must be (H, W) or (C, H, W), got shape {tuple(mask_tensor.shape)}")
        if mask_tensor.dtype != torch.bool:
            if not bool(((mask_tensor == 0) | (mask_tensor == 1)).all()):
                raise ValueError("inpaint: mask must be boolean or hold only 0 and 1")
            mask_tensor = mask_tensor != 0
        if mask_tensor.ndim == 2:
            mask_tensor = mask_tensor[None]
        self.register_buffer("mask", mask_tensor.clone(), persistent=False)

    def image_size(self) -> tuple[int, int]:
        return tuple(self.mask.shape[-2:])

    def params(self) -> dict[str, Any]:
        return {"known_fraction": float(self.mask.float().mean())}

    def _masked(self, batch: torch.Tensor) -> torch.Tensor:
        if self.mask.shape[0] not in (1, batch.shape[1]):
            raise ShapeMismatchError(
                f"inpaint: the mask has {self.mask.shape[0]} channels but the batch has {batch.shape[1]}"
            )
        return batch * self.mask.to(device=batch.device, dtype=batch.dtype)

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        return self._masked(image)

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        return self._masked(measurement)

    def _approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        return self._masked(measurement)  # A is an orthogonal projection: A⁺ = Aᵀ = A


class Downsample(Operator):
    """Average over non-overlapping ``factor × factor`` blocks (a box-filtered subsampling).

    Parameters
    ----------
    factor : int
        Integer downsampling factor >= 1; image sides must be divisible by it.
    """

    name = "downsample"

    def __init__(self, factor: int = 2):
        super().__init__()
        if not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        self.factor = int(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def measurement_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        self._check_divisible(image_size)
        return (image_size[0] // self.factor, image_size[1] // self.factor)

    def _check_divisible(self, image_size: tuple[int, int]) -> None:
        if image_size[0] % self.factor or image_size[1] % self.factor:
            raise ShapeMismatchError(
                f"downsample: image size {tuple(image_size)} is not divisible by factor {self.factor}"
            )

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        self._check_divisible(tuple(image.shape[-2:]))
        return F.avg_pool2d(image, self.factor)

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        return self._approximate_inverse(measurement) / (self.factor * self.factor)

    def _approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        # A Aᵀ = I / factor², so A⁺ = Aᵀ (A Aᵀ)⁻¹ = factor² Aᵀ: nearest-neighbour upsampling.
        return measurement.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)
