"""What every LMD image distance shares: the result type, the protocol and the input checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch


if TYPE_CHECKING:  # pragma: no cover

    pass


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
