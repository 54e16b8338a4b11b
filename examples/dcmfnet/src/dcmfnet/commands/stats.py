"""Parameter counts, FLOPs, training memory and CPU step time of the DCMFNet configs.

Usage::

    dcmfnet stats                           # paper configs at 480x480 and the CPU config
    dcmfnet stats --config cpu_synthetic    # the model a run config trains (or a model config)
    dcmfnet stats --config my_run.yaml model.igf_layers=5
    dcmfnet stats --skip-paper              # CPU config only
    dcmfnet stats --memory                  # also the paper configs' training memory at batch 6 (a few minutes)

``--config NAME|FILE`` takes what ``dcmfnet train --config`` takes (a shipped name or a YAML file, a
run config or a model config, with ``model.key=value`` overrides) and reports that model alone: its
parameters split into backbone, text encoder and the fusion and decoder modules, its forward FLOPs,
and one training step's CPU time (``--steps 0`` skips the timing). A model with a BERT text encoder
is counted with a randomly initialised BERT-base (nothing is downloaded) and not timed.

Training memory (``--memory``): parameter, gradient and Adam-state bytes, and the activations
saved for backward by module, measured on the CPU in one training forward at ``--memory-batch``
(default 1) and ``--size``, then scaled linearly to ``--target-batch`` (default 6); see
:mod:`dcmfnet.model_stats` for what is counted and docs/guides/reproducing.rst for why.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dcmfnet.commands.base import require_positive, run_command
from dcmfnet.config import build_model
from dcmfnet.errors import InputError
from dcmfnet.model_stats import cpu_step_time, memory_table, paper_stats, parameter_split, training_memory
from dcmfnet.train_config import load_model_section

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stats`` subcommand's arguments; ``model.key=value`` overrides may follow ``--config``."""
    parser.add_argument(
        "--config", default=None, help="shipped config name or YAML file, run or model config (default: the "
        "paper configs and model_cpu)",
    )  # fmt: skip
    parser.add_argument("--skip-paper", action="store_true", help="only the CPU config")
    parser.add_argument("--size", type=int, default=480, help="paper input size")
    parser.add_argument(
        "--cpu-size", type=int, default=None, help="input size of the timed config (default: its model.image_size)"
    )
    parser.add_argument("--batch", type=int, default=8, help="batch size of the timed step")
    parser.add_argument("--steps", type=int, default=10, help="timed CPU steps (0: no timing)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--memory", action="store_true", help="training memory of the paper configs (slow)")
    parser.add_argument("--memory-batch", type=int, default=1, help="batch at which activations are measured")
    parser.add_argument("--target-batch", type=int, default=6, help="batch the memory report is scaled to")
    parser.add_argument("--memory-json", type=Path, default=None, help="also write the memory rows as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """The same as ``dcmfnet stats``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet stats")


def _split_text(stats: Mapping[str, float]) -> str:
    """``484.05M params (backbone 44.55M, 9%; ...)``: the parameter split with each part's share."""
    total = stats["params"]
    parts = [("backbone", "params_backbone"), ("text encoder", "params_text"),
             ("fusion+decoder", "params_fusion_and_decoder")]  # fmt: skip
    split = "; ".join(f"{name} {stats[key] / 1e6:.2f}M, {100 * stats[key] / total:.0f}%" for name, key in parts)
    return f"{total / 1e6:.2f}M params ({split})"


def run(args: argparse.Namespace) -> int:
    """Print the statistics; returns the exit status."""
    for option in ("--size", "--cpu-size", "--batch", "--threads", "--memory-batch", "--target-batch"):
        require_positive(option, getattr(args, option[2:].replace("-", "_")))
    if args.steps < 0:
        raise InputError(f"--steps must be at least 0, got {args.steps}")
    if args.overrides and args.config is None:
        raise InputError(f"config overrides ({' '.join(args.overrides)}) need --config NAME|FILE")
    if not args.skip_paper and args.config is None:
        for config in ("paper_resnet101.yaml", "paper_swin.yaml"):
            stats = paper_stats(config, size=args.size, tokens=15)
            print(
                f"{config}: {_split_text(stats)}; forward {stats['gflops']:.1f} GFLOPs at "
                f"1x3x{args.size}x{args.size} with 15 tokens (BERT-base {stats['gflops_text']:.2f})"
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

    _config_stats(args)
    return 0


def _config_stats(args: argparse.Namespace) -> None:
    """The one config's line: ``--config`` (with its overrides), else model_cpu."""
    name = args.config or "model_cpu.yaml"
    cfg = load_model_section(args.config or "model_cpu", args.overrides)
    size = args.cpu_size or cfg.image_size
    if cfg.text_encoder == "bert":
        stats = paper_stats(cfg, size=size, tokens=15)
        print(
            f"{name}: {_split_text(stats)} with a random BERT-base; forward {stats['gflops']:.1f} GFLOPs at "
            f"1x3x{size}x{size} with 15 tokens (BERT-base {stats['gflops_text']:.2f}); not timed on the CPU"
        )
        return
    torch.manual_seed(0)
    model = build_model(cfg)
    line = f"{name}: {_split_text(parameter_split(model))}"
    if args.steps == 0:
        print(line)
        return
    median, best, flops = cpu_step_time(
        model, batch=args.batch, size=size, tokens=8, steps=args.steps, threads=args.threads
    )
    print(
        f"{line}; forward {flops / 1e9:.3f} GFLOPs at {args.batch}x3x{size}x{size}; forward+backward "
        f"{median * 1e3:.0f} ms median ({best * 1e3:.0f} ms best) over {args.steps} steps on {args.threads} CPU threads"
    )
