"""Train DCMFNet: one process or ``torchrun``; resumable; last and best checkpoints.

Usage::

    dcmfnet train --config cpu_synthetic --output-dir runs/cpu
    dcmfnet train --config FILE --output-dir DIR train.epochs=3 data.root=/data/refer
    torchrun --nproc_per_node 2 -m dcmfnet.train --config FILE --output-dir DIR

The output folder receives ``last.pt`` (after every epoch, and on SIGINT/SIGTERM or when the
time budget ends), ``best.pt`` (best validation overall IoU), ``config.yaml`` (the resolved
config), ``metrics.jsonl`` and ``metrics.csv`` (one record per epoch), ``curves.png``,
``gallery.png`` and TensorBoard events when TensorBoard is installed.

Running the same command again resumes from ``DIR/last.pt`` (``--resume never`` refuses to touch
an existing run; ``--resume PATH`` resumes from another file). A checkpoint whose model, data or
optimizer config differs from the run's is refused with the list of differences, and so is one
written in the middle of an epoch by another number of processes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from dcmfnet import distributed
from dcmfnet.checkpoint import (
    CheckpointError,
    capture_rng_state,
    config_differences,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from dcmfnet.command_line import run_command
from dcmfnet.config import build_model
from dcmfnet.data.base import collate_referring
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.evaluate import autocast, evaluate_model, save_prediction_gallery
from dcmfnet.train_config import OptimConfig, RunConfig, config_to_dict, load_run_config
from dcmfnet.visualize import save_training_curves

__all__ = ["LearningRateSchedule", "main", "segmentation_loss", "train"]

#: Config sections that must match between a checkpoint and the run resuming from it.
_RESUME_MUST_MATCH = ("model", "data.dataset", "data.image_size", "data.split_by", "data.max_tokens", "optim")
#: Keys inside those sections that may change on resume (they hold no state of the optimizer or schedule).
_RESUME_MAY_DIFFER = frozenset({"optim.grad_clip_norm"})


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


def _seed_everything(seed: int) -> None:
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
    with (output_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line]
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
    differences: list[str] = []
    for key in _RESUME_MUST_MATCH:
        section, _, field = key.partition(".")
        expected = current[section] if not field else current[section][field]
        stored = state["config"].get(section, {})
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


def train(cfg: RunConfig, output_dir: str | Path, *, resume: str = "auto") -> dict[str, Any]:
    """Run the training loop described by ``cfg``; return the last epoch's log record.

    Args:
        cfg: the run config.
        output_dir: folder for checkpoints, logs and figures.
        resume: ``"auto"`` (continue from ``output_dir/last.pt`` if present), ``"never"`` (fail if
            it exists) or a checkpoint path.
    """
    context = distributed.setup(device=cfg.train.device)
    output_dir = Path(output_dir)
    stop = _StopRequest()
    stop.install()
    try:
        return _train(cfg, output_dir, resume, context, stop)
    finally:
        stop.restore()
        distributed.cleanup()


def _train(
    cfg: RunConfig, output_dir: Path, resume: str, context: distributed.DistributedContext, stop: _StopRequest
) -> dict[str, Any]:
    device, is_main = context.device, context.is_main
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    state = _resume_state(output_dir, resume, cfg, world_size=context.world_size)
    _seed_everything(cfg.train.seed + context.rank)

    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    max_tokens = max_tokens_for(cfg.data)
    model = build_model(cfg.model).to(device)
    optimizer = _build_optimizer(model, cfg.optim)
    sampler = DistributedSampler(
        train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=cfg.train.seed, drop_last=True
    )
    accumulation = cfg.train.grad_accum_steps
    steps_per_epoch = len(sampler) // cfg.train.batch_size // accumulation
    # the batches an epoch trains on: trailing ones that would not end in an optimizer step are left out
    batches_per_epoch = steps_per_epoch * accumulation
    if steps_per_epoch == 0:
        raise ValueError(
            f"an epoch has {len(sampler)} samples per process, fewer than batch_size x grad_accum_steps = "
            f"{cfg.train.batch_size * accumulation}"
        )
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps is not None:
        total_steps = min(total_steps, cfg.train.max_steps)
    schedule = LearningRateSchedule(cfg.optim, total_steps=total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    budget_seconds = cfg.train.max_train_minutes * 60 if cfg.train.max_train_minutes else math.inf

    epoch, step, epoch_batches, train_seconds = 0, 0, 0, 0.0
    best: float | None = None
    # the epoch's training loss, summed on the device (no sync per batch), and its batch count
    loss_sum, loss_count = torch.zeros((), dtype=torch.float64, device=device), 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        schedule.total_steps = max(1, total_steps)  # this run's length wins over the stored one
        scaler.load_state_dict(state["scaler"])
        epoch, step, epoch_batches = state["epoch"], state["step"], state["epoch_batches"]
        train_seconds, best = state["train_seconds"], state["best_metric"]
        restore_rng_state(state["rng"][context.rank])  # _resume_state checked there is one per rank
        stored_sum, loss_count = state.get("epoch_loss", (0.0, 0))
        loss_sum.fill_(stored_sum)
        if is_main:
            print(f"resuming at epoch {epoch}, step {step}, batch {epoch_batches} of the epoch")
    if is_main:
        OmegaConf.save(OmegaConf.structured(cfg), output_dir / "config.yaml")
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"DCMFNet ({cfg.model.backbone}, {parameters / 1e6:.2f}M parameters) on {device} x{context.world_size}; "
            f"{len(train_set)} train / {len(val_set)} val samples; {steps_per_epoch} steps/epoch, {total_steps} steps"
        )
    if context.distributed:
        ddp_ids = [device.index] if device.type == "cuda" else None
        trained: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)
    else:
        trained = model
    writer = _tensorboard_writer(output_dir) if is_main else None

    def checkpoint_state() -> dict[str, Any]:
        rng = capture_rng_state()
        rngs = [rng]
        if context.distributed:
            rngs = [None] * context.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(rngs, rng)
        return {
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "epoch_batches": epoch_batches,
            "train_seconds": train_seconds,
            "best_metric": best,
            "epoch_loss": (loss_sum.item(), loss_count),
            "world_size": context.world_size,
            "rng": rngs,
        }

    def save(name: str, payload: dict[str, Any]) -> None:
        if is_main:
            save_checkpoint(output_dir / name, payload)

    record: dict[str, Any] = {"epoch": epoch, "step": step}
    finished = epoch >= cfg.train.epochs or (cfg.train.max_steps is not None and step >= cfg.train.max_steps)
    reason = "done" if finished else ""
    model.train()
    while not reason:
        sampler.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=cfg.train.batch_size,
            sampler=_SkipSampler(sampler, epoch_batches * cfg.train.batch_size),
            collate_fn=collate_referring,
            num_workers=cfg.data.num_workers,
            drop_last=True,
            # its own generator: creating an iterator must not draw from the global RNG (exact resume)
            generator=torch.Generator().manual_seed(cfg.train.seed + epoch),
        )
        progress: Any = None
        if is_main and cfg.train.progress_bar:
            from tqdm import tqdm

            progress = tqdm(
                total=batches_per_epoch, initial=epoch_batches, desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                unit="batch", dynamic_ncols=True, leave=True,
            )  # fmt: skip
        recent, recent_count = torch.zeros(50, dtype=loss_sum.dtype, device=device), 0  # the progress bar's losses
        tick = time.perf_counter()
        for batch in itertools.islice(loader, batches_per_epoch - epoch_batches):
            images, masks = batch.images.to(device), batch.masks.to(device)
            text = {k: v.to(device) for k, v in model.tokenize(batch.expressions, max_tokens).items()}
            boundary = (epoch_batches + 1) % accumulation == 0
            sync = trained.no_sync() if context.distributed and not boundary else nullcontext()
            with sync:
                with autocast(device, cfg.train.precision):
                    logits = trained(images, text)
                loss = segmentation_loss(logits, masks, dice_weight=cfg.train.dice_weight)
                scaler.scale(loss / accumulation).backward()
            epoch_batches += 1
            loss_sum += loss.detach()
            recent[recent_count % len(recent)] = loss.detach()
            loss_count, recent_count = loss_count + 1, recent_count + 1
            if boundary:
                if cfg.optim.grad_clip_norm > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                now = time.perf_counter()
                train_seconds += now - tick
                tick = now
                step += 1
                schedule.time_fraction = train_seconds / budget_seconds
                scheduler.step()
                if progress is not None:
                    progress.update(accumulation)
                    if step % cfg.train.log_every_steps == 0 or epoch_batches == batches_per_epoch:
                        rate = progress.format_dict.get("rate") or 0.0
                        progress.set_postfix(
                            loss=f"{recent[: min(recent_count, len(recent))].mean().item():.4f}",
                            lr=f"{optimizer.param_groups[-1]['lr']:.2e}",
                            img_s=f"{rate * cfg.train.batch_size * context.world_size:.1f}",
                            refresh=False,
                        )
                over_steps = cfg.train.max_steps is not None and step >= cfg.train.max_steps
                stopping = stop.signal is not None or over_steps or train_seconds >= budget_seconds
                if distributed.all_reduce_flag(stopping, device=device):
                    reason = (
                        "signal" if distributed.all_reduce_flag(stop.signal is not None, device=device)
                        else "max_steps" if over_steps else "time budget"
                    )  # fmt: skip
                    break
        if progress is not None:
            progress.close()
        epoch_done = epoch_batches >= batches_per_epoch
        if reason == "signal":
            # saved before the epoch advances, even after its last batch: resuming validates it
            save("last.pt", checkpoint_state())
            if is_main:
                name = signal.Signals(stop.signal).name if stop.signal else "signal"
                print(f"{name}: saved {output_dir / 'last.pt'} at step {step}; run the same command to resume")
            return {"stopped": "signal", "step": step, "epoch": epoch}
        if epoch_done:
            epoch, epoch_batches = epoch + 1, 0
            if epoch >= cfg.train.epochs and not reason:
                reason = "done"
        evaluate_now = bool(reason) or (epoch_done and epoch % cfg.train.eval_every_epochs == 0)
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss": loss_sum.item() / loss_count if loss_count else float("nan"),
            "train_seconds": round(train_seconds, 2),
            **{f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups},
        }
        if epoch_done:
            loss_sum.zero_()
            loss_count = 0
        if evaluate_now:
            metrics = evaluate_model(
                model, val_set, max_tokens=max_tokens, batch_size=cfg.train.eval_batch_size or cfg.train.batch_size,
                precision=cfg.train.precision,
            ).compute()  # fmt: skip
            record.update({f"val_{key}": value for key, value in metrics.items()})
            if best is None or metrics["overall_iou"] > best:
                best = float(metrics["overall_iou"])
                save("best.pt", checkpoint_state())
        payload = checkpoint_state()
        save("last.pt", payload)
        if is_main:
            _write_logs(output_dir, record, writer)
            shown = {
                k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items() if not k.startswith("lr")
            }
            print(json.dumps(shown))
    if is_main:
        records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line]
        if records:
            save_training_curves(output_dir / "curves.png", records)
        save_prediction_gallery(
            output_dir / "gallery.png", model, val_set, max_tokens=max_tokens, count=cfg.train.gallery_samples,
            precision=cfg.train.precision,
        )  # fmt: skip
        print(f"finished ({reason}) after {train_seconds / 60:.1f} min of training, step {step}; best val oIoU {best}")
    if writer is not None:
        writer.close()
    distributed.barrier()
    return {"stopped": reason, **record}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's arguments; ``key=value`` overrides may follow anywhere."""
    parser.add_argument("--config", required=True, help="shipped config name (cpu_synthetic) or YAML file")
    parser.add_argument("--output-dir", required=True, help="folder for checkpoints, logs and figures")
    parser.add_argument("--resume", default="auto", help="auto (default), never, or a checkpoint path")
    parser.epilog = "Config overrides: key=value anywhere on the line (e.g. train.epochs=3)."


def run(args: argparse.Namespace) -> int:
    """Train with the parsed arguments; returns the exit status."""
    cfg = load_run_config(args.config, args.overrides)
    train(cfg, args.output_dir, resume=args.resume)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.train``: the same as ``dcmfnet train``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet train")


if __name__ == "__main__":
    sys.exit(main())
