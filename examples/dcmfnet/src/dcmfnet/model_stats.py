"""Parameter counts, FLOPs, training memory and CPU step time of the DCMFNet configs (``dcmfnet stats``).

Training memory (:func:`training_memory`): parameter, gradient and Adam-state bytes, and the
activations saved for backward (``torch.autograd.graph.saved_tensors_hooks``, unique storages,
parameters excluded; see docs/guides/reproducing.rst, "The saved-activation measurement") by module,
measured on the CPU in one training forward at a small batch (default 1), then scaled linearly to
the target batch (default 6): every saved activation of these models is per sample (BatchNorm in
training mode keeps per-batch statistics, not per-sample tensors). Each is measured in fp32 and
under bf16 autocast, with the IGF step written as separate PyTorch operations (``fused=False``:
autograd saves every intermediate), the fused step (default), and the fused step with IGF
checkpointing. Under bf16 autocast the bf16 copies of the weights that autograd saves do not grow
with the batch: they are counted once, apart. The predicted training peak is parameters + gradients
+ Adam state + saved activations + saved weight copies + the largest transient, taken as two batch-6
copies of the largest saved storage (the gradient of a layer's output and of its input, alive
together in backward).

The paper models are built on the meta device (no memory, no weights) with a randomly initialised
BERT-base (:func:`~dcmfnet.text_encoders.random_bert_base`, nothing is downloaded); their FLOPs are
counted with ``torch.utils.flop_counter`` on meta tensors, except BERT's, which are counted on the
CPU because Hugging Face's mask code reads tensor values. FLOPs count a multiply-add as 2 and cover
convolutions and matrix products (what ``FlopCounterMode`` counts).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from dcmfnet.config import ModelConfig, build_model, load_model_config
from dcmfnet.model import DCMFNet
from dcmfnet.precision import autocast
from dcmfnet.text_encoders import TextEncoder, random_bert_base
from igf import IterativeGatedFusion
from igf.saved_activations import record_saved

GIB = 2**30
#: Usable memory assumed on a 24 GB card (RTX 3090: 24 GiB) after the CUDA context and allocator slack.
FITS_GIB = 22.0


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


def parameter_split(model: DCMFNet) -> dict[str, int]:
    """Parameters in all (``params``), of the backbone, the text encoder, and the rest: the fusion and decoder
    modules the paper adds (LGVE-1, LGVE-2, MLFF and the head)."""
    total = count_parameters(model)
    backbone, text = count_parameters(model.backbone), count_parameters(model.text_encoder)
    return {
        "params": total,
        "params_backbone": backbone,
        "params_text": text,
        "params_fusion_and_decoder": total - backbone - text,
    }


def paper_stats(config: str | ModelConfig, *, size: int, tokens: int) -> dict[str, float]:
    """Parameters and forward FLOPs of a config with a random BERT-base, batch 1 at ``size x size``.

    ``config`` is a model-config name or file, or a :class:`~dcmfnet.config.ModelConfig`; whatever its text
    encoder, BERT-base stands in (on the meta device: nothing is downloaded or allocated).
    """
    cfg = config if isinstance(config, ModelConfig) else load_model_config(config)
    # BERT-base on the CPU for its FLOPs, and a meta copy inside the meta model for the counts.
    bert = random_bert_base()
    ids = torch.randint(1000, 2000, (1, tokens))
    text_flops = forward_flops(bert, ids, torch.ones_like(ids))
    with torch.device("meta"):
        meta_bert = random_bert_base(seed=None)
    model = build_model(cfg, text_encoder=_ZeroSentence(meta_bert), device="meta")
    images = torch.empty(1, 3, size, size, device="meta")
    text = {"input_ids": ids.to("meta"), "attention_mask": torch.ones_like(ids, device="meta")}
    rest_flops = forward_flops(model, images, text)
    return {
        **parameter_split(model),
        "gflops": (text_flops + rest_flops) / 1e9,
        "gflops_text": text_flops / 1e9,
    }


def _random_bert_model(config: str) -> DCMFNet:
    """A paper config with a randomly initialised BERT-base (nothing is downloaded), on the CPU."""
    cfg = load_model_config(config)
    return build_model(cfg, text_encoder=random_bert_base(pooling=cfg.text_pooling))


def set_igf_options(model: nn.Module, *, fused: bool, checkpoint: bool) -> None:
    """Switch every IGF of ``model`` (and its fusion units and gates) to the fused step or the one written as
    separate PyTorch operations (``fused=False``), with or without checkpointing."""
    for module in model.modules():
        if isinstance(module, IterativeGatedFusion):
            module.checkpoint = checkpoint
        if hasattr(module, "fused"):
            module.fused = fused


def _module_labels(model: DCMFNet) -> list[tuple[str, nn.Module]]:
    """Top-level children by attribute name (the IGFs are ``fusion_*``); the backbone's stem and stages as one."""
    backbone = [("backbone", model.backbone.stem), *(("backbone", stage) for stage in model.backbone.stages)]
    return [*backbone, *((name, child) for name, child in model.named_children() if name != "backbone")]


def saved_activations(
    model: DCMFNet, *, batch: int, size: int, tokens: int, precision: str
) -> tuple[dict[str, int], int, int]:
    """Bytes saved for backward by one training forward: by top-level module, the largest storage, weight copies."""
    model.train()
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(1000, 2000, (batch, tokens), generator=torch.Generator().manual_seed(1))
    text = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with (
        torch.enable_grad(),
        autocast(torch.device("cpu"), precision),
        record_saved(model, _module_labels(model)) as saved,
    ):
        model(images, text)
    return saved.per_owner(), max(saved.by_storage.values(), default=0), sum(saved.weight_copies.values())


def training_memory(config: str, *, size: int, batch: int, target_batch: int, tokens: int) -> list[dict[str, Any]]:
    """One row per (precision, fused, checkpoint): bytes of parameters, gradients, Adam, activations, peak."""
    model = _random_bert_model(config)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    scale = target_batch / batch
    rows = []
    for precision in ("fp32", "bf16"):
        for fused, checkpoint in ((False, False), (True, False), (True, True)):
            set_igf_options(model, fused=fused, checkpoint=checkpoint)
            by_module, largest, copies = saved_activations(
                model, batch=batch, size=size, tokens=tokens, precision=precision
            )
            activations = sum(by_module.values()) * scale
            transient = 2 * largest * scale
            peak = params + trainable + 2 * trainable + activations + copies + transient
            rows.append(
                {
                    "config": config,
                    "precision": precision,
                    "fused": fused,
                    "checkpoint": checkpoint,
                    "params": params,
                    "grads": trainable,
                    "adam": 2 * trainable,
                    "activations": activations,
                    "by_module": {name: b * scale for name, b in by_module.items()},
                    "weight_copies": copies,
                    "transient": transient,
                    "peak": peak,
                }
            )
    return rows


def memory_table(rows: list[dict[str, Any]], size: int, target_batch: int, batch: int) -> list[str]:
    """The markdown lines of one config's :func:`training_memory` rows."""
    first = rows[0]
    lines = [
        f"{first['config']} at {target_batch}x3x{size}x{size} (activations measured at batch {batch}, scaled): "
        f"parameters {first['params'] / GIB:.2f} GiB, gradients {first['grads'] / GIB:.2f} GiB, "
        f"Adam state {first['adam'] / GIB:.2f} GiB",
        "| precision | IGF step | checkpoint | saved activations GiB | IGFs GiB | largest by module GiB | "
        "saved weight copies GiB | predicted peak GiB | fits 24 GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        igfs = sum(b for name, b in r["by_module"].items() if name.startswith("fusion_"))
        top = sorted(r["by_module"].items(), key=lambda item: -item[1])[:3]
        top_text = ", ".join(f"{name or 'other'} {b / GIB:.2f}" for name, b in top)
        lines.append(
            f"| {r['precision']} | {'fused' if r['fused'] else 'plain'} | {'yes' if r['checkpoint'] else 'no'} | "
            f"{r['activations'] / GIB:.2f} | {igfs / GIB:.2f} | {top_text} | {r['weight_copies'] / GIB:.2f} | "
            f"{r['peak'] / GIB:.2f} | "
            f"{'yes' if r['peak'] <= FITS_GIB * GIB else 'no'} |"
        )
    return lines


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
