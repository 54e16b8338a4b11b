"""Train DCMFNet: one process or ``torchrun``; resumable; last and best checkpoints.

Usage::

    dcmfnet train --config cpu_synthetic --output-dir runs/cpu
    dcmfnet train --config FILE --output-dir DIR train.epochs=3 data.root=/data/refer
    torchrun --nproc_per_node 2 -m dcmfnet.train --config FILE --output-dir DIR

The output folder receives ``last.pt`` (after every epoch, on SIGINT/SIGTERM, and at the last
step or when a time budget ends), ``best.pt`` (best validation overall IoU), ``config.yaml`` (the resolved
config), ``metrics.jsonl`` and ``metrics.csv`` (one record per epoch), ``curves.png``,
``gallery.png`` and TensorBoard events when TensorBoard is installed.

Running the same command again resumes from ``DIR/last.pt`` (``--resume never`` refuses to touch
an existing run; ``--resume PATH`` resumes from another file). A checkpoint whose model, data or
optimizer config differs from the run's is refused with the list of differences, and so is one
written in the middle of an epoch by another number of processes.

A NaN or infinite loss or gradient stops the run before the optimizer step, with the step, the
batch's sample indices and what to try; no checkpoint is written then (``last.pt`` stays the last
good one) and the command exits with status 1. ``train.skip_nonfinite=true`` skips such batches
instead and logs how many (``skipped_batches``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dcmfnet.commands.base import run_command
from dcmfnet.devices import DEVICE_CHOICES
from dcmfnet.train_config import load_run_config
from dcmfnet.training import NonFiniteError, train

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's arguments; ``key=value`` overrides may follow anywhere."""
    parser.add_argument("--config", required=True, help="shipped config name (cpu_synthetic) or YAML file")
    parser.add_argument("--output-dir", required=True, help="folder for checkpoints, logs and figures")
    parser.add_argument("--resume", default="auto", help="auto (default), never, or a checkpoint path")
    parser.add_argument(
        "--device", default=None, choices=DEVICE_CHOICES, help="the same as train.device=... (default: the config's)"
    )
    parser.epilog = "Config overrides: key=value anywhere on the line (e.g. train.epochs=3 train.device=cpu)."


def run(args: argparse.Namespace) -> int:
    """Train with the parsed arguments; returns the exit status."""
    overrides = [*args.overrides, *([f"train.device={args.device}"] if args.device else [])]
    cfg = load_run_config(args.config, overrides)
    try:
        train(cfg, args.output_dir, resume=args.resume)
    except NonFiniteError as error:
        if getattr(args, "debug", False):
            raise
        print(f"dcmfnet train: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.train``: the same as ``dcmfnet train``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet train")
