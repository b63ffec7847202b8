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

Training can also choose *which* timesteps it sees. ``edm`` draws the noise level of each image
as EDM does (Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models",
NeurIPS 2022): ``ln σ ~ N(-1.2, 1.2²)`` with ``σ = √((1−ᾱ)/ᾱ)``, rounded to the schedule's
nearest timestep, so most of the training lands at low and middle noise. With v-prediction and
uniform weighting this is EDM's preconditioning and loss weighting at ``σ_data = 1``: there the
EDM network output ``F = (x0 − c_skip x_σ) / c_out`` equals ``−v``, its input ``c_in x_σ`` equals
``x_t``, and its weight ``λ(σ) c_out²`` equals 1. (EDM's own ``σ_data = 0.5`` would feed the
network a rescaled ``x_t``, which a diffusers ``DDPMPipeline`` does not do, so the folder would no
longer be one.)

Importing this module does not import torch; the functions take and return torch tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .options import EDM_LOG_SIGMA_MEAN, EDM_LOG_SIGMA_STD, LOSS_WEIGHTINGS, PREDICTION_TYPES, TIMESTEP_SAMPLINGS, check_choice

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


def sample_timesteps(count: int, alphas_cumprod: "torch.Tensor", sampling: str, generator: "torch.Generator") -> "torch.Tensor":
    """Draw ``count`` training timesteps (int64, on the generator's device).

    Parameters
    ----------
    count : int
        How many (one per image of the batch).
    alphas_cumprod : torch.Tensor
        The schedule's ``ᾱ_t``, decreasing in ``t``, on the generator's device.
    sampling : {"uniform", "edm"}
        Uniform over ``0 … T−1`` (DDPM; the same draws as ``torch.randint`` with this generator),
        or EDM's log-normal noise level rounded to the timestep whose ``ln σ_t`` is nearest
        (module docstring); draws beyond the schedule's ends land on its first or last step.
    generator : torch.Generator
        The source of randomness.

    Raises
    ------
    ValueError
        For an unknown ``sampling``.
    """
    import torch

    check_choice("timestep_sampling", sampling, TIMESTEP_SAMPLINGS)
    device = alphas_cumprod.device
    steps = alphas_cumprod.shape[0]
    if sampling == "uniform":
        return torch.randint(0, steps, (count,), device=device, generator=generator)
    log_sigma = EDM_LOG_SIGMA_MEAN + EDM_LOG_SIGMA_STD * torch.randn(count, device=device, generator=generator, dtype=torch.float64)
    alpha_bar = alphas_cumprod.to(torch.float64)
    schedule = 0.5 * torch.log((1.0 - alpha_bar) / alpha_bar)  # increasing in t
    above = torch.searchsorted(schedule, log_sigma).clamp(1, steps - 1)
    below = above - 1
    nearer_below = (log_sigma - schedule[below]) < (schedule[above] - log_sigma)
    return torch.where(nearer_below, below, above)
