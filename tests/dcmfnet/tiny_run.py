"""A tiny run config for the trainer's tests: a few steps at 32x32 on a handful of synthetic scenes."""

from __future__ import annotations

import runpy
import sys

import pytest
import torch

from dcmfnet.configs import resolve_config
from dcmfnet.train_config import RunConfig, load_run_config

__all__ = ["CPU_CONFIG", "TINY", "dcmfnet_command", "tiny_config"]

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


def dcmfnet_command(argv: list[str], capture: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``python -m dcmfnet ARGV`` in this process; return its exit code, stdout and stderr."""
    saved_argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = ["dcmfnet", *argv]
    try:
        runpy.run_module("dcmfnet", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(threads)
    captured = capture.readouterr()
    return code, captured.out, captured.err
