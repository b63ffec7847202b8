"""``napari-klip train``: train a diffusion prior on in-distribution images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.networks import NETWORK_PRESETS
from ..core.options import LOSS_WEIGHTINGS, PREDICTION_TYPES, SIZE_MODES, TIMESTEP_SAMPLINGS
from ..core.training import TrainingConfig
from ._common import add_device_option, positive_int, positive_minutes
from ._interrupts import DeferredInterrupt


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    defaults = TrainingConfig
    train = commands.add_parser(
        "train",
        help="train a diffusion prior on in-distribution images",
        description="Train a diffusion prior (diffusers UNet2DModel + DDPM schedule) on your in-distribution images.",
    )
    train.add_argument("--data", required=True, help="TIFF stack, folder of TIFF/PNG files, or FILE.npz:KEY")
    train.add_argument("--out", required=True, type=Path, help="output folder (the prior, checkpoint.pt, training_log.json)")
    train.add_argument("--image-size", type=positive_int, default=defaults.image_size, help=f"side of the square training images (default {defaults.image_size})")
    train.add_argument("--size-mode", choices=SIZE_MODES, default=defaults.size_mode)
    train.add_argument("--patch-size", type=positive_int, metavar="P",
                       help="train a patch prior on random P×P crops of the full-size images (replaces --image-size and "
                            "--size-mode); KLIP and LMD then score images of any size at native resolution")
    train.add_argument("--network", choices=tuple(NETWORK_PRESETS), default=defaults.network, help=f"network size (default {defaults.network})")
    train.add_argument("--steps", type=positive_int, default=defaults.steps)
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.learning_rate, help=f"learning rate (default {defaults.learning_rate:g})")
    train.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    train.add_argument("--ema", type=float, default=defaults.ema_decay, help="EMA decay of the saved weights (0 disables)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    add_device_option(train)
    train.add_argument("--checkpoint-every", type=positive_int, default=defaults.checkpoint_every)
    train.add_argument("--time-limit", type=positive_minutes, metavar="MINUTES",
                       help="stop after the step that reaches MINUTES of wall time and write the prior as at the end; "
                            "--resume with the same --steps continues (for machines lent for a fixed time)")
    train.add_argument("--prediction-type", choices=PREDICTION_TYPES, default=defaults.prediction_type,
                       help="what the network predicts: the noise (DDPM), the velocity v, or the clean image "
                            f"(default {defaults.prediction_type}); every detector converts it to the noise")
    train.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=defaults.loss_weighting,
                       help=f"weight of each timestep in the loss: equal, or Min-SNR-gamma (default {defaults.loss_weighting})")
    train.add_argument("--min-snr-gamma", type=float, default=defaults.min_snr_gamma, metavar="GAMMA",
                       help=f"gamma of --loss-weighting min-snr (default {defaults.min_snr_gamma:g})")
    train.add_argument("--timestep-sampling", choices=TIMESTEP_SAMPLINGS, default=defaults.timestep_sampling,
                       help="which noise levels training sees: uniform over the schedule (DDPM), or EDM's log-normal "
                            "levels, mostly low and middle noise (with --prediction-type v_prediction: EDM's "
                            f"preconditioning at sigma_data 1; default {defaults.timestep_sampling})")
    train.add_argument("--log-every", type=positive_int, default=defaults.log_every)
    train.add_argument("--intensity-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="intensities mapped to [-1, 1] (default: 0-255 for uint8, else data min-max)")
    train.add_argument("--labels", type=int, nargs="+", metavar="LABEL",
                       help="FILE.npz only: keep the images whose label (array KEY with 'images' -> 'labels', "
                            "e.g. train_labels) is one of these, e.g. --labels 6 for OrganAMNIST liver")
    train.add_argument("--max-images", type=positive_int, help="use only the first N images")
    train.add_argument("--flip", action="store_true", help="augment with random left-right flips")
    train.add_argument("--description", help="training-data description stored with the prior")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    group.add_argument("--overwrite", action="store_true", help="replace earlier training output in OUT")
    train.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train, with a progress bar; Ctrl-C saves a checkpoint and exits with 130."""
    from tqdm import tqdm

    from ..core.data import read_images
    from ..core.training import iter_training

    images = read_images(args.data, grey=None, labels=None if args.labels is None else tuple(args.labels))
    if args.max_images is not None:
        images = images[: args.max_images]
    config = TrainingConfig(
        image_size=args.image_size,
        size_mode=args.size_mode,
        network=args.network,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema,
        seed=args.seed,
        device=args.device,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        intensity_range=tuple(args.intensity_range) if args.intensity_range else None,
        horizontal_flip=args.flip,
        precision=args.precision,
        patch_size=args.patch_size,
        time_limit_s=None if args.time_limit is None else args.time_limit * 60.0,
        prediction_type=args.prediction_type,
        loss_weighting=args.loss_weighting,
        min_snr_gamma=args.min_snr_gamma,
        timestep_sampling=args.timestep_sampling,
        training_data=args.description or f"{args.data}{_label_note(args.labels)} ({len(images)} images)",
    )
    steps = iter_training(images, args.out, config, resume=args.resume, overwrite=args.overwrite)
    bar = tqdm(total=config.steps, desc="training", unit="step", disable=None)
    with DeferredInterrupt() as interrupt:
        try:
            while True:
                if interrupt.requested:
                    raise KeyboardInterrupt
                try:
                    update = next(steps)
                except StopIteration as finished:
                    result = finished.value
                    break
                if bar.n == 0 and update.step > 1:
                    bar.update(update.step - 1)
                bar.update(1)
                bar.set_postfix(loss=f"{update.loss:.4f}")
        except KeyboardInterrupt:
            steps.close()  # at a step end: the generator saves its checkpoint
            bar.close()
            print(_interrupted_message(args.out), file=sys.stderr)
            return 130
    bar.close()
    if result.time_limit_reached:
        print(f"time limit reached after {result.steps_done} of {config.steps} steps; continue with --resume --steps {config.steps}")
    print(f"prior written to {result.out_dir} ({result.steps_done} steps, final loss {result.final_loss:.4f}, {result.wall_time_s:.0f} s)")
    return 0


def _label_note(labels: list[int] | None) -> str:
    return "" if labels is None else f", labels {', '.join(map(str, labels))}"


def _interrupted_message(out: Path) -> str:
    """One line saying what an interrupted run saved and how to continue it."""
    from ..core.training import STAGING_SUFFIX, checkpoint_folder

    folder = checkpoint_folder(out)
    if folder is None:
        return f"interrupted before a checkpoint was written; nothing saved in {out}"
    kept = f"; the earlier prior in {out} is untouched" if folder.name.endswith(STAGING_SUFFIX) else ""
    return f"interrupted; checkpoint saved in {folder}{kept} — continue with --resume --out {out}"
