"""``napari-klip info``: describe a prior folder and the devices available."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.options import DEVICE_CHOICES


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    info = commands.add_parser("info", help="describe a prior folder and the devices available")
    info.add_argument("model", type=Path, nargs="?", help="prior folder")
    info.add_argument("--heldout", metavar="DATA",
                      help="also report the prior's denoising loss per timestep band on these held-out images "
                           "(TIFF stack, folder or FILE.npz:KEY, on the prior's grid and in its intensity units)")
    info.add_argument("--labels", type=int, nargs="+", metavar="LABEL", help="with --heldout FILE.npz:KEY: keep these labels")
    info.add_argument("--max-images", type=int, default=1000, help="with --heldout: use at most this many images (default 1000)")
    info.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                      help="with --heldout: where the prior runs (default cpu; e.g. cuda on a GPU machine)")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print the devices and (with a folder) the prior's description as JSON."""
    from ..core.device import available_devices

    report: dict[str, object] = {"devices": available_devices()}
    if args.model is not None:
        from ..core.prior import load_prior

        prior = load_prior(args.model, device=args.device if args.heldout is not None else "cpu")
        report["prior"] = {
            "path": str(prior.path),
            "parameters": prior.num_parameters,
            "train_timesteps": prior.num_train_timesteps,
            "prediction_type": prior.prediction_type,
            **prior.metadata.to_json(),
            "assumed_defaults": prior.metadata.assumed_defaults,
        }
        if args.heldout is not None:
            report["heldout_denoising_loss"] = _heldout(prior, args)
            report["heldout_device"] = str(prior.device)
    elif args.heldout is not None:
        raise ValueError("--heldout needs a prior folder")
    print(json.dumps(report, indent=2))
    return 0


def _heldout(prior: object, args: argparse.Namespace) -> list[dict[str, object]]:
    """Per-band held-out ε-MSE of ``prior`` on ``args.heldout`` (first ``--max-images`` images)."""
    from ..core.data import read_images
    from ..core.prior_quality import heldout_denoising_loss

    if args.max_images < 2:
        raise ValueError(f"--max-images must be at least 2, got {args.max_images}")
    images = read_images(args.heldout, labels=None if args.labels is None else tuple(args.labels))[: args.max_images]
    bands = heldout_denoising_loss(prior, images)
    return [{"timesteps": list(b.band), "loss": round(b.loss, 5), "standard_error": round(b.standard_error, 5),
             "images": len(images)} for b in bands]
