"""What every ``dcmfnet`` subcommand shares: overrides anywhere on the line, one-line user errors.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``;
:func:`run_command` parses and runs it (``python -m dcmfnet.train`` and the ``dcmfnet``
console script both end here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["is_user_error", "parse_with_overrides", "run_command", "run_parsed"]


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, collecting ``key=value`` words anywhere on the line into ``args.overrides``."""
    args, extra = parser.parse_known_args(argv)
    overrides = [word for word in extra if "=" in word and not word.startswith("-")]
    unknown = [word for word in extra if word not in overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = overrides
    return args


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix (a file, a value, a config key) rather than a defect."""
    from dcmfnet.checkpoint import CheckpointError
    from dcmfnet.train_config import ConfigError

    return isinstance(error, (OSError, ConfigError, CheckpointError, InputError))


class InputError(ValueError):
    """A user's input (an image, an expression, an option's value) cannot be used; the message says why."""


def run_parsed(args: argparse.Namespace, run: Callable[[argparse.Namespace], int], prog: str) -> int:
    """Run a parsed subcommand: a user error becomes one line on stderr and exit code 2."""
    try:
        return int(run(args))
    except Exception as error:
        if getattr(args, "debug", False) or not is_user_error(error):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def run_command(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
) -> int:
    """Build a subcommand's parser, parse ``argv`` (default: ``sys.argv[1:]``) and run it."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    args = parse_with_overrides(parser, sys.argv[1:] if argv is None else argv)
    return run_parsed(args, run, parser.prog)
