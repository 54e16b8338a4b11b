"""Evaluate a checkpoint: overall IoU, mean IoU and Prec@0.5…0.9 over every expression of a split.

Usage::

    dcmfnet evaluate --checkpoint runs/cpu/best.pt --output-json runs/cpu/val.json
    dcmfnet evaluate --model model --output-json val.json     # a folder written by `dcmfnet export`
    dcmfnet evaluate --checkpoint runs/cpu/best.pt --shuffle-expressions \\
        --output-json runs/cpu/val_shuffled.json

The model is rebuilt from the config stored in the checkpoint (or the exported folder, whose
``config.json`` keeps the run's data section). Predictions are resized to each image's original
size and scored there, as the paper's benchmarks are scored (§4.1). ``--shuffle-expressions``
gives every sample another sample's expression: the drop in IoU measures how much the model reads
the language. A gallery PNG of predictions is written beside the JSON. Works under ``torchrun``
too: each rank scores a share of the split and the counts are merged, every sample once.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dcmfnet.commands.base import (
    add_device_argument,
    add_model_arguments,
    require_parent_folder,
    require_positive,
    run_command,
)
from dcmfnet.evaluation import evaluate_to_json

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` subcommand's arguments."""
    add_model_arguments(parser)
    parser.add_argument("--split", default=None, help="split to score (default: the run's validation split)")
    parser.add_argument("--shuffle-expressions", action="store_true", help="give each sample another's expression")
    parser.add_argument("--output-json", required=True, help="where to write the metrics (its folder must exist)")
    parser.add_argument("--gallery", default=None, help="gallery PNG (default: beside the JSON; 'none' to skip)")
    parser.add_argument("--data-root", default=None, help="override the dataset root stored in the checkpoint")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    add_device_argument(parser)
    parser.add_argument("--max-samples", type=int, default=None, help="score only the first samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the expression shuffle")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.evaluate``: the same as ``dcmfnet evaluate``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet evaluate")


def run(args: argparse.Namespace) -> int:
    """Evaluate with the parsed arguments; returns the exit status."""
    require_positive("--max-samples", args.max_samples)
    require_positive("--batch-size", args.batch_size)
    require_parent_folder("--output-json", args.output_json)
    no_gallery = args.gallery == "none"
    require_parent_folder("--gallery", None if no_gallery else args.gallery)
    result = evaluate_to_json(
        args.output_json, checkpoint=args.checkpoint, model_dir=args.model, split=args.split,
        shuffle_expressions=args.shuffle_expressions, seed=args.seed, data_root=args.data_root,
        max_samples=args.max_samples, batch_size=args.batch_size, device=args.device,
        gallery=None if no_gallery else args.gallery, write_gallery=not no_gallery,
    )  # fmt: skip
    if result.output_json is None:  # another process of a torchrun job: the first one reports
        return 0
    summary = ", ".join(f"{k} {v:.4f}" for k, v in result.record.items() if isinstance(v, float))
    shuffled = " (shuffled expressions)" if args.shuffle_expressions else ""
    print(f"{result.split}{shuffled}: {summary}, num_samples {result.record['num_samples']} -> {result.output_json}")
    if result.gallery is not None:
        print(f"gallery -> {result.gallery}")
    return 0
