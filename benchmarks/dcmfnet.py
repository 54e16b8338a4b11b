"""End-to-end DCMFNet cases: one training step and one inference forward.

A case whose config cannot be found, or a missing ``dcmfnet`` package, is an error
of that case (recorded, and the run exits 1), never a silent skip.

A case may name a row of one of DCMFNet's ablation tables (``dcmfnet.ablations.tables``): its model is then the
config's with that row's switches on top (the full model's, :data:`~dcmfnet.ablations.tables.FULL_MODEL`, updated
by the row's changes), as ``dcmfnet ablate`` trains it (docs/guides/ablations.rst).

Uses the example package's public interface only (``dcmfnet.train_config.load_model_section``,
``dcmfnet.config.build_model``; ``dcmfnet.ablations.tables``; ``DCMFNet.forward(images, text)``,
``model.tokenize`` and ``model.parameter_groups``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from benchmarks.workload import Precision, Workload, autocast_context

if TYPE_CHECKING:
    from dcmfnet.ablations.tables import Row, TableId
    from dcmfnet.config import ModelConfig


def table_row(table: TableId, key: str) -> Row:
    """The row ``key`` of the ablation table ``table`` (``dcmfnet.ablations.tables.TABLES``).

    Raises:
        KeyError: No such table.
        ValueError: The table has no row ``key`` (the message lists its rows).
    """
    from dcmfnet.ablations.tables import TABLES

    rows = TABLES[table].rows
    for row in rows:
        if row.key == key:
            return row
    raise ValueError(f"table {table} has no row {key!r}; its rows: {', '.join(TABLES[table].keys())}")


def model_config(case: DCMFNetCase) -> ModelConfig:
    """The model of a case: its config's (a model config, or a run config's ``model`` section) with its row's switches.

    A row's switches are :data:`~dcmfnet.ablations.tables.LAYER_SWITCHES` updated by ``Row.switches()`` (the full
    model's switches updated by the row's changes), set with :func:`dataclasses.replace` (which validates them).

    Raises:
        FileNotFoundError: The config is neither a file nor a shipped config.
        ValueError: The case names a row that its table does not have, or a switch is invalid.
    """
    from dcmfnet.train_config import load_model_section

    cfg = load_model_section(case.config)
    if case.table is None:
        return cfg
    from dcmfnet.ablations.tables import LAYER_SWITCHES

    return dataclasses.replace(cfg, **{**LAYER_SWITCHES, **table_row(case.table, case.row).switches()})


def run_config_sizes(config: str) -> tuple[int, int, int]:
    """``(batch, image size, tokens per expression)`` of a run config, as its training steps use them.

    The tokens are the data section's expression length (``dcmfnet.data.build.max_tokens_for``: 16 for the
    built-in benchmark kinds), the length the trainer tokenizes to.

    Raises:
        FileNotFoundError: The config is neither a file nor a shipped config.
    """
    from dcmfnet.data.build import max_tokens_for
    from dcmfnet.train_config import load_run_config

    cfg = load_run_config(config)
    return cfg.train.batch_size, cfg.data.image_size, max_tokens_for(cfg.data)


def _build(config: str | ModelConfig, device: torch.device) -> tuple[Any, str]:
    """The model of ``config`` (a config's name or path, read by ``load_model_section``, or a built config) and a
    note on its text encoder.

    When the configured text encoder cannot be loaded (the paper configs name
    ``bert-base-uncased``, and nothing is downloaded here), a randomly initialised
    BERT-base built from ``transformers.BertConfig()`` takes its place: same shapes,
    same cost.
    """
    from dcmfnet.config import build_model
    from dcmfnet.train_config import load_model_section

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights at run time
    cfg = load_model_section(config) if isinstance(config, str) else config
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
    model, text_note = _build(model_config(case), device)
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
        table: with ``row``, an ablation table (``dcmfnet.ablations.tables.TABLES``, e.g. ``"P"``) whose row
            ``row`` switches the config's model (:func:`model_config`); ``None``: the config's own model.
        row: the key of that row (``"peer-film"``); part of the case's name.
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
    table: TableId | None = None
    row: str = ""

    @property
    def name(self) -> str:
        stem = self.config.rsplit("/", 1)[-1].removesuffix(".yaml")
        model = f"{stem}/{self.row}" if self.table is not None else stem
        return f"dcmfnet/{model}/{self.pass_}/{self.precision}/b{self.batch}/{self.image_size}px"

    def fields(self) -> dict[str, Any]:
        """The case's settings for its record; a table row's case adds the row (label, changes, full model or not).

        Raises:
            KeyError, ValueError: The case names a table or a row that does not exist (:func:`table_row`).
        """
        fields: dict[str, Any] = {
            "config": self.config,
            "pass": self.pass_,
            "precision": self.precision,
            "batch": self.batch,
            "image_size": self.image_size,
            "compiled": self.compiled,
            "channels_last": self.channels_last,
        }
        if self.table is not None:
            row = table_row(self.table, self.row)
            fields.update(
                table=self.table,
                row=row.key,
                row_label=row.paper_row,
                row_changes=row.describe(),
                full_model=row.is_full,
                text_length=self.text_length,
            )
        return fields

    def build(self, device: torch.device) -> Workload:
        return build_dcmfnet_step(self, device)
