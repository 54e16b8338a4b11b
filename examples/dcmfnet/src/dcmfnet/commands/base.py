"""What every ``dcmfnet`` subcommand shares: overrides anywhere on the line, one-line user errors.

A subcommand module defines ``add_arguments(parser)``, ``run(args) -> int`` and ``main(argv)``;
:func:`run_command` parses and runs it (``python -m dcmfnet.train`` and the ``dcmfnet`` console
script both end here). This is the only layer that knows argparse, prints for the user and picks
exit codes: the modules below take typed arguments and raise typed errors.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dcmfnet.devices import DEVICE_CHOICES
from dcmfnet.errors import InputError, is_user_error

__all__ = [
    "add_device_argument",
    "add_model_arguments",
    "is_user_error",
    "parse_with_overrides",
    "plain_text",
    "require_parent_folder",
    "require_positive",
    "run_command",
    "run_parsed",
]


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, collecting ``key=value`` words anywhere on the line into ``args.overrides``."""
    args, extra = parser.parse_known_args(argv)
    overrides = [word for word in extra if "=" in word and not word.startswith("-")]
    unknown = [word for word in extra if word not in overrides]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = overrides
    return args


_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj|doc|ref|math):`(~?)([^`<]*?)\s*(?:<[^>]*>)?`")


def plain_text(doc: str | None) -> str:
    """A module docstring as ``--help`` shows it: the reST markup taken out.

    ``:mod:`dcmfnet.images``` becomes ``dcmfnet.images`` (``~a.b`` becomes ``b``), double backquotes go,
    and a paragraph's closing ``::`` (a literal block follows) becomes ``:`` (or nothing after a space).
    """

    def role(match: re.Match[str]) -> str:
        text = match.group(2)
        return text.rsplit(".", 1)[-1] if match.group(1) else text

    text = _ROLE.sub(role, doc or "").replace("``", "")
    text = re.sub(r"\s+::$", "", text, flags=re.MULTILINE)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE).strip()


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
    parser = argparse.ArgumentParser(
        prog=prog, description=plain_text(doc), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    args = parse_with_overrides(parser, sys.argv[1:] if argv is None else argv)
    return run_parsed(args, run, parser.prog)


def require_positive(option: str, value: int | None) -> None:
    """Refuse an option's value under 1 (``None``, not given, passes).

    Raises:
        InputError: ``value`` is less than 1.
    """
    if value is not None and value < 1:
        raise InputError(f"{option} must be at least 1, got {value}")


def require_parent_folder(option: str, path: str | Path | None) -> None:
    """Refuse an output file whose folder does not exist (``None``, not given, passes): no folder is created.

    Raises:
        InputError: the folder of ``path`` is missing, or is a file.
    """
    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise InputError(f"{option} {path}: its folder {parent} {what}; expected an existing folder (create it first)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` or ``--checkpoint FILE`` (exactly one), for the commands that load a model."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="exported model folder (written by `dcmfnet export`)")
    source.add_argument("--checkpoint", default=None, help="training checkpoint file (best.pt or last.pt)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (auto: CUDA when available)."""
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: %(default)s")
