"""The common interface of all forward operators."""

from __future__ import annotations

from typing import Any

import torch


from ..errors import ShapeMismatchError


def check_batch(tensor: Any, what: str, expected_hw: tuple[int, int] | None, operator: str) -> torch.Tensor:
    """Check that ``tensor`` is a floating ``(B, C, H, W)`` torch tensor of the expected size.

    Parameters
    ----------
    tensor : object
        The value to check.
    what : str
        ``"image"`` or ``"measurement"``, used in the error message.
    expected_hw : tuple of int or None
        The trailing two sizes the operator needs, or ``None`` for any size.
    operator : str
        The operator's name, used in the error message.

    Returns
    -------
    torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    TypeError
        If ``tensor`` is not a floating-point torch tensor.
    ShapeMismatchError
        If it is not 4-D or its trailing sizes differ from ``expected_hw``.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{operator}: the {what} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{operator}: the {what} must be a floating-point tensor, got dtype {tensor.dtype}")
    expected = "(B, C, " + (", ".join(map(str, expected_hw)) if expected_hw else "H, W") + ")"
    if tensor.ndim != 4:
        raise ShapeMismatchError(
            f"{operator}: expected a 4-D {what} batch shaped {expected}, got shape {tuple(tensor.shape)}"
        )
    if expected_hw is not None and tuple(tensor.shape[-2:]) != tuple(expected_hw):
        raise ShapeMismatchError(
            f"{operator}: expected a {what} batch shaped {expected}, got shape {tuple(tensor.shape)}"
        )
    return tensor


class Operator(torch.nn.Module):
    """A linear forward model ``A`` of an imaging inverse problem.

    Images are batches shaped ``(B, C, H, W)``; measurements are batches shaped
    ``(B, C, *measurement_shape)``. Every operator is linear, differentiable (autograd flows
    through :meth:`forward` and :meth:`adjoint`), and works on any device its buffers are moved
    to with ``.to(device)``.
    """

    #: registry name, used by :func:`make_operator`, the CLI and result metadata
    name: str = "operator"

    def image_size(self) -> tuple[int, int] | None:
        """The ``(H, W)`` the operator needs, or ``None`` if it accepts any size."""
        return None

    def measurement_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The trailing measurement sizes for images of size ``image_size``."""
        return tuple(image_size)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters that rebuild this operator with :func:`make_operator`."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The operator's name and parameters, for result files."""
        return {"name": self.name, **self.params()}

    # --- the linear map ---------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:  # noqa: D102 - documented in apply
        check_batch(image, "image", self.image_size(), self.name)
        return self._forward(image)

    def adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        """Apply the adjoint ``Aᵀ`` to a measurement batch.

        Parameters
        ----------
        measurement : torch.Tensor
            Shaped ``(B, C, *measurement_shape)``.

        Returns
        -------
        torch.Tensor
            An image batch shaped ``(B, C, H, W)``.
        """
        return self._adjoint(self._checked_measurement(measurement))

    def approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        """Apply a linear approximate inverse ``B`` (``B A x ≈ x`` on what ``A`` measures).

        The exact pseudo-inverse for denoising, inpainting and downsampling, filtered
        back-projection for sparse-view CT; blur has none (:meth:`has_approximate_inverse`).
        KLIP's ``consistency`` guidance steps along ``B(y − A x̂0)``.

        Parameters
        ----------
        measurement : torch.Tensor
            Shaped ``(B, C, *measurement_shape)``.

        Returns
        -------
        torch.Tensor
            An image batch shaped ``(B, C, H, W)``.

        Raises
        ------
        NotImplementedError
            For operators without one.
        """
        if not self.has_approximate_inverse():
            raise NotImplementedError(f"{self.name}: this operator has no approximate inverse")
        return self._approximate_inverse(self._checked_measurement(measurement))

    def _checked_measurement(self, measurement: torch.Tensor) -> torch.Tensor:
        """``measurement`` itself, after checking it fits the operator's image size (if it has one)."""
        expected = None if self.image_size() is None else self.measurement_size(self.image_size())
        return check_batch(measurement, "measurement", expected, self.name)

    def has_approximate_inverse(self) -> bool:
        """Whether :meth:`approximate_inverse` is available for this operator."""
        return type(self)._approximate_inverse is not Operator._approximate_inverse

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, measurement: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _approximate_inverse(self, measurement: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- measurements -----------------------------------------------------------------------
    def check_measurement(self, measurement: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Check that a given (e.g. measured) batch fits images of ``image_size``.

        Raises
        ------
        ShapeMismatchError
            With the expected shape in the message.
        """
        return check_batch(measurement, "measurement", self.measurement_size(tuple(image_size)), self.name)

    def simulate(self, image: torch.Tensor, noise_sigma: float = 0.0, seed: int | None = 0) -> torch.Tensor:
        """Simulate a noisy measurement ``y = A(x) + noise_sigma * n`` with ``n ~ N(0, I)``.

        Parameters
        ----------
        image : torch.Tensor
            Image batch ``(B, C, H, W)``; it must be finite.
        noise_sigma : float
            Standard deviation of the additive Gaussian noise, in measurement units.
        seed : int or None
            Seed of the noise. The noise is drawn on the CPU, so the same seed gives the same
            measurement on every device. ``None`` draws fresh noise.

        Returns
        -------
        torch.Tensor
            The measurement batch; the input is not modified.

        Raises
        ------
        ValueError
            If the image holds NaN or infinity, or ``noise_sigma`` is negative or not finite.
        """
        if not (noise_sigma >= 0 and noise_sigma < float("inf")):
            raise ValueError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
        check_batch(image, "image", self.image_size(), self.name)
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"{self.name}: the image holds NaN or infinite values")
        measurement = self.forward(image)
        if noise_sigma > 0:
            generator = torch.Generator(device="cpu")
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
            noise = torch.randn(measurement.shape, generator=generator, dtype=measurement.dtype)
            measurement = measurement + noise_sigma * noise.to(measurement.device)
        return measurement

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.params().items())
