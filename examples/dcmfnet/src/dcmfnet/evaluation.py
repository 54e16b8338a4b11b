"""Evaluation: overall IoU, mean IoU and Prec@0.5…0.9 over every expression of a split.

Predictions are resized to each image's original size and scored there, as the paper's
benchmarks score them (§4.1; :mod:`dcmfnet.metrics`). :func:`evaluate_model` works under
``torchrun`` too: each rank scores a share of the split and the counts are merged, every sample
once. :func:`evaluate_to_json` is what ``dcmfnet evaluate`` runs (:mod:`dcmfnet.commands.evaluate`
keeps only the arguments and the printing): it loads a checkpoint or an exported folder, builds the
split from the run's data config, scores it, and writes the metrics JSON and a prediction gallery.
On the built-in benchmark the JSON also scores each expression form apart (:func:`expression_forms`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcmfnet import distributed
from dcmfnet.data.base import ReferringDataset, ShuffledExpressions, collate_referring
from dcmfnet.data.benchmark import BenchmarkReferring
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.errors import InputError
from dcmfnet.inference import predict_masks
from dcmfnet.loading import load_model_from_checkpoint, load_model_from_folder
from dcmfnet.metrics import ReferringMetrics
from dcmfnet.visualize import save_gallery

__all__ = ["EvaluationResult", "evaluate_model", "evaluate_to_json", "expression_forms", "save_prediction_gallery"]


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

    Raises:
        InputError: ``dataset`` is empty.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError("the split has no samples to score")
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
    raws = [dataset.raw(i) for i in range(count)]  # each image read once
    items = [dataset.to_item(raw, i) for i, raw in enumerate(raws)]
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


def expression_forms(dataset: Dataset[dict[str, Any]]) -> Mapping[int, str] | None:
    """The expression form of every sample (dataset index → form), where the dataset has forms.

    Only the built-in benchmark has them (``attributes``, ``position``, ``ordinal``, ``relation``,
    ``between``; :class:`~dcmfnet.data.benchmark.BenchmarkReferring`); read without rendering a scene.

    Returns:
        ``{index: form}`` for the ``len(dataset)`` samples, or ``None`` for any other dataset: the synthetic
        and REFER sets, and :class:`~dcmfnet.data.base.ShuffledExpressions`, whose samples carry another
        sample's expression.
    """
    if not isinstance(dataset, BenchmarkReferring):
        return None
    return {index: dataset.form(index) for index in range(len(dataset))}


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_to_json` scored and wrote.

    Attributes:
        record: The JSON written: the metrics, the split, the model's source, its epoch and step, and on the
            built-in benchmark ``by_form`` (form → the metrics of that form's samples).
        split: The split scored.
        output_json: The JSON file (``None`` on every process but the first under torchrun: it writes).
        gallery: The gallery PNG, or ``None`` when none was written.
    """

    record: dict[str, Any]
    split: str
    output_json: Path | None
    gallery: Path | None


def evaluate_to_json(
    output_json: str | Path,
    *,
    checkpoint: str | Path | None = None,
    model_dir: str | Path | None = None,
    split: str | None = None,
    shuffle_expressions: bool = False,
    seed: int = 0,
    data_root: str | None = None,
    max_samples: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    gallery: str | Path | None = None,
    write_gallery: bool = True,
) -> EvaluationResult:
    """Score a trained model on a split of its run's dataset; write the metrics JSON and a prediction gallery.

    The model is rebuilt from the config stored in the checkpoint (or the exported folder, whose
    ``config.json`` keeps the run's data section). Works under ``torchrun``: each process scores a share
    of the split, the counts are merged, and the first process writes. On the built-in benchmark (and not with
    ``shuffle_expressions``) the record's ``by_form`` holds, per expression form sorted by name, the same metrics
    over that form's samples (:meth:`~dcmfnet.metrics.ReferringMetrics.compute_by_group`); their
    ``num_samples`` add up to the split's.

    Args:
        output_json: Where the metrics go; its folder must exist.
        checkpoint: A training checkpoint (``best.pt``, ``last.pt``); or
        model_dir: a folder written by ``dcmfnet export`` (exactly one of the two).
        split: The split to score (default: the run's validation split).
        shuffle_expressions: Give every sample another sample's expression (seeded by ``seed``): the
            language control.
        data_root: Replaces the dataset root stored with the model.
        max_samples: Score only the first samples (at least 1).
        batch_size: Evaluation batch (default: the run's ``train.eval_batch_size``, else ``train.batch_size``).
        device: ``auto``, ``cpu`` or ``cuda``.
        gallery: The gallery PNG (default: beside the JSON, ``<stem>_gallery.png``); ``write_gallery=False``: none.

    Raises:
        InputError: Neither or both of ``checkpoint`` and ``model_dir``; ``max_samples`` or ``batch_size``
            under 1; an empty split.
        dcmfnet.errors.UserError: No such split (``SplitError``), a model that cannot be loaded
            (``CheckpointError``, ``PretrainedError``), a device that is not available (``DeviceError``).
    """
    _check_request(checkpoint, model_dir, max_samples=max_samples, batch_size=batch_size)
    context = distributed.setup(device=device)
    try:
        load = load_model_from_checkpoint if model_dir is None else load_model_from_folder
        model, cfg, state = load(checkpoint or model_dir, device=context.device)  # type: ignore[arg-type]
        if data_root is not None:
            cfg.data.root = data_root
        cfg.data.max_val_samples = max_samples
        split = split or cfg.data.val_split
        dataset: Any = build_dataset(cfg.data, split, train=False)
        if shuffle_expressions:
            dataset = ShuffledExpressions(dataset, seed=seed)
        max_tokens = max_tokens_for(cfg.data)
        scores = evaluate_model(
            model, dataset, max_tokens=max_tokens,
            batch_size=batch_size or cfg.train.eval_batch_size or cfg.train.batch_size,
            precision=cfg.train.precision, progress=context.is_main,
        )  # fmt: skip
        source = {"checkpoint": checkpoint and str(checkpoint), "model": model_dir and str(model_dir)}
        record: dict[str, Any] = {
            **scores.compute(), "split": split, "shuffle_expressions": shuffle_expressions, **source,
            "epoch": state.get("epoch"), "step": state.get("step"), "resolution": "original image size",
        }  # fmt: skip
        forms = expression_forms(dataset)  # None for the ShuffledExpressions wrapper
        if forms is not None:
            record["by_form"] = scores.compute_by_group(forms)
        if not context.is_main:
            return EvaluationResult(record, split, None, None)
        output = Path(output_json)
        output.write_text(json.dumps(record, indent=2) + "\n")
        if not write_gallery:
            return EvaluationResult(record, split, output, None)
        target = Path(gallery) if gallery is not None else output.with_name(output.stem + "_gallery.png")
        written = save_prediction_gallery(
            target, model, dataset, max_tokens=max_tokens, count=cfg.train.gallery_samples,
            precision=cfg.train.precision,
        )  # fmt: skip
        return EvaluationResult(record, split, output, written)
    finally:
        distributed.cleanup()


def _check_request(
    checkpoint: str | Path | None, model_dir: str | Path | None, *, max_samples: int | None, batch_size: int | None
) -> None:
    """Exactly one model source; counts of at least 1 (``None``: the default)."""
    if (checkpoint is None) == (model_dir is None):
        raise InputError(f"give exactly one of a checkpoint and a model folder, got {checkpoint!r} and {model_dir!r}")
    for name, value in (("max_samples", max_samples), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
