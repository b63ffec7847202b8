"""Network presets for diffusion priors: diffusers ``UNet2DModel`` configurations by size."""

from __future__ import annotations

from typing import Any

#: Named UNet sizes. ``attention_levels`` are the resolution levels (0 = full size) that get
#: self-attention blocks.
NETWORK_PRESETS: dict[str, dict[str, Any]] = {
    # ~1.1 M parameters at 1 channel: CPU training in minutes, unit tests, the CPU priors.
    "tiny": {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "attention_levels": (2,), "norm_num_groups": 8},
    # ~6.8 M parameters: a proper 32×32 prior on a GPU.
    "small": {"block_out_channels": (64, 128, 128), "layers_per_block": 2, "attention_levels": (1, 2), "norm_num_groups": 32},
    # ~35 M parameters: 64×64 and larger images.
    "base": {
        "block_out_channels": (128, 256, 256, 256),
        "layers_per_block": 2,
        "attention_levels": (2,),
        "norm_num_groups": 32,
    },
}


def unet_config(image_size: int, channels: int, network: str = "small") -> dict[str, Any]:
    """The ``UNet2DModel`` keyword arguments of a named network size.

    Parameters
    ----------
    image_size : int
        Side of the square training images; must be divisible by ``2 ** (levels - 1)``.
    channels : int
        Image channels (1 for grey, 3 for RGB).
    network : {"tiny", "small", "base"}
        Preset name.

    Returns
    -------
    dict
        Arguments for ``diffusers.UNet2DModel``.

    Raises
    ------
    ValueError
        For an unknown preset or an image size the preset cannot halve often enough.
    """
    if network not in NETWORK_PRESETS:
        raise ValueError(f"unknown network size {network!r}; expected one of {', '.join(NETWORK_PRESETS)}")
    preset = NETWORK_PRESETS[network]
    levels = len(preset["block_out_channels"])
    divisor = 2 ** (levels - 1)
    if image_size < divisor or image_size % divisor:
        raise ValueError(
            f"network {network!r} has {levels} resolution levels, so the image size must be a multiple of "
            f"{divisor}; got {image_size} (resize or crop the images to e.g. {max(divisor, image_size // divisor * divisor)})"
        )
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    attention = set(preset["attention_levels"])
    down = tuple("AttnDownBlock2D" if level in attention else "DownBlock2D" for level in range(levels))
    up = tuple("AttnUpBlock2D" if level in attention else "UpBlock2D" for level in reversed(range(levels)))
    return {
        "sample_size": image_size,
        "in_channels": channels,
        "out_channels": channels,
        "block_out_channels": preset["block_out_channels"],
        "layers_per_block": preset["layers_per_block"],
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": preset["norm_num_groups"],
    }
