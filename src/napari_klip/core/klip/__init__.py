"""KLIP: localized distribution-shift detection from the guidance energy of posterior sampling.

``sampler`` runs DDPM posterior sampling with measurement guidance (``guidance``: one function
per mode; settings: :class:`~napari_klip.core.options.KlipConfig`) and records the normalised
guidance energy per step and pixel (the trace); ``scores`` turns a trace into block score maps,
heatmaps and image scores for any time window and block size, without sampling again.
"""

from .sampler import GUIDANCE_MODES, KlipConfig, KlipProgress, KlipTrace, iter_klip_batch, iter_klip_sampling, measurement_to_model_range, run_klip
from .scores import DEFAULT_THRESHOLD, THRESHOLD_RULES, block_score_map, default_block_size, default_image_block_size, default_window, heatmap_from_blocks, image_score, resolve_map_settings, threshold_blocks

__all__ = [
    "DEFAULT_THRESHOLD",
    "GUIDANCE_MODES",
    "KlipConfig",
    "THRESHOLD_RULES",
    "threshold_blocks",
    "KlipProgress",
    "KlipTrace",
    "block_score_map",
    "default_block_size",
    "default_image_block_size",
    "default_window",
    "heatmap_from_blocks",
    "image_score",
    "resolve_map_settings",
    "iter_klip_batch",
    "iter_klip_sampling",
    "measurement_to_model_range",
    "run_klip",
]
