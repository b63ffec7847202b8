"""``napari-klip info``: describe a prior folder and the devices available."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    info = commands.add_parser("info", help="describe a prior folder and the devices available")
    info.add_argument("model", type=Path, nargs="?", help="prior folder")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    """Print the devices and (with a folder) the prior's description as JSON."""
    from ..core.device import available_devices

    report: dict[str, object] = {"devices": available_devices()}
    if args.model is not None:
        from ..core.prior import load_prior

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
