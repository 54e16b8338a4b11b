"""A tiny run config for the trainer's tests: a few steps at 32x32 on a handful of synthetic scenes."""

from __future__ import annotations

from dcmfnet.configs import resolve_config
from dcmfnet.train_config import RunConfig, load_run_config

__all__ = ["CPU_CONFIG", "TINY", "tiny_config"]

CPU_CONFIG = resolve_config("cpu_synthetic")

#: A run of a few steps at 32x32 on 24 scenes (about a second per epoch).
TINY = [
    "data.image_size=32",
    "model.image_size=32",
    "model.backbone_options.widths=[8,8,8,8]",
    "model.igf_layers=2",
    "model.igf_heads=2",
    "data.synthetic.train_samples=24",
    "data.synthetic.val_samples=8",
    "train.batch_size=4",
    "train.eval_batch_size=8",
    "train.epochs=2",
    "train.max_train_minutes=null",
    "train.progress_bar=false",
    "train.gallery_samples=2",
    "optim.schedule_by=steps",
    "optim.schedule=poly",
    "optim.warmup_steps=2",
    "train.num_threads=1",
]


def tiny_config(*overrides: str) -> RunConfig:
    """The CPU config shrunk by :data:`TINY`, then ``overrides``."""
    return load_run_config(CPU_CONFIG, [*TINY, *overrides])
