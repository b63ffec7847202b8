"""``napari-klip sample``: draw images from a prior (a quick check of what it learned)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_device_option, follow, progress_bar

#: Reverse steps of ``napari-klip sample`` unless ``--steps`` says otherwise.
DEFAULT_SAMPLE_STEPS = 100


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``sample`` subcommand."""
    sample = commands.add_parser(
        "sample",
        help="draw images from a prior (a quick check of what it learned)",
        description="Draw images from a prior by ancestral DDPM sampling; writes a TIFF stack and optionally a PNG grid.",
    )
    sample.add_argument("--model", required=True, type=Path, help="prior folder")
    sample.add_argument("--count", type=int, default=16)
    sample.add_argument("--steps", type=int, default=DEFAULT_SAMPLE_STEPS, help=f"reverse steps (default {DEFAULT_SAMPLE_STEPS})")
    sample.add_argument("--seed", type=int, default=0)
    add_device_option(sample)
    sample.add_argument("--out", required=True, type=Path, help="output TIFF stack")
    sample.add_argument("--grid", type=Path, help="also write the images as one PNG grid")
    sample.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sample.set_defaults(handler=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    """Sample, write the TIFF stack and (with ``--grid``) a PNG grid of the images."""
    import numpy as np
    import tifffile

    from ..core.prior import load_prior
    from ..core.sampling import sample_prior

    for target in (args.out, args.grid):
        if target is not None and target.exists() and not args.overwrite:
            raise FileExistsError(f"'{target}' exists; pass --overwrite to replace it")
    prior = load_prior(args.model, device=args.device)
    with progress_bar(args.steps, "sampling") as bar:
        images = sample_prior(prior, args.count, args.steps, args.seed, progress=follow(bar))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    colour = images.ndim == 4 and images.shape[-1] == 3
    tifffile.imwrite(args.out, images, photometric="rgb" if colour else "minisblack")
    if args.grid is not None:
        import imageio.v3 as iio

        low, high = prior.metadata.intensity_range
        scaled = np.clip((images - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
        columns = int(np.ceil(np.sqrt(len(scaled))))
        rows = int(np.ceil(len(scaled) / columns))
        padded = np.zeros((rows * columns, *scaled.shape[1:]), np.uint8)
        padded[: len(scaled)] = scaled
        tiles = padded.reshape(rows, columns, *scaled.shape[1:])
        grid = np.concatenate([np.concatenate(list(row), axis=1) for row in tiles], axis=0)
        iio.imwrite(args.grid, grid)
    print(f"wrote {len(images)} samples to {args.out}" + (f" and {args.grid}" if args.grid else ""))
    return 0
