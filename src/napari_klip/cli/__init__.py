"""The ``napari-klip`` command line: ``napari-klip SUBCOMMAND --help`` for each subcommand.

One module per subcommand (``train``, ``sample``, ``score``, ``lmd``, ``evaluate``, ``demo``,
``info``), each with ``register(subparsers)``; shared options and file helpers in ``_common``.
The command line starts without importing torch: the modules import only torch-free parts of
:mod:`napari_klip.core` at module level (:mod:`~napari_klip.core.options` holds every default).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from .. import __version__
from ..core.errors import NapariKlipError
from . import demo, evaluate, info, lmd, sample, score, train

EXIT_USAGE = 2
EXIT_FAILURE = 1
#: Commands whose outputs are staged and land only complete (Ctrl-C leaves ``--out`` untouched).
STAGED_COMMANDS = ("score", "lmd", "evaluate")
#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


#: The subcommands, in the order ``--help`` lists them; each module registers its own parser.
COMMANDS = (train, sample, score, lmd, evaluate, demo, info)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-klip",
        description="Out-of-distribution detection and localization with diffusion priors (KLIP, LMD).",
    )
    parser.add_argument("--version", action="version", version=f"napari-klip {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """Warnings as ``napari-klip: warning: ...`` lines (no file names or source lines)."""
    return f"napari-klip: warning: {message}\n"


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
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        staged = args.command in STAGED_COMMANDS
        kept = f"; {args.out} was left as it was (outputs land only when a run completes)" if staged else ""
        if getattr(args, "dask", None) is not None:
            kept = f"; the images finished so far are kept in {args.out} (the same command resumes)"
        print(f"napari-klip: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileNotFoundError, FileExistsError, NapariKlipError, ValueError, OSError) as error:
        print(f"napari-klip: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        warnings.formatwarning = formatwarning

