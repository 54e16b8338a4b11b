"""Parameter counts, FLOPs, training memory and CPU step time of the DCMFNet configs.

Usage::

    dcmfnet stats                 # paper configs at 480x480 and the CPU config
    dcmfnet stats --skip-paper    # CPU config only
    dcmfnet stats --memory        # also the paper configs' training memory at batch 6 (a few minutes)

Training memory (``--memory``): parameter, gradient and Adam-state bytes, and the activations
saved for backward by module, measured on the CPU in one training forward at ``--memory-batch``
(default 1) and ``--size``, then scaled linearly to ``--target-batch`` (default 6); see
:mod:`dcmfnet.model_stats` for what is counted and docs/guides/reproducing.rst for why.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dcmfnet.commands.base import run_command
from dcmfnet.config import build_model, load_model_config
from dcmfnet.model_stats import count_parameters, cpu_step_time, memory_table, paper_stats, training_memory

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stats`` subcommand's arguments."""
    parser.add_argument("--skip-paper", action="store_true", help="only the CPU config")
    parser.add_argument("--size", type=int, default=480, help="paper input size")
    parser.add_argument("--cpu-size", type=int, default=64, help="CPU config input size")
    parser.add_argument("--batch", type=int, default=8, help="CPU config batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed CPU steps")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--memory", action="store_true", help="training memory of the paper configs (slow)")
    parser.add_argument("--memory-batch", type=int, default=1, help="batch at which activations are measured")
    parser.add_argument("--target-batch", type=int, default=6, help="batch the memory report is scaled to")
    parser.add_argument("--memory-json", type=Path, default=None, help="also write the memory rows as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """The same as ``dcmfnet stats``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet stats")


def run(args: argparse.Namespace) -> int:
    """Print the statistics; returns the exit status."""
    if not args.skip_paper:
        for config in ("paper_resnet101.yaml", "paper_swin.yaml"):
            stats = paper_stats(config, size=args.size, tokens=15)
            print(
                f"{config}: {stats['params'] / 1e6:.2f}M params (backbone {stats['params_backbone'] / 1e6:.2f}M, "
                f"BERT-base {stats['params_text'] / 1e6:.2f}M, fusion+decoder "
                f"{stats['params_fusion_and_decoder'] / 1e6:.2f}M); forward {stats['gflops']:.1f} GFLOPs at "
                f"1x3x{args.size}x{args.size} with 15 tokens (BERT {stats['gflops_text']:.2f})"
            )

    if args.memory:
        torch.set_num_threads(args.threads)
        rows: list[dict[str, Any]] = []
        for config in ("paper_resnet101", "paper_swin"):
            config_rows = training_memory(
                config, size=args.size, batch=args.memory_batch, target_batch=args.target_batch, tokens=15
            )
            print("\n".join(memory_table(config_rows, args.size, args.target_batch, args.memory_batch)), flush=True)
            rows += config_rows
        if args.memory_json is not None:
            args.memory_json.write_text(json.dumps(rows, indent=1))

    cfg = load_model_config("model_cpu")
    torch.manual_seed(0)
    model = build_model(cfg)
    median, best, flops = cpu_step_time(
        model, batch=args.batch, size=args.cpu_size, tokens=8, steps=args.steps, threads=args.threads
    )
    print(
        f"model_cpu.yaml: {count_parameters(model) / 1e6:.3f}M params; forward {flops / 1e9:.3f} GFLOPs at "
        f"{args.batch}x3x{args.cpu_size}x{args.cpu_size}; forward+backward {median * 1e3:.0f} ms median "
        f"({best * 1e3:.0f} ms best) over {args.steps} steps on {args.threads} CPU threads"
    )
    return 0
