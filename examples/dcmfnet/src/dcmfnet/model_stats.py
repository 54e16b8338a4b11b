"""Parameter counts, FLOPs and CPU step time of the DCMFNet configs.

Usage::

    dcmfnet stats                 # paper configs at 480x480 and the CPU config
    dcmfnet stats --skip-paper    # CPU config only

The paper models are built on the meta device (no memory, no weights) with a
randomly initialised BERT-base built from ``BertConfig()`` (nothing is
downloaded); their FLOPs are counted with ``torch.utils.flop_counter`` on meta
tensors, except BERT's, which are counted on the CPU because Hugging Face's
mask code reads tensor values. FLOPs count a multiply-add as 2 and cover
convolutions and matrix products (what ``FlopCounterMode`` counts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from dcmfnet.command_line import run_command
from dcmfnet.config import build_model, load_model_config
from dcmfnet.model import DCMFNet
from dcmfnet.text_encoders import HFTextEncoder, TextEncoder


class _ZeroSentence(TextEncoder):
    """Stand-in text encoder on the meta device: returns zeros ``(B, out_channels)``; its FLOPs are counted apart."""

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        self.encoder = encoder  # registered, so parameter counts include it
        self.out_channels = encoder.out_channels

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return input_ids.new_zeros((input_ids.shape[0], self.out_channels), dtype=torch.float32)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def forward_flops(model: nn.Module, *args: object) -> int:
    """FLOPs of one forward call ``model(*args)`` (no grad)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def paper_stats(config: str, *, size: int, tokens: int) -> dict[str, float]:
    """Parameters and forward FLOPs of a paper config with a random BERT-base, batch 1 at ``size x size``."""
    from transformers import BertConfig, BertModel

    cfg = load_model_config(config)
    # BERT-base on the CPU for its FLOPs, and a meta copy inside the meta model for the counts.
    torch.manual_seed(0)
    bert = HFTextEncoder(BertModel(BertConfig(), add_pooling_layer=False))
    ids = torch.randint(1000, 2000, (1, tokens))
    text_flops = forward_flops(bert, ids, torch.ones_like(ids))
    with torch.device("meta"):
        meta_bert = HFTextEncoder(BertModel(BertConfig(), add_pooling_layer=False))
    model = build_model(cfg, text_encoder=_ZeroSentence(meta_bert), device="meta")
    images = torch.empty(1, 3, size, size, device="meta")
    text = {"input_ids": ids.to("meta"), "attention_mask": torch.ones_like(ids, device="meta")}
    rest_flops = forward_flops(model, images, text)
    parts = {name: count_parameters(child) for name, child in model.named_children()}
    return {
        "params": count_parameters(model),
        "params_backbone": parts["backbone"],
        "params_text": parts["text_encoder"],
        "params_fusion_and_decoder": count_parameters(model) - parts["backbone"] - parts["text_encoder"],
        "gflops": (text_flops + rest_flops) / 1e9,
        "gflops_text": text_flops / 1e9,
    }


def cpu_step_time(
    model: DCMFNet, *, batch: int, size: int, tokens: int, steps: int, threads: int
) -> tuple[float, float, int]:
    """Median and minimum seconds of one forward+backward (training mode, BCE loss), and forward FLOPs."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    images = torch.randn(batch, 3, size, size)
    text = model.tokenize(["the small red circle on the left"] * batch, tokens)
    target = (torch.rand(batch, 1, size, size) > 0.5).float()
    model.train()
    flops = forward_flops(model, images, text)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        loss = nn.functional.binary_cross_entropy_with_logits(model(images, text), target)
        loss.backward()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    times = times[2:]  # warm-up
    return statistics.median(times), min(times), flops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stats`` subcommand's arguments."""
    parser.add_argument("--skip-paper", action="store_true", help="only the CPU config")
    parser.add_argument("--size", type=int, default=480, help="paper input size")
    parser.add_argument("--cpu-size", type=int, default=64, help="CPU config input size")
    parser.add_argument("--batch", type=int, default=8, help="CPU config batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed CPU steps")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.model_stats``: the same as ``dcmfnet stats``."""
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


if __name__ == "__main__":
    sys.exit(main())
