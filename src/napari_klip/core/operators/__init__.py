"""Forward operators ``A`` of imaging inverse problems, with adjoints and noisy simulation.

All operators map image batches ``(B, C, H, W)`` (torch, any device) to measurement batches,
are linear and differentiable, and check the shapes they are given.

=================  =============================  ==========================================
registry name      class                          measurement
=================  =============================  ==========================================
``denoise``        :class:`Identity`              the image
``blur``           :class:`GaussianBlur`          the image convolved with a Gaussian
``inpaint``        :class:`Inpainting`            the image with unknown pixels set to zero
``downsample``     :class:`Downsample`            block averages, ``(H/f, W/f)``
``ct``             :class:`SparseViewCT`          a sinogram ``(n_views, n_detectors)``
=================  =============================  ==========================================
"""

from __future__ import annotations

from typing import Any

from .base import Operator, ShapeMismatchError, check_batch
from .checks import adjointness_error
from .ct import SparseViewCT
from .image_domain import Downsample, GaussianBlur, Identity, Inpainting, gaussian_kernel

OPERATORS: dict[str, type[Operator]] = {
    cls.name: cls for cls in (Identity, GaussianBlur, Inpainting, Downsample, SparseViewCT)
}


def make_operator(name: str, **params: Any) -> Operator:
    """Build an operator from its registry name and parameters.

    Parameters
    ----------
    name : {"denoise", "blur", "inpaint", "downsample", "ct"}
        Registry name.
    **params
        Keyword arguments of the operator's class.

    Returns
    -------
    Operator

    Raises
    ------
    ValueError
        For an unknown name or parameters the class does not take.
    """
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")
    try:
        return OPERATORS[name](**params)
    except TypeError as error:
        raise ValueError(f"operator {name!r} does not take parameters {sorted(params)}: {error}") from error


def build_operator(operator: "Operator | str", image_size: tuple[int, int], params: dict[str, Any] | None = None) -> Operator:
    """An operator instance for images of ``image_size``: pass one through, or build it by name.

    ``"ct"`` gets ``image_size`` filled in; ``"inpaint"`` needs ``params["mask"]``.
    """
    if isinstance(operator, Operator):
        return operator
    params = dict(params or {})
    if operator == "ct":
        params.setdefault("image_size", image_size)
    if operator == "inpaint" and "mask" not in params:
        raise ValueError("the inpaint operator needs a mask of known pixels: operator_params={'mask': array}")
    return make_operator(operator, **params)


__all__ = [
    "OPERATORS",
    "Downsample",
    "GaussianBlur",
    "Identity",
    "Inpainting",
    "Operator",
    "ShapeMismatchError",
    "SparseViewCT",
    "adjointness_error",
    "build_operator",
    "check_batch",
    "gaussian_kernel",
    "make_operator",
]
