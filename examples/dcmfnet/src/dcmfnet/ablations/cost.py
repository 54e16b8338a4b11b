"""What a run costs beside what it scores: saved activations per training step, and its learning curve.

The saved activations are the bytes of the tensors autograd keeps for backward during one training
forward at the run's batch size, image size and expression length (:func:`igf.saved_activations.saved_bytes`:
unique storages, parameters excluded; deterministic on a CPU). They measure what a fusion layer adds to a
training step's memory, as the benchmarks guide explains (docs/guides/benchmarks.rst).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcmfnet.data.build import max_tokens_for
from dcmfnet.logs import read_metrics
from dcmfnet.model import DCMFNet
from dcmfnet.train_config import RunConfig
from igf.saved_activations import saved_bytes

__all__ = ["learning_curve", "saved_activation_bytes"]

#: An expression of the built-in benchmark's longest form; padding fills the rest of the token budget.
_EXPRESSION = "the second small triangle from the left between the two red crosses"


def saved_activation_bytes(model: DCMFNet, cfg: RunConfig) -> int:
    """Bytes saved for backward by one training forward of ``model`` at ``cfg``'s batch and sizes.

    Args:
        model: The trained model (left in the mode it had; its weights do not change the count).
        cfg: The run's config: ``train.batch_size``, ``data.image_size`` and the expression length.

    Returns:
        The bytes of one step's saved activations.
    """
    batch, size = cfg.train.batch_size, cfg.data.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator)
    text = model.tokenize([_EXPRESSION] * batch, max_tokens_for(cfg.data))
    was_training = model.training
    model.train()
    try:
        return saved_bytes(model, lambda: model(images, text))
    finally:
        model.train(was_training)


def learning_curve(run_dir: str | Path) -> list[tuple[int, float]]:
    """``(step, val overall IoU)`` of every validation the trainer logged in ``run_dir/metrics.jsonl``."""
    return [(int(record["step"]), float(record["val_overall_iou"]))
            for record in read_metrics(run_dir) if "val_overall_iou" in record]  # fmt: skip
