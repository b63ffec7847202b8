"""KLIP's guidance steps, one function each: the direction ``x`` moves towards the measurement.

Every function gets the current state ``x`` and the reverse step, predicts the noise ``ε`` and
Tweedie's estimate ``x̂0`` with the residual ``r = y − A(x̂0)``, and returns ``(Δ, ε, x̂0)``: the
guidance update ``Δ`` that is added to ``x`` (its energy ``|Δ|² / β`` is KLIP's trace), and the
``ε`` and ``x̂0`` the ancestral step and the reconstruction use.

The state holds ``N`` images × ``S = config.num_samples`` posterior samples as ``(N·S, C, H, W)``
rows, image-major, and the measurement one row per state row (image ``n``'s measurement repeated
``S`` times): one network call serves every image. Everything but the step size acts row by row;
the step size ``ζ0 / ‖r‖`` averages ``‖r‖`` over each image's own ``S`` samples, so an image's
update does not depend on the other images in the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..diffusion import ReverseStep, clean_estimate

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..operators import Operator
    from ..options import KlipConfig
    from ..prior import DiffusionPrior


def _residual(prior: "DiffusionPrior", operator: "Operator", measurement: "torch.Tensor", state: "torch.Tensor",
              step: ReverseStep) -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """``(ε, x̂0, r)``: the predicted noise, Tweedie's estimate and the residual ``r = y − A(x̂0)``."""
    noise = prior.predict_noise(state, step.timestep)
    clean = clean_estimate(state, noise, step.alpha_bar)
    return noise, clean, measurement - operator(clean)


def _size_rule(config: "KlipConfig", residual: "torch.Tensor") -> "torch.Tensor":
    """``ζ = ζ0 / ‖r‖`` per row, ``‖r‖`` averaged over the ``S`` samples of the row's image."""
    samples = config.num_samples
    norms = residual.flatten(1).norm(dim=1).reshape(-1, samples).mean(dim=1).clamp_min(1e-12)
    return (config.zeta / norms).repeat_interleave(samples).reshape(-1, *([1] * (residual.ndim - 1)))


def jacobian_free(prior: "DiffusionPrior", operator: "Operator", measurement: "torch.Tensor", state: "torch.Tensor",
                  step: ReverseStep, config: "KlipConfig") -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """The KLIP reference's DDPM sampler: ``Δ = ζ0 / ‖r‖ · Aᵀ r / σ_y² / √ᾱ_t`` (one network call)."""
    import torch

    with torch.no_grad():
        noise, clean, residual = _residual(prior, operator, measurement, state, step)
        ascent = operator.adjoint(residual) * ((1.0 / config.sigma_y**2) / step.alpha_bar.sqrt())
        return _size_rule(config, residual) * ascent, noise, clean


def dps(prior: "DiffusionPrior", operator: "Operator", measurement: "torch.Tensor", state: "torch.Tensor",
        step: ReverseStep, config: "KlipConfig") -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """Diffusion posterior sampling: ``Δ = ζ0 / ‖r‖ · (−∇_x ‖r‖² / (2σ_y²))``, back-propagated through the network."""
    import torch

    state = state.detach().requires_grad_(True)
    with torch.enable_grad():
        noise, clean, residual = _residual(prior, operator, measurement, state, step)
        (gradient,) = torch.autograd.grad(0.5 * (1.0 / config.sigma_y**2) * residual.pow(2).sum(), state)
    with torch.no_grad():
        return _size_rule(config, residual.detach()) * -gradient, noise.detach(), clean.detach()


def consistency(prior: "DiffusionPrior", operator: "Operator", measurement: "torch.Tensor", state: "torch.Tensor",
                step: ReverseStep, config: "KlipConfig") -> "tuple[torch.Tensor, torch.Tensor, torch.Tensor]":
    """A measurement-consistency step ``Δ = λ · √ᾱ_t · B r``: ``x̂0`` moves by ``λ B r`` (``B``: approximate inverse)."""
    import torch

    with torch.no_grad():
        noise, clean, residual = _residual(prior, operator, measurement, state, step)
        return (config.consistency_weight * step.alpha_bar.sqrt()) * operator.approximate_inverse(residual), noise, clean


#: The guidance step of each mode in :data:`napari_klip.core.options.GUIDANCE_MODES`.
GUIDANCE_STEPS: dict[str, Callable[..., Any]] = {"jacobian-free": jacobian_free, "dps": dps, "consistency": consistency}
