"""The ``dcmfnet`` command: one subcommand per task, each with ``--help``.

Usage::

    dcmfnet train --config cpu_synthetic --output-dir runs/cpu train.max_steps=100
    dcmfnet evaluate --checkpoint runs/cpu/best.pt --output-json val.json
    dcmfnet predict --checkpoint runs/cpu/best.pt --image photo.jpg --expression "the red circle" --output out.png
    dcmfnet stats --config cpu_synthetic

``key=value`` config overrides may stand anywhere on the line. A user's mistake (a missing
file, a bad value, an unknown config key) ends with one line on stderr and exit code 2, as
argparse does for bad arguments; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from dcmfnet.commands import ablate, demo, evaluate, export, predict, stats, train
from dcmfnet.commands.base import parse_with_overrides, plain_text, run_parsed

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand → module; each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, ModuleType] = {
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "export": export,
    "stats": stats,
    "demo": demo,
    "ablate": ablate,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``dcmfnet`` parser with every subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="dcmfnet", description=plain_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        doc = plain_text(module.__doc__) or name
        sub = subparsers.add_parser(
            name, help=doc.splitlines()[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(sub)
        sub.add_argument("--debug", action="store_true", help="show the traceback of every error")
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dcmfnet`` console script; returns the exit status."""
    parser = build_parser()
    args = parse_with_overrides(parser, sys.argv[1:] if argv is None else argv)
    return run_parsed(args, args.run, f"dcmfnet {args.command}")


if __name__ == "__main__":
    sys.exit(main())
