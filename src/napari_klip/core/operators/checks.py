"""Checks anyone can run on a forward operator, including their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def adjointness_error(
    forward: Callable[[torch.Tensor], torch.Tensor],
    image_shape: tuple[int, ...],
    adjoint: Callable[[torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
) -> float:
    """Relative gap ``|⟨A x, y⟩ − ⟨x, Aᵀ y⟩| / |⟨A x, y⟩|`` for random ``x`` and ``y``.

    An exact adjoint gives rounding error only (about 1e-15 in float64); KLIP's
    ``jacobian-free`` guidance steps along ``Aᵀ r``, so a wrong adjoint silently misguides it.

    Parameters
    ----------
    forward : Operator or callable
        ``A``: maps an image batch to a measurement batch. An :class:`Operator` brings its own
        :meth:`~Operator.adjoint`.
    image_shape : tuple of int
        Shape of the random image batch ``x``, e.g. ``(2, 1, 64, 64)``.
    adjoint : callable, optional
        ``Aᵀ``; by default ``forward.adjoint``.
    seed : int
        Seed of ``x`` and then ``y`` (standard normal, drawn on the CPU).
    dtype : torch.dtype
        Of ``x`` and ``y``.
    device : str or torch.device
        Where ``forward`` and ``adjoint`` run.

    Returns
    -------
    float
    """
    adjoint = adjoint if adjoint is not None else forward.adjoint
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        image = torch.randn(tuple(image_shape), generator=generator, dtype=dtype).to(device)
        measured = forward(image)
        measurement = torch.randn(tuple(measured.shape), generator=generator, dtype=dtype).to(device)
        lhs = float(torch.sum(measured * measurement))
        rhs = float(torch.sum(image * adjoint(measurement)))
    return abs(lhs - rhs) / abs(lhs)
