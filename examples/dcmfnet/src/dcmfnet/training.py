"""The training loop of DCMFNet: one process or ``torchrun``; resumable; last and best checkpoints.

:func:`train` runs a :class:`~dcmfnet.train_config.RunConfig`; the ``dcmfnet train`` command
(:mod:`dcmfnet.commands.train`) parses the command line into one. The output folder receives
``last.pt`` (after every epoch, and on SIGINT/SIGTERM or when the time budget ends), ``best.pt``
(best validation overall IoU), ``config.yaml`` (the resolved config), ``metrics.jsonl`` and
``metrics.csv`` (one record per epoch), ``curves.png``, ``gallery.png`` and TensorBoard events
when TensorBoard is installed.

Training again into the same folder resumes from ``DIR/last.pt`` (``resume="never"`` refuses to
touch an existing run; ``resume=PATH`` resumes from another file). A checkpoint whose model, data
or optimizer config differs from the run's is refused with the list of differences, and so is one
written in the middle of an epoch by another number of processes.

A NaN or infinite loss or gradient stops the run before the optimizer step, with the step, the
batch's sample indices and what to try; no checkpoint is written then (``last.pt`` stays the last
good one) and :func:`train` raises :class:`NonFiniteError` (the command exits with status 1).
``train.skip_nonfinite=true`` skips such batches instead and logs how many (``skipped_batches``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from dcmfnet import distributed
from dcmfnet.checkpoint import (
    capture_rng_state,
    config_differences,
    load_checkpoint,
    remove_orphaned_temporaries,
    restore_rng_state,
    save_checkpoint,
)
from dcmfnet.config import build_model
from dcmfnet.data.base import ReferringBatch, ReferringDataset, collate_referring
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.errors import CheckpointError, ConfigError
from dcmfnet.evaluation import evaluate_model, save_prediction_gallery
from dcmfnet.logs import METRICS_FILE, append_json_line, read_metrics
from dcmfnet.model import DCMFNet
from dcmfnet.precision import autocast
from dcmfnet.train_config import OptimConfig, RunConfig, config_to_dict, run_config_from_dict
from dcmfnet.visualize import save_training_curves

__all__ = ["LearningRateSchedule", "NonFiniteError", "TrainState", "seed_everything", "segmentation_loss", "train"]

#: Config sections that must match between a checkpoint and the run resuming from it.
_RESUME_MUST_MATCH = ("model", "data.dataset", "data.image_size", "data.split_by", "data.max_tokens", "optim")
#: Keys inside those sections that may change on resume (they hold no state of the optimizer or schedule).
_RESUME_MAY_DIFFER = frozenset({"optim.grad_clip_norm"})


class NonFiniteError(RuntimeError):
    """Training met a NaN or infinite loss or gradient; the message names the step and the samples."""


class LearningRateSchedule:
    """Learning-rate factor: linear warm-up, then constant, poly or cosine decay to 0.

    Progress is ``step / total_steps``, or with ``by_time`` the elapsed share of the time budget
    (set :attr:`time_fraction` before each step).

    Args:
        cfg: the optimizer config (``schedule``, ``poly_power``, ``warmup_steps``, ``schedule_by``).
        total_steps: optimizer steps in the whole run.
    """

    def __init__(self, cfg: OptimConfig, *, total_steps: int) -> None:
        self.kind, self.power, self.warmup = cfg.schedule, cfg.poly_power, cfg.warmup_steps
        self.by_time = cfg.schedule_by == "time"
        self.total_steps = max(1, total_steps)
        self.time_fraction = 0.0

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        progress = self.time_fraction if self.by_time else step / self.total_steps
        progress = min(max(progress, 0.0), 1.0)
        if self.kind == "poly":
            decay = (1.0 - progress) ** self.power
        elif self.kind == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            decay = 1.0
        return warm * decay


class _SkipSampler(Sampler[int]):
    """Yields a sampler's indices after the first ``skip`` (to resume in the middle of an epoch)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        iterator = iter(self.sampler)
        for _ in range(self.skip):
            next(iterator, None)
        return iterator

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a second SIGINT interrupts at once)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal = number
        signal.signal(signal.SIGINT, signal.default_int_handler)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, *, dice_weight: float = 0.0) -> torch.Tensor:
    """Sigmoid binary cross-entropy on the logits (the paper's loss), plus an optional soft Dice term.

    Args:
        logits: ``(B, 1, H, W)``.
        masks: ``(B, 1, H, W)`` targets in {0, 1}.
        dice_weight: weight of ``1 - soft Dice`` (0: BCE only, as in the paper). The Dice term
            helps small objects on short CPU runs, where BCE alone first learns "all background".
    """
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, masks)
    if dice_weight > 0:
        probabilities = logits.sigmoid()
        intersection = (probabilities * masks).sum(dim=(1, 2, 3))
        total = probabilities.sum(dim=(1, 2, 3)) + masks.sum(dim=(1, 2, 3))
        loss = loss + dice_weight * (1.0 - (2.0 * intersection + 1.0) / (total + 1.0)).mean()
    return loss


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the trainer's order of draws starts here)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    learning_rates = {"backbone": cfg.lr_backbone, "rest": cfg.lr_rest}
    groups = [
        {**group, "lr": learning_rates[group["name"]]}
        for group in model.parameter_groups()  # type: ignore[operator]
        if group["params"]
    ]
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(groups, weight_decay=cfg.weight_decay)


def _write_logs(output_dir: Path, record: dict[str, Any], writer: Any) -> None:
    append_json_line(output_dir / METRICS_FILE, record)
    records = read_metrics(output_dir)
    keys = list(dict.fromkeys(key for r in records for key in r))
    with (output_dir / "metrics.csv").open("w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=keys)
        table.writeheader()
        table.writerows(records)
    if writer is not None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                writer.add_scalar(key.replace("@", "_at_"), value, record["step"])
        writer.flush()


def _tensorboard_writer(output_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))


def _resume_state(output_dir: Path, resume: str, cfg: RunConfig, *, world_size: int = 1) -> dict[str, Any] | None:
    path = output_dir / "last.pt" if resume in ("auto", "never") else Path(resume)
    if not path.exists():
        if resume not in ("auto", "never"):
            raise CheckpointError(f"--resume {resume}: no such checkpoint")
        return None
    if resume == "never":
        raise CheckpointError(f"{path} exists; resume it (--resume auto) or choose another --output-dir")
    state = load_checkpoint(path)
    current = config_to_dict(cfg)
    # Read back through the config schema: a setting added after the checkpoint was written takes its default,
    # which is what the code that wrote it did (the same as loading the model from it).
    stored_config = config_to_dict(run_config_from_dict(state["config"], source=f"checkpoint {path}"))
    differences: list[str] = []
    for key in _RESUME_MUST_MATCH:
        section, _, field = key.partition(".")
        expected = current[section] if not field else current[section][field]
        stored = stored_config.get(section, {})
        found = stored if not field else stored.get(field)
        differences.extend(
            difference
            for difference in config_differences(expected, found, prefix=key)
            if difference.partition(":")[0] not in _RESUME_MAY_DIFFER
        )
    if differences:
        raise CheckpointError(
            f"checkpoint {path} was written by a run with another config; differences (this run != checkpoint):\n  "
            + "\n  ".join(differences)
            + "\nuse another --output-dir for a new run"
        )
    stored_world_size = int(state.get("world_size", len(state["rng"])))
    if stored_world_size != world_size and state["epoch_batches"] > 0:
        raise CheckpointError(
            f"checkpoint {path} was saved {state['epoch_batches']} batches into an epoch by {stored_world_size} "
            f"process(es); resume it with {stored_world_size}, not {world_size} (the epoch's split of the data "
            "across processes would change)"
        )
    if world_size > len(state["rng"]):
        raise CheckpointError(
            f"checkpoint {path} holds the RNG states of {len(state['rng'])} process(es); it cannot resume "
            f"{world_size} exactly; resume it with at most {len(state['rng'])} or start a new run"
        )
    return state


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint restores besides the module states and RNGs.

    Attributes:
        epoch: epochs completed.
        step: optimizer steps taken.
        epoch_batches: batches of the current epoch trained on.
        train_seconds: training time so far (validation not counted).
        best_metric: the best validation overall IoU, ``None`` before the first validation.
        loss_sum: the current epoch's training loss summed on the device (no host sync per batch).
        loss_count: the batches in ``loss_sum``.
        skipped_batches: batches skipped for a non-finite loss or gradient (``train.skip_nonfinite``).
    """

    epoch: int = 0
    step: int = 0
    epoch_batches: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    loss_count: int = 0
    skipped_batches: int = 0

    def state_dict(self) -> dict[str, Any]:
        """The plain values a checkpoint stores (one host sync, for the epoch's loss)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_batches": self.epoch_batches,
            "train_seconds": self.train_seconds,
            "best_metric": self.best_metric,
            "epoch_loss": (self.loss_sum.item(), self.loss_count),
            "skipped_batches": self.skipped_batches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.epoch, self.step, self.epoch_batches = state["epoch"], state["step"], state["epoch_batches"]
        self.train_seconds, self.best_metric = state["train_seconds"], state["best_metric"]
        loss_sum, self.loss_count = state.get("epoch_loss", (0.0, 0))
        self.loss_sum.fill_(loss_sum)
        self.skipped_batches = state.get("skipped_batches", 0)

    def mean_loss(self) -> float:
        """The current epoch's mean training loss (NaN before its first batch)."""
        return self.loss_sum.item() / self.loss_count if self.loss_count else float("nan")


@dataclass
class _Run:
    """Everything one training run works with, built once by :func:`_build_run`."""

    cfg: RunConfig
    context: distributed.DistributedContext
    output_dir: Path
    model: DCMFNet
    trained: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    schedule: LearningRateSchedule
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_set: ReferringDataset
    val_set: ReferringDataset
    sampler: DistributedSampler[Any]
    max_tokens: int
    steps_per_epoch: int
    total_steps: int
    stop: _StopRequest
    state: TrainState
    writer: Any = None

    @property
    def batches_per_epoch(self) -> int:
        """Batches an epoch trains on: trailing ones that would not end in an optimizer step are left out."""
        return self.steps_per_epoch * self.cfg.train.grad_accum_steps


def _steps_per_epoch(cfg: RunConfig, sampler: DistributedSampler[Any]) -> int:
    batches = cfg.train.batch_size * cfg.train.grad_accum_steps
    if len(sampler) < batches:
        raise ConfigError(
            f"an epoch has {len(sampler)} samples per process, fewer than batch_size x grad_accum_steps = {batches}"
        )
    return len(sampler) // batches


def _build_run(cfg: RunConfig, output_dir: Path, context: distributed.DistributedContext, stop: _StopRequest) -> _Run:
    """Datasets, model, optimizer and schedule of a fresh run (seeded; nothing restored yet)."""
    seed_everything(cfg.train.seed + context.rank)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg.model).to(context.device)
    optimizer = _build_optimizer(model, cfg.optim)
    sampler: DistributedSampler[Any] = DistributedSampler(
        train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=cfg.train.seed, drop_last=True
    )
    steps_per_epoch = _steps_per_epoch(cfg, sampler)
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)
    schedule = LearningRateSchedule(cfg.optim, total_steps=total_steps)
    trained: nn.Module = model
    if context.distributed:
        ddp_ids = [context.device.index] if context.device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)
    return _Run(
        cfg=cfg, context=context, output_dir=output_dir, model=model, trained=trained, optimizer=optimizer,
        schedule=schedule, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule),
        scaler=torch.amp.GradScaler(context.device.type, enabled=cfg.train.precision == "fp16"),
        train_set=train_set, val_set=val_set, sampler=sampler, max_tokens=max_tokens_for(cfg.data),
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, stop=stop,
        state=TrainState(loss_sum=torch.zeros((), dtype=torch.float64, device=context.device)),
    )  # fmt: skip


def _checkpoint(run: _Run) -> dict[str, Any]:
    """The checkpoint dict (every rank takes part: the RNG states of all ranks are gathered)."""
    return {
        "config": config_to_dict(run.cfg),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        **run.state.state_dict(),
        "world_size": run.context.world_size,
        "rng": distributed.all_gather_object(capture_rng_state()),
    }


def _save(run: _Run, name: str) -> None:
    """Write ``name`` (``last.pt`` or ``best.pt``) in the output folder; rank 0 writes, every rank gathers."""
    payload = _checkpoint(run)
    if run.context.is_main:
        save_checkpoint(run.output_dir / name, payload)


def _restore(run: _Run, checkpoint: dict[str, Any]) -> None:
    """Continue from ``checkpoint`` (checked by :func:`_resume_state`)."""
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.schedule.total_steps = max(1, run.total_steps)  # this run's length wins over the stored one
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.state.load_state_dict(checkpoint)
    restore_rng_state(checkpoint["rng"][run.context.rank])  # _resume_state checked there is one per rank


def _epoch_loader(run: _Run) -> DataLoader[Any]:
    """This epoch's training batches, from where the epoch stands (the same order after a resume)."""
    cfg, state = run.cfg, run.state
    run.sampler.set_epoch(state.epoch)
    return DataLoader(
        run.train_set,
        batch_size=cfg.train.batch_size,
        sampler=_SkipSampler(run.sampler, state.epoch_batches * cfg.train.batch_size),
        collate_fn=collate_referring,
        num_workers=cfg.data.num_workers,
        drop_last=True,
        # its own generator: creating an iterator must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.train.seed + state.epoch),
    )


def _forward_backward(run: _Run, batch: ReferringBatch) -> torch.Tensor:
    """Accumulate one batch's gradients of the sigmoid BCE loss (paper §4.1); return its detached loss."""
    device, accumulation = run.context.device, run.cfg.train.grad_accum_steps
    images, masks = batch.images.to(device), batch.masks.to(device)
    text = {k: v.to(device) for k, v in run.model.tokenize(batch.expressions, run.max_tokens).items()}
    boundary = (run.state.epoch_batches + 1) % accumulation == 0
    # gradients are all-reduced across processes only on the batch that ends an optimizer step
    sync: AbstractContextManager[Any] = nullcontext()
    if isinstance(run.trained, nn.parallel.DistributedDataParallel) and not boundary:
        sync = run.trained.no_sync()
    with sync:
        with autocast(device, run.cfg.train.precision):
            logits = run.trained(images, text)
        loss = segmentation_loss(logits, masks, dice_weight=run.cfg.train.dice_weight)
        run.scaler.scale(loss / accumulation).backward()
    return loss.detach()


def _optimizer_step(run: _Run, window_loss: torch.Tensor, indices: list[torch.Tensor]) -> bool:
    """Clip (if configured), check, step and clear the accumulated gradients; False if the step was skipped.

    Args:
        window_loss: the summed losses of the batches accumulated into this step (on the device).
        indices: their training-set sample indices, one tensor per batch.

    Raises:
        NonFiniteError: the loss or the gradient is NaN or infinite (unless ``train.skip_nonfinite``).
    """
    clip, scaler = run.cfg.optim.grad_clip_norm, run.scaler
    norm = None
    if clip > 0:
        scaler.unscale_(run.optimizer)
        norm = nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    elif not scaler.is_enabled():
        norm = nn.utils.get_total_norm([p.grad for p in run.model.parameters() if p.grad is not None])
    if scaler.is_enabled():
        norm = None  # fp16: the grad scaler skips steps with an infinite gradient and lowers its scale
    bad = ~torch.isfinite(window_loss) if norm is None else ~(torch.isfinite(window_loss) & torch.isfinite(norm))
    if distributed.all_reduce_flag(bad, device=run.context.device):  # one host sync per optimizer step
        _skip_nonfinite(run, window_loss, indices)
        return False
    scaler.step(run.optimizer)
    scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return True


def _skip_nonfinite(run: _Run, window_loss: torch.Tensor, indices: list[torch.Tensor]) -> None:
    """Stop the run on a non-finite loss or gradient, or with ``train.skip_nonfinite`` drop the step."""
    state, cfg = run.state, run.cfg
    what = "loss" if not torch.isfinite(window_loss) else "gradient"
    where = (
        f"non-finite {what} at optimizer step {state.step + 1} (epoch {state.epoch + 1}, batch "
        f"{state.epoch_batches} of the epoch), training samples {torch.cat(indices).tolist()}"
    )
    if not cfg.train.skip_nonfinite:
        last = run.output_dir / "last.pt"
        kept = f"{last} is the last good checkpoint" if last.exists() else "no checkpoint was written"
        raise NonFiniteError(
            f"{where}; stopped before the step, nothing saved: {kept}. "
            "Try a lower learning rate (optim.lr_rest, optim.lr_backbone), fp32 "
            "(train.precision=fp32) or gradient clipping (optim.grad_clip_norm); train.skip_nonfinite=true skips "
            "such batches"
        )
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler.is_enabled():
        run.scaler.update(run.scaler.get_scale())  # clears the scaler's per-step record, keeps its scale
    state.skipped_batches += cfg.train.grad_accum_steps
    if run.context.is_main:
        print(f"{where}: skipped ({state.skipped_batches} batches skipped so far)")


def _advance_schedule(run: _Run) -> None:
    """Count the step and move the learning rate on (by step, or by the elapsed share of the time budget)."""
    run.state.step += 1
    run.schedule.time_fraction = run.state.train_seconds / _budget_seconds(run.cfg)
    run.scheduler.step()


def _budget_seconds(cfg: RunConfig) -> float:
    return cfg.train.max_train_minutes * 60 if cfg.train.max_train_minutes else math.inf


def _stop_reason(run: _Run) -> str | None:
    """Why training stops after this step (``"signal"``, ``"max_steps"``, ``"time budget"``), agreed by all ranks."""
    cfg, state, device = run.cfg, run.state, run.context.device
    over_steps = cfg.train.max_steps is not None and state.step >= cfg.train.max_steps
    stopping = run.stop.signal is not None or over_steps or state.train_seconds >= _budget_seconds(cfg)
    if not distributed.all_reduce_flag(stopping, device=device):
        return None
    if distributed.all_reduce_flag(run.stop.signal is not None, device=device):
        return "signal"
    return "max_steps" if over_steps else "time budget"


_VALIDATE = "validate"  # not a stop: the epoch pauses for a scheduled validation (``train.eval_every_steps``)


def _validation_due(run: _Run) -> bool:
    every = run.cfg.train.eval_every_steps
    return every is not None and run.state.step % every == 0


def _train_one_epoch(run: _Run) -> str | None:
    """Train the rest of the current epoch; return why it stopped early, or ``None`` at its end."""
    state, accumulation = run.state, run.cfg.train.grad_accum_steps
    progress = _ProgressBar(run)
    window_loss = torch.zeros_like(state.loss_sum)  # the losses of the batches of one optimizer step
    window_indices: list[torch.Tensor] = []
    reason = None
    tick = time.perf_counter()
    for batch in itertools.islice(_epoch_loader(run), run.batches_per_epoch - state.epoch_batches):
        loss = _forward_backward(run, batch)
        state.epoch_batches += 1
        window_loss += loss
        window_indices.append(batch.indices)
        progress.add_loss(loss)
        if state.epoch_batches % accumulation:
            continue
        stepped = _optimizer_step(run, window_loss, window_indices)
        now = time.perf_counter()
        state.train_seconds += now - tick
        tick = now
        if stepped:
            state.loss_sum += window_loss
            state.loss_count += accumulation
            _advance_schedule(run)
        window_loss.zero_()
        window_indices.clear()
        progress.show(run)
        reason = _stop_reason(run)
        if reason:
            break
        if _validation_due(run):
            reason = _VALIDATE
            break
    progress.close()
    return reason


def _validate(run: _Run) -> dict[str, Any]:
    """Validation metrics; a new best overall IoU is saved as ``best.pt``."""
    cfg = run.cfg
    metrics = evaluate_model(
        run.model, run.val_set, max_tokens=run.max_tokens,
        batch_size=cfg.train.eval_batch_size or cfg.train.batch_size, precision=cfg.train.precision,
    ).compute()  # fmt: skip
    if run.state.best_metric is None or metrics["overall_iou"] > run.state.best_metric:
        run.state.best_metric = float(metrics["overall_iou"])
        _save(run, "best.pt")
    return {f"val_{key}": value for key, value in metrics.items()}


def _end_epoch(run: _Run, reason: str | None) -> tuple[dict[str, Any], str | None]:
    """After an epoch (or a stop or scheduled validation inside one): log record, validation, ``last.pt``;
    return the record and the reason to stop (``None`` to go on)."""
    cfg, state = run.cfg, run.state
    scheduled = reason == _VALIDATE
    if scheduled:
        reason = None
    epoch_done = state.epoch_batches >= run.batches_per_epoch
    if epoch_done:
        state.epoch, state.epoch_batches = state.epoch + 1, 0
        if state.epoch >= cfg.train.epochs and not reason:
            reason = "done"
    record: dict[str, Any] = {
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": state.mean_loss(),
        "train_seconds": round(state.train_seconds, 2),
        **{f"lr_{group['name']}": group["lr"] for group in run.optimizer.param_groups},
    }
    if cfg.train.skip_nonfinite:
        record["skipped_batches"] = state.skipped_batches
    if epoch_done:
        state.loss_sum.zero_()
        state.loss_count = 0
    if reason or scheduled or (epoch_done and state.epoch % cfg.train.eval_every_epochs == 0):
        record.update(_validate(run))
    _save(run, "last.pt")
    if run.context.is_main:
        _write_logs(run.output_dir, record, run.writer)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                          if not k.startswith("lr")}))  # fmt: skip
    return record, reason


def _stop_on_signal(run: _Run) -> dict[str, Any]:
    """Save ``last.pt`` where the run stands (before the epoch advances: resuming validates it) and stop."""
    _save(run, "last.pt")
    if run.context.is_main:
        name = signal.Signals(run.stop.signal).name if run.stop.signal else "signal"
        print(f"{name}: saved {run.output_dir / 'last.pt'} at step {run.state.step}; run the same command to resume")
    return {"stopped": "signal", "step": run.state.step, "epoch": run.state.epoch}


def _finish(run: _Run, reason: str) -> None:
    """Curves, prediction gallery and the closing line (rank 0); then wait for every rank."""
    if run.context.is_main:
        records = read_metrics(run.output_dir) if (run.output_dir / METRICS_FILE).exists() else []
        if records:
            save_training_curves(run.output_dir / "curves.png", records)
        save_prediction_gallery(
            run.output_dir / "gallery.png", run.model, run.val_set, max_tokens=run.max_tokens,
            count=run.cfg.train.gallery_samples, precision=run.cfg.train.precision,
        )  # fmt: skip
        print(
            f"finished ({reason}) after {run.state.train_seconds / 60:.1f} min of training, step {run.state.step}; "
            f"best val oIoU {run.state.best_metric}"
        )
    if run.writer is not None:
        run.writer.close()
    distributed.barrier()


def _announce(run: _Run) -> None:
    """Write the resolved config and print what is trained where (rank 0)."""
    if not run.context.is_main:
        return
    cfg, context = run.cfg, run.context
    OmegaConf.save(OmegaConf.structured(cfg), run.output_dir / "config.yaml")
    parameters = sum(p.numel() for p in run.model.parameters())
    print(
        f"DCMFNet ({cfg.model.backbone}, {parameters / 1e6:.2f}M parameters) on {context.device} "
        f"x{context.world_size}; {len(run.train_set)} train / {len(run.val_set)} val samples; "
        f"{run.steps_per_epoch} steps/epoch, {run.total_steps} steps"
    )
    seconds = cfg.train.reference_step_seconds
    if seconds is not None:
        where = cfg.train.reference_machine or "the machine this config was timed on"
        budget = "" if cfg.train.max_train_minutes is None else " (or fewer: the time budget may end the run first)"
        print(
            f"on {where} one step took {seconds:.2f} s: {run.total_steps} steps{budget} in about "
            f"{run.total_steps * seconds / 60:.1f} min of training, validation not counted; the bar's ETA is this "
            "machine's"
        )


def train(cfg: RunConfig, output_dir: str | Path, *, resume: str = "auto") -> dict[str, Any]:
    """Run the training loop described by ``cfg``; return the last epoch's log record.

    Args:
        cfg: the run config.
        output_dir: folder for checkpoints, logs and figures.
        resume: ``"auto"`` (continue from ``output_dir/last.pt`` if present), ``"never"`` (fail if
            it exists) or a checkpoint path.
    """
    context = distributed.setup(device=cfg.train.device)
    stop = _StopRequest()
    stop.install()
    try:
        return _train(cfg, Path(output_dir), resume, context, stop)
    finally:
        stop.restore()
        distributed.cleanup()


def _train(
    cfg: RunConfig, output_dir: Path, resume: str, context: distributed.DistributedContext, stop: _StopRequest
) -> dict[str, Any]:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        for orphan in remove_orphaned_temporaries(output_dir):
            print(f"removed {orphan}, left by a save that did not finish")
    checkpoint = _resume_state(output_dir, resume, cfg, world_size=context.world_size)
    run = _build_run(cfg, output_dir, context, stop)
    if checkpoint is not None:
        _restore(run, checkpoint)
        if context.is_main:
            print(f"resuming at epoch {run.state.epoch}, step {run.state.step}, "
                  f"batch {run.state.epoch_batches} of the epoch")  # fmt: skip
    _announce(run)
    run.writer = _tensorboard_writer(output_dir) if context.is_main else None
    state, max_steps = run.state, cfg.train.max_steps
    finished = state.epoch >= cfg.train.epochs or (max_steps is not None and state.step >= max_steps)
    reason = "done" if finished else None
    record: dict[str, Any] = {"epoch": state.epoch, "step": state.step}
    run.model.train()
    while reason is None:
        reason = _train_one_epoch(run)
        if reason == "signal":
            return _stop_on_signal(run)
        record, reason = _end_epoch(run, reason)
    _finish(run, reason)
    return {"stopped": reason, **record}


class _ProgressBar:
    """The tqdm bar of an epoch (rank 0, ``train.progress_bar``): recent loss, learning rate, images/s.

    Without a time budget the run's length is known, so the bar counts the run's optimizer steps and its
    ETA is the end of training (validation not counted); under a time budget it counts the epoch's batches.
    """

    def __init__(self, run: _Run) -> None:
        cfg, state = run.cfg, run.state
        self.bar: Any = None
        self.by_step = cfg.train.max_train_minutes is None
        if run.context.is_main and cfg.train.progress_bar:
            total, initial, unit = (
                (run.total_steps, state.step, "step") if self.by_step
                else (run.batches_per_epoch, state.epoch_batches, "batch")
            )  # fmt: skip
            epochs = -(-run.total_steps // run.steps_per_epoch) if self.by_step else cfg.train.epochs  # max_steps
            self.bar = tqdm(
                total=total, initial=initial, unit=unit, dynamic_ncols=True,
                desc=f"epoch {state.epoch + 1}/{epochs}", leave=True,
            )  # fmt: skip
        self.recent = torch.zeros(50, dtype=torch.float64, device=run.context.device)  # the last losses, on device
        self.count = 0

    def add_loss(self, loss: torch.Tensor) -> None:
        """Remember a batch's loss (no host sync)."""
        self.recent[self.count % len(self.recent)] = loss
        self.count += 1

    def show(self, run: _Run) -> None:
        """Advance by one optimizer step; refresh the numbers every ``train.log_every_steps`` steps."""
        if self.bar is None:
            return
        cfg, state = run.cfg, run.state
        if self.by_step:
            self.bar.update(state.step - self.bar.n)  # a skipped non-finite batch is no step
        else:
            self.bar.update(cfg.train.grad_accum_steps)
        if state.step % cfg.train.log_every_steps == 0 or state.epoch_batches == run.batches_per_epoch:
            batches_per_unit = cfg.train.grad_accum_steps if self.by_step else 1
            rate = (self.bar.format_dict.get("rate") or 0.0) * batches_per_unit
            self.bar.set_postfix(
                loss=f"{self.recent[: min(self.count, len(self.recent))].mean().item():.4f}",
                lr=f"{run.optimizer.param_groups[-1]['lr']:.2e}",
                img_s=f"{rate * cfg.train.batch_size * run.context.world_size:.1f}",
                refresh=False,
            )

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
