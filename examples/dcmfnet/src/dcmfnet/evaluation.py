"""Evaluate a checkpoint: overall IoU, mean IoU and Prec@0.5…0.9 over every expression of a split.

Usage::

    dcmfnet evaluate --checkpoint runs/cpu/best.pt --output-json runs/cpu/val.json
    dcmfnet evaluate --model model --output-json val.json     # a folder written by `dcmfnet export`
    dcmfnet evaluate --checkpoint runs/cpu/best.pt --shuffle-expressions \\
        --output-json runs/cpu/val_shuffled.json

The model is rebuilt from the config stored in the checkpoint (or the exported folder, whose
``config.json`` keeps the run's data section). Predictions are resized to each
image's original size and scored there (SPEC §3). ``--shuffle-expressions`` gives every sample
another sample's expression: the drop in IoU measures how much the model reads the language.
A gallery PNG of predictions is written beside the JSON. Works under ``torchrun`` too: each rank
scores a share of the split and the counts are merged, every sample once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dcmfnet import distributed
from dcmfnet.checkpoint import load_checkpoint
from dcmfnet.command_line import InputError, run_command
from dcmfnet.config import build_model
from dcmfnet.data.base import ReferringDataset, ShuffledExpressions, collate_referring
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.metrics import ReferringMetrics, masks_from_logits
from dcmfnet.model import DCMFNet
from dcmfnet.precision import autocast
from dcmfnet.train_config import RunConfig, run_config_from_dict
from dcmfnet.visualize import save_gallery

__all__ = [
    "add_model_arguments",
    "evaluate_model",
    "load_model_from_checkpoint",
    "load_model_from_folder",
    "main",
    "predict_masks",
    "save_prediction_gallery",
]


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def predict_masks(
    model: nn.Module,
    images: torch.Tensor,
    expressions: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    *,
    max_tokens: int,
    precision: str = "fp32",
) -> list[torch.Tensor]:
    """Masks at the given original sizes for a batch of images and expressions (model in eval mode)."""
    for expression in expressions:
        if not expression.strip():
            raise ValueError("an expression is empty; the model needs text to tell which object is meant")
    device = next(model.parameters()).device
    text = {key: value.to(device) for key, value in _unwrap(model).tokenize(list(expressions), max_tokens).items()}
    with autocast(device, precision):
        logits = model(images.to(device), text)
    return [mask.cpu() for mask in masks_from_logits(logits.float(), sizes)]


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset[dict[str, Any]],
    *,
    max_tokens: int,
    batch_size: int = 16,
    precision: str = "fp32",
    num_workers: int = 0,
    progress: bool = False,
) -> ReferringMetrics:
    """Score ``model`` on every sample of ``dataset`` (this rank's share under torchrun), merged over ranks.

    Returns:
        the synchronised :class:`~dcmfnet.metrics.ReferringMetrics` (call ``.compute()``).
    """
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    shard = list(range(rank, len(dataset), world))  # no padding: every sample on exactly one rank
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=shard,
        collate_fn=collate_referring,
        num_workers=num_workers,
        generator=torch.Generator(),  # leaves the global RNG alone (training resumes exactly)
    )
    was_training = model.training
    model.eval()
    metrics = ReferringMetrics()
    batches: Any = loader
    if progress and rank == 0:
        from tqdm import tqdm

        batches = tqdm(loader, desc="evaluate", unit="batch", dynamic_ncols=True)
    for batch in batches:
        sizes = [tuple(mask.shape) for mask in batch.original_masks]
        predictions = predict_masks(
            model, batch.images, batch.expressions, sizes, max_tokens=max_tokens, precision=precision
        )
        metrics.update(predictions, batch.original_masks, batch.indices)
    model.train(was_training)
    return metrics.synchronize()


def save_prediction_gallery(
    path: str | Path,
    model: nn.Module,
    dataset: ReferringDataset | ShuffledExpressions,
    *,
    max_tokens: int,
    count: int = 8,
    precision: str = "fp32",
) -> Path:
    """A gallery PNG (image, expression, ground truth, prediction) of the first ``count`` samples."""
    count = min(count, len(dataset))
    items = [dataset[i] for i in range(count)]
    raws = [dataset.raw(i) for i in range(count)]
    was_training = model.training
    model.eval()
    predictions = predict_masks(
        model,
        torch.stack([item["image"] for item in items]),
        [item["expression"] for item in items],
        [tuple(item["original_mask"].shape) for item in items],
        max_tokens=max_tokens,
        precision=precision,
    )
    model.train(was_training)
    metrics = ReferringMetrics()
    metrics.update(predictions, [item["original_mask"] for item in items], list(range(count)))
    ious = metrics.per_sample_iou()
    return save_gallery(
        path,
        [raw.image for raw in raws],
        [item["expression"] for item in items],
        [raw.mask for raw in raws],
        [prediction.numpy().astype(bool) for prediction in predictions],
        ious=[ious[i] for i in range(count)],
    )


def load_model_from_checkpoint(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Rebuild the model from the config stored in a checkpoint and load its weights (eval mode).

    The backbone is built without the run's pretrained weights file (``backbone_weights``): the
    checkpoint's weights replace them anyway, so that file need not exist where evaluation runs.
    (A ``bert`` text encoder is still loaded from ``text_encoder_path``, as its architecture and
    tokenizer come from there.)

    Returns:
        ``(model, run config, checkpoint dict)``.
    """
    state = load_checkpoint(path, map_location="cpu")
    cfg = run_config_from_dict(state["config"], source=f"checkpoint {path}")
    model = build_model(dataclasses.replace(cfg.model, backbone_weights=None))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return model, cfg, state


def load_model_from_folder(
    path: str | Path, *, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """Load an exported model folder with the training run's config kept in its ``config.json``.

    Returns:
        ``(model, run config, {})``, like :func:`load_model_from_checkpoint`.

    Raises:
        InputError: The folder keeps no run config (saved without one): evaluate its checkpoint instead.
    """
    model = DCMFNet.from_pretrained(path, map_location=device)
    config = model.pretrained_config
    if config is None or config.run is None:
        raise InputError(f"{path} keeps no training run config, so its dataset is unknown; evaluate its checkpoint")
    cfg = run_config_from_dict({**config.run, "model": config.model.to_dict()}, source=f"{path}/config.json")
    return model, cfg, {}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model DIR`` or ``--checkpoint FILE`` (exactly one), for the commands that load a model."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="exported model folder (written by `dcmfnet export`)")
    source.add_argument("--checkpoint", default=None, help="training checkpoint file (best.pt or last.pt)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` subcommand's arguments."""
    add_model_arguments(parser)
    parser.add_argument("--split", default=None, help="split to score (default: the run's validation split)")
    parser.add_argument("--shuffle-expressions", action="store_true", help="give each sample another's expression")
    parser.add_argument("--output-json", required=True, help="where to write the metrics")
    parser.add_argument("--gallery", default=None, help="gallery PNG (default: beside the JSON; 'none' to skip)")
    parser.add_argument("--data-root", default=None, help="override the dataset root stored in the checkpoint")
    parser.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-samples", type=int, default=None, help="score only the first samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the expression shuffle")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.evaluate``: the same as ``dcmfnet evaluate``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet evaluate")


def run(args: argparse.Namespace) -> int:
    """Evaluate with the parsed arguments; returns the exit status."""
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
            output.parent.mkdir(parents=True, exist_ok=True)
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


if __name__ == "__main__":
    sys.exit(main())
