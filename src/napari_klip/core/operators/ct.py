"""2-D parallel-beam computed tomography with few projection angles (sparse-view CT)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import Operator, ShapeMismatchError


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 2:
        raise ValueError(f"image_size must be an int or (H, W) with sides >= 2, got {size!r}")
    return size


class SparseViewCT(Operator):
    """Parallel-beam Radon transform over a set of projection angles.

    Convention (identical to ``skimage.transform.radon(image, theta, circle=False)``, with the
    axes of the sinogram swapped):

    * the image is rotated about pixel ``(H // 2, W // 2)`` by each angle (degrees,
      counter-clockwise as displayed), interpolated bilinearly with zeros outside the image,
      and summed along the columns: line integrals with a pixel side as unit length;
    * there are ``n_detectors = ceil(sqrt(2) * max(H, W))`` detector bins of one pixel each,
      covering the image diagonal, with the rotation centre on bin ``n_detectors // 2``;
    * a measurement batch is shaped ``(B, C, n_views, n_detectors)`` — one row per angle.

    The adjoint (back-projection) is computed by automatic differentiation of the forward
    map, so ``<A x, y> == <x, Aᵀ y>`` holds to float rounding. The approximate inverse is
    filtered back-projection: ramp filter along the detector axis, then ``π / (2 n_views) · Aᵀ``
    (it agrees with ``skimage.transform.iradon(..., filter_name="ramp", circle=False)`` up to
    the interpolation of the back-projection).

    Parameters
    ----------
    image_size : int or (int, int)
        Size ``(H, W)`` of the images.
    n_views : int
        Number of equally spaced angles over ``[0°, 180°)``; ignored when ``angles`` is given.
    angles : array-like of float, optional
        Projection angles in degrees, e.g. those of a measured sinogram.
    n_detectors : int, optional
        Detector bins of a measured sinogram (one pixel wide, centred on bin
        ``n_detectors // 2``); defaults to the bins covering the image diagonal.
    max_samples_per_chunk : int
        Bound on the interpolation samples evaluated at once (memory control on large problems).
    """

    name = "ct"

    def __init__(
        self,
        image_size: int | tuple[int, int],
        n_views: int = 24,
        angles: Any = None,
        n_detectors: int | None = None,
        max_samples_per_chunk: int = 2**26,
    ):
        super().__init__()
        self._image_size = _pair(image_size)
        if angles is None:
            if not isinstance(n_views, (int, np.integer)) or n_views < 1:
                raise ValueError(f"n_views must be a positive integer, got {n_views!r}")
            angles = np.linspace(0.0, 180.0, int(n_views), endpoint=False)
        angles = np.asarray(angles, dtype=np.float64)
        if angles.ndim != 1 or angles.size == 0:
            raise ValueError(f"angles must be a non-empty 1-D sequence of degrees, got shape {angles.shape}")
        if not np.all(np.isfinite(angles)):
            raise ValueError("angles must be finite numbers (degrees)")
        height, width = self._image_size
        diagonal_bins = math.ceil(math.sqrt(2.0) * max(height, width))
        if n_detectors is None:
            n_detectors = diagonal_bins
        if not isinstance(n_detectors, (int, np.integer)) or n_detectors < 1:
            raise ValueError(f"n_detectors must be a positive integer, got {n_detectors!r}")
        self.n_detectors = int(n_detectors)
        self.angles_deg = angles
        self.max_samples_per_chunk = int(max_samples_per_chunk)
        self.register_buffer("grid", self._sampling_grid(angles, diagonal_bins), persistent=False)

    @property
    def n_views(self) -> int:
        """Number of projection angles."""
        return int(self.angles_deg.size)

    def image_size(self) -> tuple[int, int]:
        return self._image_size

    def measurement_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        if tuple(image_size) != self._image_size:
            raise ShapeMismatchError(f"ct: operator built for images {self._image_size}, got {tuple(image_size)}")
        return (self.n_views, self.n_detectors)

    def params(self) -> dict[str, Any]:
        return {
            "image_size": list(self._image_size),
            "angles": [float(a) for a in self.angles_deg],
            "n_detectors": self.n_detectors,
        }

    def _sampling_grid(self, angles: np.ndarray, ray_samples: int) -> torch.Tensor:
        """Normalised ``grid_sample`` coordinates shaped ``(n_views * n_detectors, ray_samples, 2)``."""
        height, width = self._image_size
        theta = torch.as_tensor(np.deg2rad(angles), dtype=torch.float64)[:, None, None]
        cos_a, sin_a = torch.cos(theta), torch.sin(theta)
        detector = (torch.arange(self.n_detectors, dtype=torch.float64) - self.n_detectors // 2)[None, :, None]
        along_ray = (torch.arange(ray_samples, dtype=torch.float64) - ray_samples // 2)[None, None, :]
        column = width // 2 + cos_a * detector + sin_a * along_ray
        row = height // 2 - sin_a * detector + cos_a * along_ray
        grid = torch.stack((2 * column / (width - 1) - 1, 2 * row / (height - 1) - 1), dim=-1)
        return grid.reshape(-1, ray_samples, 2)

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        batch, channels = image.shape[:2]
        grid = self.grid.to(device=image.device, dtype=image.dtype)
        rows_total, ray_samples = grid.shape[:2]
        per_row = batch * channels * ray_samples
        rows_per_chunk = max(1, self.max_samples_per_chunk // per_row)
        pieces = []
        for start in range(0, rows_total, rows_per_chunk):
            chunk = grid[start : start + rows_per_chunk].unsqueeze(0).expand(batch, -1, -1, -1)
            sampled = F.grid_sample(image, chunk, mode="bilinear", padding_mode="zeros", align_corners=True)
            pieces.append(sampled.sum(dim=-1))
        line_integrals = torch.cat(pieces, dim=-1) if len(pieces) > 1 else pieces[0]
        return line_integrals.reshape(batch, channels, self.n_views, self.n_detectors)

    def _approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        filtered = ramp_filter_rows(measurement)
        return self._adjoint(filtered) * (math.pi / (2 * self.n_views))

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        batch, channels = measurement.shape[:2]
        zeros = torch.zeros(
            (batch, channels, *self._image_size), dtype=measurement.dtype, device=measurement.device, requires_grad=True
        )
        with torch.enable_grad():
            projected = self._forward(zeros)
            (backprojection,) = torch.autograd.grad(
                projected, zeros, grad_outputs=measurement, create_graph=measurement.requires_grad
            )
        return backprojection


def ramp_response(n_detectors: int) -> tuple[torch.Tensor, int]:
    """Frequency response of the discrete ramp (Ram-Lak) filter for ``n_detectors`` bins.

    Built from the band-limited ramp's impulse response (Kak & Slaney, *Principles of
    Computerized Tomographic Imaging*, eq. 3.61: ``h[0] = 1/4``, ``h[n] = −1/(π n)²`` for odd
    ``n``, 0 for even ``n``) on a zero-padded length (a power of two ≥ ``2 · n_detectors``, at
    least 64) so that the circular convolution does not wrap around.

    Returns
    -------
    tuple of (torch.Tensor, int)
        The real response (float64, length = padded size) and the padded size.
    """
    padded = max(64, 1 << math.ceil(math.log2(2 * n_detectors)))
    offsets = torch.arange(padded, dtype=torch.float64)
    offsets = torch.minimum(offsets, padded - offsets)  # circular distance to bin 0
    impulse = torch.zeros(padded, dtype=torch.float64)
    impulse[0] = 0.25
    odd = offsets % 2 == 1
    impulse[odd] = -1.0 / (math.pi * offsets[odd]) ** 2
    return 2.0 * torch.fft.fft(impulse).real, padded


def ramp_filter_rows(sinogram: torch.Tensor) -> torch.Tensor:
    """Ramp-filter every projection (last axis = detector bins) of a sinogram batch."""
    n_detectors = sinogram.shape[-1]
    response, padded = ramp_response(n_detectors)
    spectrum = torch.fft.fft(F.pad(sinogram, (0, padded - n_detectors)), dim=-1)
    response = response.to(device=sinogram.device, dtype=sinogram.dtype)
    return torch.fft.ifft(spectrum * response, dim=-1).real[..., :n_detectors].to(sinogram.dtype)
