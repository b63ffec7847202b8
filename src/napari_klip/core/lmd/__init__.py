"""LMD (lift, map, detect): masks, replacement-rule inpainting, image distances, scores.

See ``../shared/docs/method-lmd.md`` and ``docs/lmd.md``. Importing this package imports torch.
"""

from .detector import (
    AGGREGATES,
    DISTANCE_NAMES,
    LIFTS,
    LmdConfig,
    LmdProgress,
    LmdReconstructions,
    LmdScores,
    aggregate_distances,
    iter_lmd_reconstructions,
    lift_masks,
    masked_mean_maps,
    measure,
    run_lmd,
)
from .inpaint import ReverseStepProgress, ddpm_reverse_step, iter_reconstructions, respaced_timesteps
from .masks import MASK_KINDS, make_masks

__all__ = [
    "AGGREGATES",
    "DISTANCE_NAMES",
    "LIFTS",
    "MASK_KINDS",
    "LmdConfig",
    "LmdProgress",
    "LmdReconstructions",
    "LmdScores",
    "ReverseStepProgress",
    "aggregate_distances",
    "ddpm_reverse_step",
    "iter_lmd_reconstructions",
    "iter_reconstructions",
    "lift_masks",
    "make_masks",
    "masked_mean_maps",
    "measure",
    "respaced_timesteps",
    "run_lmd",
]
