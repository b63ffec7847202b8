"""What the network predicts, and how training weighs the timesteps.

A diffusion network may be trained to predict the noise ``ε`` (DDPM), the velocity
``v = √ᾱ ε − √(1−ᾱ) x0`` (Salimans & Ho, 2022) or the clean image ``x0`` — diffusers'
``prediction_type`` ``epsilon``, ``v_prediction`` and ``sample``, stored in the prior's scheduler
config. Every sampler of napari-klip works with ``ε``: :func:`noise_from_output` turns any of the
three into it (``DiffusionPrior.predict_noise`` calls it), so KLIP, LMD and sampling run a
v- or x0-prior unchanged.

Training can weight the per-image loss by timestep. ``min-snr`` is the Min-SNR-γ weighting of
Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy" (ICCV 2023): every
parameterization's loss is a multiple of the clean-image error ``‖x̂0 − x0‖²`` (``SNR`` times it
for ε, ``SNR + 1`` times for v, once for x0, with ``SNR = ᾱ / (1 − ᾱ)``), and the weight makes
that multiple ``min(SNR, γ)``, so the nearly clean timesteps — whose ε-loss dominates the
gradient conflict the paper describes — no longer outweigh the noisy ones.

Importing this module does not import torch; the functions take and return torch tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .options import LOSS_WEIGHTINGS, PREDICTION_TYPES, check_choice

if TYPE_CHECKING:  # pragma: no cover
    import torch


def noise_from_output(output: "torch.Tensor", noisy: "torch.Tensor", alpha_bar: "torch.Tensor", prediction_type: str) -> "torch.Tensor":
    """The noise ``ε`` a network output stands for.

    Parameters
    ----------
    output : torch.Tensor
        The network's output for ``noisy``.
    noisy : torch.Tensor
        The network's input ``x_t = √ᾱ x0 + √(1−ᾱ) ε``.
    alpha_bar : torch.Tensor
        ``ᾱ_t``, broadcastable to ``noisy`` (one value per row).
    prediction_type : {"epsilon", "v_prediction", "sample"}
        What the network was trained to predict.

    Returns
    -------
    torch.Tensor
        ``ε``: the output itself, ``√ᾱ v + √(1−ᾱ) x_t``, or ``(x_t − √ᾱ x0) / √(1−ᾱ)``.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return output
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * output + (1.0 - alpha_bar).sqrt() * noisy
    return (noisy - alpha_bar.sqrt() * output) / (1.0 - alpha_bar).sqrt()


def training_target(clean: "torch.Tensor", noise: "torch.Tensor", alpha_bar: "torch.Tensor", prediction_type: str) -> "torch.Tensor":
    """What the network should output for ``x_t`` made of ``clean`` and ``noise``: ``ε``, ``v`` or ``x0``."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * noise - (1.0 - alpha_bar).sqrt() * clean
    return clean


def loss_weights(alpha_bar: "torch.Tensor", prediction_type: str, weighting: str, gamma: float) -> "torch.Tensor":
    """Per-row weights of the training loss (``alpha_bar`` has one ``ᾱ_t`` per row).

    ``uniform`` weighs every row 1; ``min-snr`` makes each row's loss ``min(SNR, γ)`` times its
    clean-image error (module docstring): ``min(SNR, γ) / SNR`` for ε, ``min(SNR, γ) / (SNR + 1)``
    for v and ``min(SNR, γ)`` for x0.

    Raises
    ------
    ValueError
        For an unknown prediction type or weighting, or ``gamma <= 0``.
    """
    import torch

    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_choice("loss_weighting", weighting, LOSS_WEIGHTINGS)
    if weighting == "uniform":
        return torch.ones_like(alpha_bar)
    if not gamma > 0:
        raise ValueError(f"min_snr_gamma must be > 0, got {gamma!r}")
    snr = alpha_bar / (1.0 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped
