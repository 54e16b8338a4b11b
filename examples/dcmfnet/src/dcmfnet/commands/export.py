"""Export a training checkpoint as a model folder: ``config.json`` + ``model.safetensors``, loadable offline.

Usage::

    dcmfnet export --checkpoint runs/cpu/best.pt --output-dir model
    python -c 'from dcmfnet.pretrained import load_pretrained; load_pretrained("model")'
    dcmfnet predict --model model --image photo.jpg --expression "the red circle" --output out.png

The folder holds the architecture, the input size and token budget, the run's data/optim/train
sections (so ``dcmfnet evaluate --model`` finds the dataset), the weights as safetensors (no
pickle), a Hugging Face text encoder's tokenizer, a model card, and the sha256 of every file,
checked on every load (see :mod:`dcmfnet.pretrained`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dcmfnet.commands.base import run_command
from dcmfnet.export import export_checkpoint

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` subcommand's arguments."""
    parser.add_argument("--checkpoint", required=True, help="training checkpoint file (best.pt or last.pt)")
    parser.add_argument("--output-dir", required=True, help="model folder to write (created)")


def main(argv: Sequence[str] | None = None) -> int:
    """The same as ``dcmfnet export``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet export")


def run(args: argparse.Namespace) -> int:
    """Export with the parsed arguments; returns the exit status."""
    directory = export_checkpoint(args.checkpoint, args.output_dir)
    files = sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())
    print(f"{args.checkpoint} -> {directory}: {', '.join(files)}")
    return 0
