"""How good is a prior? Held-out denoising loss per timestep band.

The training loss printed during training is measured on training batches at random
timesteps; it mixes easy and hard noise levels and says nothing about over-fitting. The number
that tells two priors apart is the denoising (ε-prediction) mean squared error on images the
prior never saw, per band of timesteps: low bands measure fine detail, high bands global
structure. Every image is noised at the same timesteps with the same noise for every prior
(everything derives from ``seed``), so two priors are compared on exactly the same task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .prior import DiffusionPrior

#: Default timestep bands (of a 1000-step schedule), from fine detail to global structure.
DEFAULT_BANDS: tuple[tuple[int, int], ...] = ((0, 100), (100, 300), (300, 600), (600, 1000))


@dataclass(frozen=True)
class BandLoss:
    """Held-out ε-prediction MSE of one timestep band.

    Attributes
    ----------
    band : tuple of int
        ``[start, stop)`` training-schedule timesteps.
    loss : float
        Mean squared error of the predicted noise, averaged over images, draws and pixels.
    standard_error : float
        Standard error of ``loss`` over the images.
    """

    band: tuple[int, int]
    loss: float
    standard_error: float


def heldout_denoising_loss(
    prior: DiffusionPrior,
    images: np.ndarray,
    *,
    bands: tuple[tuple[int, int], ...] = DEFAULT_BANDS,
    draws_per_band: int = 4,
    batch_size: int = 256,
    seed: int = 0,
) -> list[BandLoss]:
    """Denoising loss of ``prior`` on held-out ``images``, per timestep band.

    Parameters
    ----------
    prior : DiffusionPrior
        The prior to measure (runs on its device).
    images : numpy.ndarray
        ``(N, H, W)`` grey images in the prior's intensity units, on the prior's grid; never
        modified.
    bands : tuple of (int, int)
        Timestep bands ``[start, stop)`` within ``0 .. prior.num_train_timesteps``.
    draws_per_band : int
        Noise draws (each at a uniformly drawn timestep of the band) per image and band.
    batch_size : int
        Images per network call.
    seed : int
        Seed of the timesteps and the noise (drawn on the CPU).

    Returns
    -------
    list of BandLoss
        One per band, in the order given.

    Raises
    ------
    ValueError
        For images that are not ``(N, H, W)`` on the prior's grid, non-finite images, or bands
        outside the schedule.
    """
    import torch

    stack = np.asarray(images)
    if stack.ndim != 3 or stack.shape[1:] != tuple(prior.image_size) or prior.channels != 1:
        raise ValueError(
            f"expected grey images shaped (N, {prior.image_size[0]}, {prior.image_size[1]}) for this prior, got {stack.shape}"
        )
    if not np.all(np.isfinite(stack)):
        raise ValueError("the images hold NaN or infinite values")
    if draws_per_band < 1 or batch_size < 1:
        raise ValueError("draws_per_band and batch_size must be positive")
    total = prior.num_train_timesteps
    for start, stop in bands:
        if not 0 <= start < stop <= total:
            raise ValueError(f"band [{start}, {stop}) is outside the prior's 0..{total} timesteps")
    model = torch.from_numpy(prior.to_model_range(stack.astype(np.float32)))[:, None]
    alphas_cumprod = prior.scheduler.alphas_cumprod.float()
    generator = torch.Generator().manual_seed(seed)
    results = []
    for start, stop in bands:
        per_image = torch.zeros(model.shape[0], dtype=torch.float64)
        for _ in range(draws_per_band):
            timesteps = torch.randint(start, stop, (model.shape[0],), generator=generator)
            noise = torch.randn(model.shape, generator=generator)
            for first in range(0, model.shape[0], batch_size):
                part = slice(first, first + batch_size)
                alpha_bar = alphas_cumprod[timesteps[part]].view(-1, 1, 1, 1)
                noisy = alpha_bar.sqrt() * model[part] + (1 - alpha_bar).sqrt() * noise[part]
                with torch.no_grad():
                    predicted = prior.predict_noise(noisy.to(prior.device), timesteps[part].to(prior.device)).float().cpu()
                per_image[part] += (predicted - noise[part]).pow(2).flatten(1).mean(dim=1).double()
        per_image /= draws_per_band
        values = per_image.numpy()
        error = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
        results.append(BandLoss((int(start), int(stop)), float(values.mean()), error))
    return results


def broken_weights_problem(prior: DiffusionPrior) -> str | None:
    """Why ``prior`` cannot be used because its network holds NaN or infinite weights, or ``None``.

    A training whose loss became NaN leaves such weights; every score computed with them would be
    NaN (or meaningless). The message names the prior, how many weights are broken, the final
    loss its training recorded, and what to do.

    Parameters
    ----------
    prior : DiffusionPrior

    Returns
    -------
    str or None
    """
    import torch

    broken = total = 0
    with torch.no_grad():
        for parameter in prior.unet.parameters():
            broken += int((~torch.isfinite(parameter)).sum())
            total += parameter.numel()
    if not broken:
        return None
    loss = prior.metadata.training.get("final_loss", "not recorded")
    where = f"'{prior.path}'" if prior.path else "the prior"
    return (
        f"{where} is broken: {broken} of its {total} network weights are NaN or infinite (its training's final loss: {loss}); "
        "train it again (e.g. with a lower learning rate) or choose another prior"
    )


def require_finite_weights(prior: DiffusionPrior) -> None:
    """Raise ``ValueError`` (the message of :func:`broken_weights_problem`) if ``prior``'s network holds NaN or infinite weights.

    The detectors call it before sampling, so a broken prior is one clear error instead of NaN
    scores.
    """
    problem = broken_weights_problem(prior)
    if problem is not None:
        raise ValueError(problem)
