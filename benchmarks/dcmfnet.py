"""End-to-end DCMFNet cases: one training step and one inference forward.

A case whose config cannot be found, or a missing ``dcmfnet`` package, is an error
of that case (recorded, and the run exits 1), never a silent skip.

Uses the example package's public interface only (``dcmfnet.config``:
``ModelConfig`` and ``build_model``; ``DCMFNet.forward(images, text)``,
``model.tokenize`` and ``model.parameter_groups``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Literal

import torch
import torch.nn.functional as F

from benchmarks.workload import Precision, Workload, autocast_context


def _build(config: str, device: torch.device) -> tuple[Any, str]:
    """The model of ``config`` and a note on its text encoder.

    When the configured text encoder cannot be loaded (the paper configs name
    ``bert-base-uncased``, and nothing is downloaded here), a randomly initialised
    BERT-base built from ``transformers.BertConfig()`` takes its place: same shapes,
    same cost.
    """
    from dcmfnet.config import build_model, load_model_config

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights at run time
    cfg = load_model_config(config)
    try:
        return build_model(cfg).to(device), cfg.text_encoder
    except OSError:
        from transformers import BertConfig, BertModel

        from dcmfnet.text_encoders import HFTextEncoder

        bert = HFTextEncoder(BertModel(BertConfig(), add_pooling_layer=False), pooling=cfg.text_pooling)
        return build_model(cfg, text_encoder=bert).to(device), "random BERT-base (weights not available locally)"


def _tokens(model: Any, batch: int, length: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    try:
        tokens: dict[str, torch.Tensor] = model.tokenize(["the man on the left in a red shirt"] * batch, length)
        return tokens
    except RuntimeError:  # a text encoder without a tokenizer: random token ids, full mask
        ids = torch.randint(1000, 2000, (batch, length), generator=gen)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def build_dcmfnet_step(case: DCMFNetCase, device: torch.device) -> Workload:
    """The timed callable of a DCMFNet case (train: forward, BCE, backward, Adam step; infer: forward)."""
    from benchmarks.timing import wall_time

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, text_note = _build(case.config, device)
    if case.channels_last:
        model = model.to(memory_format=torch.channels_last)
    b, s = case.batch, case.image_size
    images = torch.randn(b, 3, s, s, generator=gen).to(device)
    if case.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    text = {k: v.to(device) for k, v in _tokens(model, b, case.text_length, gen).items()}
    target = (torch.rand(b, 1, s, s, generator=gen) > 0.5).float().to(device)
    shapes = {"images": list(images.shape), **{k: list(v.shape) for k, v in text.items()}}
    notes = f"text encoder: {text_note}"
    params = sum(p.numel() for p in model.parameters())
    run_model = torch.compile(model) if case.compiled else model

    if case.pass_ == "infer":
        model.eval()

        def step() -> Any:
            with torch.inference_mode(), autocast_context(device, case.precision):
                return run_model(images, text)

        def reference() -> Any:
            with torch.inference_mode(), autocast_context(device, case.precision):
                return model(images, text)
    else:
        model.train()
        groups = model.parameter_groups()
        optimizer = torch.optim.Adam([{"params": g["params"]} for g in groups], lr=1e-4)

        def train_step(m: Any) -> Any:
            with autocast_context(device, case.precision):
                logits = m(images, text)
                loss = F.binary_cross_entropy_with_logits(logits.float(), target)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def step() -> Any:
            return train_step(run_model)

        def reference() -> Any:
            return train_step(model)

    compile_seconds = wall_time(step, device) if case.compiled else None
    return Workload(step, reference, shapes, params, b, compile_seconds, notes)


@dataclasses.dataclass(frozen=True)
class DCMFNetCase:
    """One DCMFNet train step (forward, BCE loss, backward, Adam step) or inference forward.

    Attributes:
        config: name of a shipped config (``model_cpu``) or path of a YAML file with the model
            settings; a config that cannot be found makes :meth:`build` raise (the run records an error).
        batch: images per step.
        image_size: square input size.
        text_length: tokens per expression.
    """

    config: str
    pass_: Literal["train", "infer"]
    batch: int
    image_size: int
    text_length: int = 15
    precision: Precision = "fp32"
    compiled: bool = False
    channels_last: bool = False
    kind: str = "dcmfnet"

    @property
    def name(self) -> str:
        stem = self.config.rsplit("/", 1)[-1].removesuffix(".yaml")
        return f"dcmfnet/{stem}/{self.pass_}/{self.precision}/b{self.batch}/{self.image_size}px"

    def fields(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "pass": self.pass_,
            "precision": self.precision,
            "batch": self.batch,
            "image_size": self.image_size,
            "compiled": self.compiled,
            "channels_last": self.channels_last,
        }

    def build(self, device: torch.device) -> Workload:
        return build_dcmfnet_step(self, device)
