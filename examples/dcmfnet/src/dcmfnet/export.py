"""Export a training checkpoint as a model folder: ``config.json`` + ``model.safetensors``, loadable offline.

Usage::

    dcmfnet export --checkpoint runs/cpu/best.pt --output-dir model
    python -c 'from dcmfnet import DCMFNet; DCMFNet.from_pretrained("model")'
    dcmfnet predict --model model --image photo.jpg --expression "the red circle" --output out.png

The folder holds the architecture, the input size and token budget, the run's data/optim/train
sections (so ``dcmfnet evaluate --model`` finds the dataset), the weights as safetensors (no
pickle), a Hugging Face text encoder's tokenizer, a model card, and the sha256 of every file,
checked on every load (see :mod:`dcmfnet.pretrained`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dcmfnet.command_line import run_command
from dcmfnet.data.build import max_tokens_for
from dcmfnet.evaluate import load_model_from_checkpoint
from dcmfnet.pretrained import PretrainedConfig
from dcmfnet.train_config import config_to_dict

__all__ = ["export_checkpoint", "main"]


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write the model of ``checkpoint`` into ``output_dir`` (created) with ``DCMFNet.save_pretrained``.

    Returns:
        The folder written.
    """
    model, cfg, _ = load_model_from_checkpoint(checkpoint)
    run = {key: value for key, value in config_to_dict(cfg).items() if key != "model"}
    config = PretrainedConfig(
        model=cfg.model,
        image_size=cfg.data.image_size,
        max_tokens=max_tokens_for(cfg.data),
        precision=cfg.train.precision,
        run=run,
    )
    model.save_pretrained(output_dir, config=config)
    return Path(output_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` subcommand's arguments."""
    parser.add_argument("--checkpoint", required=True, help="training checkpoint file (best.pt or last.pt)")
    parser.add_argument("--output-dir", required=True, help="model folder to write (created)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.export``: the same as ``dcmfnet export``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet export")


def run(args: argparse.Namespace) -> int:
    """Export with the parsed arguments; returns the exit status."""
    directory = export_checkpoint(args.checkpoint, args.output_dir)
    files = sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())
    print(f"{args.checkpoint} -> {directory}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
