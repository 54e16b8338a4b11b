"""Evaluation: overall IoU, mean IoU and Prec@0.5…0.9 over every expression of a split.

Predictions are resized to each image's original size and scored there, as the paper's
benchmarks score them (§4.1; :mod:`dcmfnet.metrics`). :func:`evaluate_model` works under
``torchrun`` too: each rank scores a share of the split and the counts are merged, every sample
once. The ``dcmfnet evaluate`` command (:mod:`dcmfnet.commands.evaluate`) writes the JSON and
the gallery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcmfnet.data.base import ReferringDataset, ShuffledExpressions, collate_referring
from dcmfnet.errors import InputError
from dcmfnet.inference import predict_masks
from dcmfnet.metrics import ReferringMetrics
from dcmfnet.visualize import save_gallery

__all__ = ["evaluate_model", "save_prediction_gallery"]


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
