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
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcmfnet import distributed
from dcmfnet.commands.base import (
    add_device_argument,
    add_model_arguments,
    require_parent_folder,
    require_positive,
    run_command,
)
from dcmfnet.data.base import ShuffledExpressions
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.evaluation import evaluate_model, save_prediction_gallery
from dcmfnet.loading import load_model_from_checkpoint, load_model_from_folder

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
    require_parent_folder("--gallery", None if args.gallery in (None, "none") else args.gallery)
    context = distributed.setup(device=args.device)
    try:
        load = load_model_from_folder if args.model is not None else load_model_from_checkpoint
        model, cfg, state = load(args.model or args.checkpoint, device=context.device)
        if args.data_root is not None:
            cfg.data.root = args.data_root
        cfg.data.max_val_samples = args.max_samples
        split = args.split or cfg.data.val_split
        dataset: Any = build_dataset(cfg.data, split, train=False)
        if args.shuffle_expressions:
            dataset = ShuffledExpressions(dataset, seed=args.seed)
        max_tokens = max_tokens_for(cfg.data)
        batch_size = args.batch_size or cfg.train.eval_batch_size or cfg.train.batch_size
        metrics = evaluate_model(
            model,
            dataset,
            max_tokens=max_tokens,
            batch_size=batch_size,
            precision=cfg.train.precision,
            progress=context.is_main,
        ).compute()
        result: dict[str, Any] = {
            **metrics,
            "split": split,
            "shuffle_expressions": args.shuffle_expressions,
            "checkpoint": args.checkpoint,
            "model": args.model,
            "epoch": state.get("epoch"),
            "step": state.get("step"),
            "resolution": "original image size",
        }
        if context.is_main:
            output = Path(args.output_json)
            output.write_text(json.dumps(result, indent=2) + "\n")
            summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
            print(
                f"{split}{' (shuffled expressions)' if args.shuffle_expressions else ''}: {summary}, "
                f"num_samples {metrics['num_samples']} -> {output}"
            )
            if args.gallery != "none":
                gallery = Path(args.gallery) if args.gallery else output.with_name(output.stem + "_gallery.png")
                save_prediction_gallery(
                    gallery, model, dataset, max_tokens=max_tokens, count=cfg.train.gallery_samples,
                    precision=cfg.train.precision,
                )  # fmt: skip
                print(f"gallery -> {gallery}")
    finally:
        distributed.cleanup()
    return 0
