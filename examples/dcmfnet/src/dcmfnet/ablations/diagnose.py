"""Where a row reverses the paper: its training curves, gradients and output scales beside the full model's.

Before a reversal is reported, the variant is compared with the full model on

1. the recorded training loss (``runs/RUN_ID/metrics.jsonl``), logged step by step, seed by seed;
2. at initialization, on the trainer's first batch: the gradient L2 norm of each top-level module of
   Fig. 2, and of the parts of each IGF site (the projections, the fusion units of Eq. 1-2, the gates of
   Eq. 3, the output convolution of Eq. 4);
3. the scale (mean, std) of those modules' outputs, of every ``F_t`` and ``G_t`` of each IGF site, and of
   the logits.

:func:`diagnose` writes the three side by side as markdown (``dcmfnet ablate --diagnose ROW``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from dcmfnet.ablations.records import RUNS_FILE, read_records
from dcmfnet.ablations.runner import RunSpec
from dcmfnet.ablations.tables import FULL_KEY, rows_by_key
from dcmfnet.config import build_model
from dcmfnet.data.base import ReferringBatch, ReferringDataset, collate_referring
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.errors import InputError
from dcmfnet.logs import read_metrics
from dcmfnet.model import DCMFNet, DCMFNetOutput
from dcmfnet.precision import autocast
from dcmfnet.train_config import RunConfig, load_run_config
from dcmfnet.training import seed_everything, segmentation_loss
from igf import IterativeGatedFusion

__all__ = ["InitDiagnostics", "LossPoint", "ModuleStats", "SiteScales", "diagnose", "init_diagnostics", "loss_curves"]

#: ``(mean, std)`` of a tensor's elements.
Scale = tuple[float, float]


@dataclass(frozen=True)
class LossPoint:
    """One logged point of a training run.

    Attributes:
        step: Optimizer steps done.
        train_loss: Mean training loss over the batches since the previous point.
        val_overall_iou: Validation overall IoU at that step, where the trainer validated.
    """

    step: int
    train_loss: float
    val_overall_iou: float | None


@dataclass(frozen=True)
class ModuleStats:
    """A module at initialization, after one forward and backward pass.

    Attributes:
        name: Qualified name in the model (``fusion_e3``, ``fusion_e3.gates``, ``backbone.stages.0``).
        parameters: Number of parameter elements.
        grad_norm: L2 norm of its parameters' gradients (None: no parameter got one).
        param_norm: L2 norm of its parameters.
        output: ``(mean, std)`` of its output (its first tensor), None where the module did not run itself.
    """

    name: str
    parameters: int
    grad_norm: float | None
    param_norm: float
    output: Scale | None


@dataclass(frozen=True)
class SiteScales:
    """The iterated maps of one IGF site at initialization.

    Attributes:
        fusions: std of ``F_1 .. F_L`` (Eq. 1-2).
        gates: std of ``G_1 .. G_k`` (Eq. 3; ``k = L - 1`` where the output reads only fusions).
    """

    fusions: tuple[float, ...]
    gates: tuple[float, ...]


@dataclass(frozen=True)
class InitDiagnostics:
    """One model at initialization on the trainer's first batch.

    Attributes:
        seed: ``train.seed``.
        batch_size: Samples in the batch.
        loss: The training loss (sigmoid BCE plus ``dice_weight`` x Dice, as the trainer's).
        grad_norm: L2 norm of all gradients.
        logits: ``(mean, std)`` of the logits.
        modules: Per module, in the model's order: each top-level module (and, for one that does not
            run itself such as the backbone, the outermost parts that do), then each IGF site's parts.
        sites: Per IGF site (``e3``, ``e4``, ``enc``, ``dec`` …), its ``F_t`` and ``G_t`` scales.
    """

    seed: int
    batch_size: int
    loss: float
    grad_norm: float
    logits: Scale
    modules: tuple[ModuleStats, ...]
    sites: dict[str, SiteScales]


def loss_curves(output_dir: str | Path, run_ids: Iterable[str]) -> dict[str, list[LossPoint]]:
    """The points logged in ``output_dir/runs/RUN_ID/metrics.jsonl`` of each run, in file order.

    Lines without a ``train_loss`` are left out.

    Raises:
        InputError: A run has no ``metrics.jsonl``, or a line is not a JSON object with a ``step``.
    """
    return {run_id: _read_points(Path(output_dir) / "runs" / run_id) for run_id in run_ids}


def _read_points(run_dir: Path) -> list[LossPoint]:
    points = []
    for entry in read_metrics(run_dir):
        if "train_loss" in entry:
            iou = None if entry.get("val_overall_iou") is None else float(entry["val_overall_iou"])
            points.append(LossPoint(int(entry["step"]), float(entry["train_loss"]), iou))
    return points


def init_diagnostics(
    config: str | Path,
    overrides: Sequence[str],
    seed: int,
    *,
    batch_size: int | None = None,
    device: str = "cpu",
) -> InitDiagnostics:
    """Build a run's model as the trainer does and take one forward and backward pass on its first batch.

    Args:
        config: The run config (a shipped name or a YAML file).
        overrides: ``key=value`` overrides, e.g. a run's :meth:`RunSpec.train_overrides`.
        seed: ``train.seed`` (overrides the one in ``overrides``).
        batch_size: Samples in the batch (default: ``train.batch_size``).
        device: Where the model runs.

    Raises:
        InputError: ``batch_size`` is not between 1 and the size of the train split.
    """
    cfg = load_run_config(config, [*overrides, f"train.seed={seed}"])
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    # the trainer's order: seed, datasets, model (the same initial weights)
    seed_everything(cfg.train.seed)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = build_model(cfg.model).to(device)
    batch = _first_batch(train_set, cfg.train.seed, batch_size or cfg.train.batch_size)
    scales: dict[str, Scale] = {}
    hooks = [module.register_forward_hook(_scale_recorder(name, scales)) for name, module in model.named_modules()]
    try:
        loss, output = _loss_and_gradients(model, batch, cfg, torch.device(device))
    finally:
        for hook in hooks:
            hook.remove()
    return InitDiagnostics(
        seed=cfg.train.seed,
        batch_size=len(batch.expressions),
        loss=loss,
        grad_norm=_norm(p.grad for p in model.parameters() if p.grad is not None),
        logits=_scale(output.logits),
        modules=tuple(_module_stats(model, name, scales.get(name)) for name in _report_names(model, set(scales))),
        sites={
            site: SiteScales(tuple(_scale(f)[1] for f in maps.fusions), tuple(_scale(g)[1] for g in maps.gates))
            for site, maps in output.igf.items()
        },
    )


def _first_batch(dataset: ReferringDataset, seed: int, batch_size: int) -> ReferringBatch:
    """The trainer's first batch: the first ``batch_size`` samples in its sampler's order at epoch 0."""
    if not 1 <= batch_size <= len(dataset):
        raise InputError(f"the batch size must be between 1 and the train split's {len(dataset)}, got {batch_size}")
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True
    )
    return collate_referring([dataset[index] for index in itertools.islice(sampler, batch_size)])


def _loss_and_gradients(
    model: DCMFNet, batch: ReferringBatch, cfg: RunConfig, device: torch.device
) -> tuple[float, DCMFNetOutput]:
    """The trainer's forward, loss and backward (paper §4.1), keeping every ``F_t`` and ``G_t``."""
    images, masks = batch.images.to(device), batch.masks.to(device)
    text = {k: v.to(device) for k, v in model.tokenize(batch.expressions, max_tokens_for(cfg.data)).items()}
    with autocast(device, cfg.train.precision):
        # return_intermediates computes the same logits as the trainer's call and also returns the IGF maps
        output: DCMFNetOutput = model(images, text, return_intermediates=True)
    loss = segmentation_loss(output.logits, masks, dice_weight=cfg.train.dice_weight)
    torch.autograd.backward(loss)
    return float(loss.detach()), output


def _scale_recorder(name: str, scales: dict[str, Scale]) -> Callable[[nn.Module, Any, Any], None]:
    """A forward hook that keeps the scale of the first tensor of ``name``'s first output."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = _first_tensor(output)
        if tensor is not None and name not in scales:
            scales[name] = _scale(tensor)

    return hook


def _first_tensor(value: Any) -> Tensor | None:
    """``value`` if a tensor, else the first tensor in a tuple (NamedTuple), list or dict, depth first."""
    if isinstance(value, Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else ()
    return next((tensor for tensor in map(_first_tensor, items) if tensor is not None), None)


def _scale(tensor: Tensor) -> Scale:
    values = tensor.detach().double()
    return float(values.mean()), float(values.std(correction=0))


def _norm(tensors: Iterable[Tensor]) -> float:
    """L2 norm of all elements of ``tensors`` together."""
    return math.sqrt(sum(float(tensor.detach().double().square().sum()) for tensor in tensors))


def _report_names(model: nn.Module, ran: set[str]) -> list[str]:
    """Top-level modules; for one that did not run itself, its outermost parts that did; each IGF's parts."""
    names: list[str] = []
    for name, child in model.named_children():
        names += [name, *([] if name in ran else _outermost_that_ran(child, name, ran))]
        for qualified, site in child.named_modules(prefix=name):
            if isinstance(site, IterativeGatedFusion):
                names += [qualified, *(f"{qualified}.{part}" for part, _ in site.named_children())]
    return list(dict.fromkeys(names))


def _outermost_that_ran(module: nn.Module, prefix: str, ran: set[str]) -> list[str]:
    names: list[str] = []
    for name, child in module.named_children():
        qualified = f"{prefix}.{name}"
        names += [qualified] if qualified in ran else _outermost_that_ran(child, qualified, ran)
    return names


def _module_stats(model: nn.Module, name: str, output: Scale | None) -> ModuleStats:
    parameters = list(model.get_submodule(name).parameters())
    gradients = [p.grad for p in parameters if p.grad is not None]
    return ModuleStats(
        name=name,
        parameters=sum(p.numel() for p in parameters),
        grad_norm=_norm(gradients) if gradients else None,
        param_norm=_norm(parameters),
        output=output,
    )


# -- the report ------------------------------------------------------------------------------------


def diagnose(output_dir: str | Path, row_key: str, seed: int | None = None, *, batch_size: int | None = None) -> str:
    """The markdown diagnosis of ``row_key`` against the full model, from the runs recorded in ``output_dir``.

    Args:
        output_dir: The ablation folder (``runs.jsonl``; ``runs/RUN_ID/metrics.jsonl`` where kept).
        row_key: The row to diagnose (``gate-convgru``, ``L1`` …).
        seed: The seed of the initialization compared (default: the row's first recorded seed).
        batch_size: Samples in the batch at initialization (default: the run config's).

    Raises:
        InputError: ``row_key`` is the full model, or it or the full model has no recorded run.
    """
    if row_key == FULL_KEY:
        raise InputError(f"--diagnose compares a row with the full model ({FULL_KEY}); choose another row")
    records = read_records(output_dir)
    variant, full = _row_records(records, row_key, output_dir), _row_records(records, FULL_KEY, output_dir)
    seed = variant[0]["seed"] if seed is None else seed
    at_init = {
        key: init_diagnostics(spec.config, spec.train_overrides(), seed, batch_size=batch_size)
        for key, spec in ((row_key, RunSpec.from_record(variant[0])), (FULL_KEY, RunSpec.from_record(full[0])))
    }
    runs = [record["run_id"] for record in variant + full]
    logged = [run_id for run_id in runs if (Path(output_dir) / "runs" / run_id / "metrics.jsonl").is_file()]
    lines = _header(output_dir, row_key, variant + full)
    lines += _curves_markdown(loss_curves(output_dir, logged), [run_id for run_id in runs if run_id not in logged])
    lines += _init_markdown(at_init[row_key], at_init[FULL_KEY])
    return "\n".join(lines) + "\n"


def _row_records(records: list[dict[str, Any]], key: str, output_dir: str | Path) -> list[dict[str, Any]]:
    """The records of row ``key``, by seed."""
    found = sorted((record for record in records if record.get("row") == key), key=lambda record: record["seed"])
    if not found:
        recorded = ", ".join(dict.fromkeys(str(record.get("row")) for record in records)) or "none"
        raise InputError(f"no run of row {key!r} in {Path(output_dir) / RUNS_FILE}; recorded rows: {recorded}")
    return found


def _header(output_dir: str | Path, row_key: str, records: list[dict[str, Any]]) -> list[str]:
    first = records[0]
    row = rows_by_key().get(row_key)
    lines = [
        f"# Diagnosis: {row_key} against the full model",
        "",
        f"Row `{row_key}` ({row.describe() if row else ' '.join(first['overrides'])}; paper rows "
        f"{', '.join(first.get('paper_rows', []))}), runs of `{output_dir}`: config `{first['config']}`, "
        f"{first['steps']} steps, global overrides `{' '.join(first.get('global_overrides') or []) or 'none'}`.",
        "",
        "| run | seed | parameters | " + " | ".join(f"{split} overall IoU" for split in first["eval_splits"]) + " |",
        "|---|---:|---:|" + "---:|" * len(first["eval_splits"]),
    ]
    for record in records:
        ious = [f"{record['metrics'][split]['overall_iou']:.4f}" for split in first["eval_splits"]]
        lines.append(f"| {record['run_id']} | {record['seed']} | {record['parameters']:,} | {' | '.join(ious)} |")
    return lines


def _curves_markdown(curves: dict[str, list[LossPoint]], unlogged: list[str]) -> list[str]:
    """Step x run: the mean training loss since the previous logged step, the val overall IoU in brackets."""
    lines = ["", "## Training loss", ""]
    lines.append("Mean training loss over the steps since the previous logged one; in brackets the val overall IoU "
                 "where the trainer validated.")  # fmt: skip
    if unlogged:
        lines.append(f"No `metrics.jsonl` for {', '.join(unlogged)}.")
    if not curves:
        return lines
    steps = sorted({point.step for points in curves.values() for point in points})
    lines += ["", "| step | " + " | ".join(curves) + " |", "|---:|" + "---:|" * len(curves)]
    for step in steps:
        cells = []
        for points in curves.values():
            point = next((point for point in points if point.step == step), None)
            iou = "" if point is None or point.val_overall_iou is None else f" ({point.val_overall_iou:.3f})"
            cells.append("–" if point is None else f"{point.train_loss:.4f}{iou}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def _pair(variant: float | None, full: float | None, spec: str = ".3g") -> str:
    """``variant / full``, with – for a missing value."""
    return " / ".join("–" if value is None else format(value, spec) for value in (variant, full))


def _ratio(variant: float | None, full: float | None) -> str:
    return "–" if variant is None or not full else f"{variant / full:.3g}"


def _init_markdown(variant: InitDiagnostics, full: InitDiagnostics) -> list[str]:
    """The side-by-side tables of two :class:`InitDiagnostics`: summary, modules, IGF steps."""
    lines = [
        "",
        f"## At initialization (seed {variant.seed}, the trainer's first batch of {variant.batch_size})",
        "",
        "Each cell: variant / full.",
        "",
        "| | variant / full | ratio |",
        "|---|---:|---:|",
        f"| loss | {_pair(variant.loss, full.loss, '.4f')} | {_ratio(variant.loss, full.loss)} |",
        f"| gradient norm, all parameters | {_pair(variant.grad_norm, full.grad_norm)} | "
        f"{_ratio(variant.grad_norm, full.grad_norm)} |",
        f"| logits mean | {_pair(variant.logits[0], full.logits[0])} | |",
        f"| logits std | {_pair(variant.logits[1], full.logits[1])} | {_ratio(variant.logits[1], full.logits[1])} |",
        "",
        "| module | parameters | grad norm | grad ratio | param norm | output std |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ours, theirs = {m.name: m for m in variant.modules}, {m.name: m for m in full.modules}
    for name in dict.fromkeys([*theirs, *ours]):
        a, b = ours.get(name), theirs.get(name)
        grads = (a.grad_norm if a else None, b.grad_norm if b else None)
        stds = (a.output[1] if a and a.output else None, b.output[1] if b and b.output else None)
        lines.append(
            f"| {name} | {_pair(a.parameters if a else None, b.parameters if b else None, ',')} | {_pair(*grads)} "
            f"| {_ratio(*grads)} | {_pair(a.param_norm if a else None, b.param_norm if b else None)} "
            f"| {_pair(*stds)} |"
        )
    return lines + _sites_markdown(variant.sites, full.sites)


def _sites_markdown(variant: dict[str, SiteScales], full: dict[str, SiteScales]) -> list[str]:
    """Per IGF site and step t, the std of ``F_t`` and ``G_t``, variant / full."""
    lines = ["", "IGF steps: std of F_t (Eq. 1-2) and G_t (Eq. 3).", "", "| site | t | F_t std | G_t std |"]
    lines.append("|---|---:|---:|---:|")
    empty = SiteScales((), ())
    for site in dict.fromkeys([*full, *variant]):
        a, b = variant.get(site, empty), full.get(site, empty)
        for t in range(max(len(a.fusions), len(b.fusions), len(a.gates), len(b.gates))):
            fusions = (_at(a.fusions, t), _at(b.fusions, t))
            gates = (_at(a.gates, t), _at(b.gates, t))
            lines.append(f"| {site} | {t + 1} | {_pair(*fusions)} | {_pair(*gates)} |")
    return lines


def _at(values: tuple[float, ...], index: int) -> float | None:
    return values[index] if index < len(values) else None
