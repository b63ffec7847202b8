"""The ``napari-klip`` command line: ``napari-klip SUBCOMMAND --help`` for each subcommand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="napari-klip",
        description="Out-of-distribution detection and localization with diffusion priors (KLIP, LMD).",
    )
    parser.add_argument("--version", action="version", version=f"napari-klip {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a diffusion prior on in-distribution images",
        description="Train a diffusion prior (diffusers UNet2DModel + DDPM schedule) on your in-distribution images.",
    )
    train.add_argument("--data", required=True, help="TIFF stack, folder of TIFF/PNG files, or FILE.npz:KEY")
    train.add_argument("--out", required=True, type=Path, help="output folder (the prior, checkpoint.pt, training_log.json)")
    train.add_argument("--image-size", type=int, default=32, help="side of the square training images (default 32)")
    train.add_argument("--size-mode", choices=("resize", "random-crop", "center-crop"), default="resize")
    train.add_argument("--network", choices=("tiny", "small", "base"), default="small", help="network size (default small)")
    train.add_argument("--steps", type=int, default=10_000)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    train.add_argument("--warmup-steps", type=int, default=200)
    train.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights (0 disables)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    train.add_argument("--checkpoint-every", type=int, default=1000)
    train.add_argument("--log-every", type=int, default=50)
    train.add_argument("--intensity-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="intensities mapped to [-1, 1] (default: 0-255 for uint8, else data min-max)")
    train.add_argument("--max-images", type=int, help="use only the first N images")
    train.add_argument("--flip", action="store_true", help="augment with random left-right flips")
    train.add_argument("--description", help="training-data description stored with the prior")
    group = train.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    group.add_argument("--overwrite", action="store_true", help="replace earlier training output in OUT")
    train.set_defaults(handler=_run_train)

    sample = commands.add_parser(
        "sample",
        help="draw images from a prior (a quick check of what it learned)",
        description="Draw images from a prior by ancestral DDPM sampling; writes a TIFF stack and optionally a PNG grid.",
    )
    sample.add_argument("--model", required=True, type=Path, help="prior folder")
    sample.add_argument("--count", type=int, default=16)
    sample.add_argument("--steps", type=int, default=100, help="reverse steps (default 100)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    sample.add_argument("--out", required=True, type=Path, help="output TIFF stack")
    sample.add_argument("--grid", type=Path, help="also write the images as one PNG grid")
    sample.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sample.set_defaults(handler=_run_sample)

    from .cli_lmd import add_lmd_options, run_lmd
    from .cli_score import GUIDANCE_CHOICES, add_common_options, add_klip_options, run_evaluate, run_score

    score = commands.add_parser(
        "score",
        help="KLIP: anomaly heatmap, labels and score of an image, stack or measurement",
        description="Simulate a measurement of each image (or take a measured one) and score it with KLIP. "
        "Intensities are read in the units of the prior's intensity_range (napari-klip info MODEL shows it).",
    )
    score.add_argument("--input", type=Path, help="image or stack (TIFF, PNG, folder, FILE.npz:KEY)")
    score.add_argument("--measurement", type=Path, help="measured sinogram/image (or stack of them) to ingest instead of simulating")
    add_common_options(score)
    add_klip_options(score)
    score.set_defaults(handler=run_score)

    lmd = commands.add_parser(
        "lmd",
        help="LMD: out-of-distribution score, distance heatmap and reconstructions of an image or stack",
        description="Mask each image (alternating checkerboard by default), inpaint it with the prior several times, and "
        "score the median LPIPS/SSIM/MSE/prior-feature distance to the original. Intensities are read in the units of the "
        "prior's intensity_range (napari-klip info MODEL shows it).",
    )
    lmd.add_argument("--input", required=True, type=Path, help="image or stack (TIFF, PNG, folder, FILE.npz:KEY)")
    add_common_options(lmd)
    add_lmd_options(lmd)
    lmd.set_defaults(handler=run_lmd)

    evaluate = commands.add_parser(
        "evaluate",
        help="KLIP or LMD ROC-AUC on ID vs OOD images (dataset level; image level with pixel labels)",
        description="Score ID and OOD stacks; dataset-level ROC-AUC of the image scores (KLIP: max over blocks; LMD: the "
        "aggregated distance) and, with --ood-labels, the image-level ROC-AUC of block (KLIP) or pixel (LMD heatmap) "
        "scores inside the body, averaged over images.",
    )
    evaluate.add_argument("--id", required=True, type=Path, help="in-distribution images")
    evaluate.add_argument("--ood", required=True, type=Path, help="out-of-distribution images")
    evaluate.add_argument("--ood-labels", type=Path, help="pixel masks of the anomalies (same shape as --ood)")
    evaluate.add_argument("--body-masks", type=Path, help="body/foreground masks for the image-level ROC (same shape as --ood)")
    evaluate.add_argument("--auto-body-mask", action="store_true", help="compute body masks by Otsu thresholding")
    evaluate.add_argument("--method", choices=("klip", "lmd"), default="klip", help="detector (default klip)")
    add_common_options(evaluate)
    add_klip_options(evaluate)
    add_lmd_options(evaluate)
    evaluate.set_defaults(handler=run_evaluate)

    demo = commands.add_parser(
        "demo",
        help="the demo: KLIP on real CT slices with inserted lesions, bundled prior (offline, ~1 min on a CPU)",
        description="Simulate sparse-view CT of 8 bundled OrganAMNIST CT slices with inserted lesions, score them with KLIP "
        "and the bundled prior, and write demo.png and result.json (localization ROC-AUC per slice). "
        "--gui opens napari with the sample loaded and the KLIP widget docked instead.",
    )
    demo.add_argument("--out", type=Path, default=Path("outputs") / "demo", help="output folder (default outputs/demo)")
    demo.add_argument("--model", type=Path, default=None,
                      help="prior folder trained on OrganAMNIST-like CT (default: the bundled prior)")
    demo.add_argument("--guidance", choices=GUIDANCE_CHOICES, default="jacobian-free",
                      help="KLIP guidance (default jacobian-free, the paper's; consistency: filtered back-projection steps)")
    demo.add_argument("--n-views", type=int, default=24, help="CT projection angles over [0, 180) (default 24)")
    demo.add_argument("--samples", type=int, default=8, help="posterior samples per slice (default 8)")
    demo.add_argument("--steps", type=int, default=100, help="sampling steps (default 100)")
    demo.add_argument("--slices", type=int, default=8, help="how many of the 8 sample slices (default 8)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    demo.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    demo.add_argument("--gui", action="store_true", help="open napari with the sample and the KLIP widget instead")
    demo.set_defaults(handler=_run_demo)

    info = commands.add_parser("info", help="describe a prior folder and the devices available")
    info.add_argument("model", type=Path, nargs="?", help="prior folder")
    info.set_defaults(handler=_run_info)
    return parser


def _run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .core.data import read_images
    from .core.training import TrainingConfig, iter_training

    images = read_images(args.data)
    if args.max_images is not None:
        if args.max_images < 1:
            raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
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
        training_data=args.description or f"{args.data} ({len(images)} images)",
    )
    steps = iter_training(images, args.out, config, resume=args.resume, overwrite=args.overwrite)
    bar = tqdm(total=config.steps, desc="training", unit="step", disable=None)
    try:
        while True:
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
        steps.close()
        bar.close()
        print(f"interrupted; checkpoint saved — continue with --resume --out {args.out}", file=sys.stderr)
        return 130
    bar.close()
    print(f"prior written to {result.out_dir} ({result.steps_done} steps, final loss {result.final_loss:.4f}, {result.wall_time_s:.0f} s)")
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile
    from tqdm import tqdm

    from .core.prior import load_prior
    from .core.sampling import sample_prior

    for target in (args.out, args.grid):
        if target is not None and target.exists() and not args.overwrite:
            raise FileExistsError(f"'{target}' exists; pass --overwrite to replace it")
    prior = load_prior(args.model, device=args.device)
    with tqdm(total=args.steps, desc="sampling", unit="step", disable=None) as bar:
        images = sample_prior(prior, args.count, args.steps, args.seed, progress=lambda step, total: bar.update(1))
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


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, open_demo_viewer, run_demo

    if args.gui:
        import napari

        open_demo_viewer(napari.Viewer(title="napari-klip demo"))
        napari.run()
        return 0
    if not 1 <= args.slices <= 8:
        raise ValueError(f"--slices must be in 1..8, got {args.slices}")
    from tqdm import tqdm

    settings = DemoSettings(n_views=args.n_views, num_samples=args.samples, num_steps=args.steps, seed=args.seed, device=args.device, slices=args.slices,
                            model=None if args.model is None else str(args.model), guidance=args.guidance)
    with tqdm(total=args.slices * args.steps, desc="KLIP on CT slices", unit="step", disable=None) as bar:
        summary = run_demo(args.out, settings, overwrite=args.overwrite, progress=lambda step, total: bar.update(step - bar.n))
    print(
        f"KLIP localization ROC-AUC {summary['localization_auc_mean']:.3f} (mean over {summary['slices_with_both_classes']} slices; "
        f"a map of the distance to the image centre alone gets {summary['centre_baseline_auc_mean']:.3f}), "
        f"{summary['wall_time_s']:.0f} s on {summary['device']}\n"
        f"wrote {args.out / 'demo.png'} and {args.out / 'result.json'}"
    )
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from .core.device import available_devices

    report: dict[str, object] = {"devices": available_devices()}
    if args.model is not None:
        from .core.prior import load_prior

        prior = load_prior(args.model, device="cpu")
        report["prior"] = {
            "path": str(prior.path),
            "parameters": prior.num_parameters,
            "train_timesteps": prior.num_train_timesteps,
            **prior.metadata.to_json(),
            "assumed_defaults": prior.metadata.assumed_defaults,
        }
    print(json.dumps(report, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``napari-klip`` command line; returns the exit code.

    Errors a user can fix (missing files, bad images, occupied output folders, unavailable
    devices) are printed as one line ``napari-klip: error: ...`` with exit code 1.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE if argv else 0
    from .core.data import ImageDataError
    from .core.device import DeviceUnavailableError

    try:
        return args.handler(args)
    except (FileNotFoundError, FileExistsError, ImageDataError, DeviceUnavailableError, ValueError, OSError) as error:
        print(f"napari-klip: error: {error}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
