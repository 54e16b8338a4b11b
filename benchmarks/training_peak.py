"""Measured training peak and throughput of the paper configs, beside ``dcmfnet stats --memory``'s prediction.

Usage::

    python -m benchmarks.training_peak --device cuda --output-dir DIR

For each run (a config, a precision, the IGF step fused or plain, IGF checkpointing on
or off) the model takes a few real training steps at batch 6 and 480x480 (paper §4.1):
forward under the precision's autocast, binary cross-entropy, backward, an Adam step
(``torch.optim.Adam`` over ``model.parameter_groups()``, as ``dcmfnet train`` builds it),
gradients freed with ``zero_grad(set_to_none=True)``. Weights are random and the text
encoder is a randomly initialised BERT-base where ``bert-base-uncased`` is not available
locally (nothing is downloaded); memory and time do not depend on the values.

Measured (CUDA): ``torch.cuda.max_memory_allocated`` over the timed steps, after
``reset_peak_memory_stats`` that follows the warm-up steps: parameters, gradients, Adam
state, the activations saved for backward and every transient, the CUDA context
excluded; ``max_memory_reserved`` (what the caching allocator took from the card) beside
it; and the peak over the warm-up steps apart (the first steps also hold cuDNN's
algorithm search when ``torch.backends.cudnn.benchmark`` is on). Throughput is the batch
over the median of the timed steps' synchronised wall times. On a CPU the steps run and
are timed but no peak is measured.

Predicted: the rows of ``dcmfnet stats --memory --memory-json`` (default: the committed
``benchmarks/results/paper_memory.json``): parameters + gradients + Adam state + saved
activations + weight copies + the largest transient, from a CPU measurement at batch 1
scaled to batch 6 (``docs/guides/benchmarks.rst``, "Training memory of the paper models").

Runs go in order of importance (the default fused step in fp32 and bf16 for every
config first) and stop when ``--budget-s`` would be exceeded; ``training.json`` and
``training.md`` are rewritten after every run, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import synchronize
from benchmarks.workload import Precision, autocast_context

GIB = 2**30
#: Usable memory assumed on a 24 GB card after the CUDA context and allocator slack (as ``dcmfnet stats``).
FITS_GIB = 22.0
DEFAULT_PREDICTIONS = Path(__file__).resolve().parent / "results" / "paper_memory.json"
PAPER_CONFIGS = ("paper_resnet101", "paper_swin")


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured setting."""

    config: str
    precision: Precision
    fused: bool = True
    checkpoint: bool = False

    @property
    def label(self) -> str:
        step = ("fused" if self.fused else "plain") + (" + checkpoint" if self.checkpoint else "")
        return f"{self.config} {self.precision} {step}"


def planned_runs(configs: tuple[str, ...], variants: str) -> list[Run]:
    """The runs in order of importance: the default (fused, no checkpointing) in fp32 and bf16 for every config,
    then (``variants="all"``) the plain step and IGF checkpointing."""
    runs = [Run(c, p) for c in configs for p in ("fp32", "bf16")]  # type: ignore[arg-type]
    if variants == "all":
        runs += [
            Run(c, p, fused, checkpoint)  # type: ignore[arg-type]
            for c in configs
            for p in ("fp32", "bf16")
            for fused, checkpoint in ((False, False), (True, True))
        ]
    return runs


def set_igf_options(model: nn.Module, *, fused: bool, checkpoint: bool) -> None:
    """Every IGF of ``model`` (and its fusion units and gates): the fused or plain step, checkpointing on or off."""
    from igf import IterativeGatedFusion

    for module in model.modules():
        if isinstance(module, IterativeGatedFusion):
            module.checkpoint = checkpoint
        if hasattr(module, "fused"):
            module.fused = fused


def load_predictions(path: Path | None) -> dict[tuple[str, str, bool, bool], dict[str, Any]]:
    """``dcmfnet stats --memory-json`` rows by (config, precision, fused, checkpoint); empty if ``path`` is missing."""
    if path is None or not path.is_file():
        return {}
    rows = json.loads(path.read_text())
    return {(r["config"], r["precision"], r["fused"], r["checkpoint"]): r for r in rows}


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    text: dict[str, torch.Tensor],
    target: torch.Tensor,
    device: torch.device,
    precision: Precision,
) -> None:
    with autocast_context(device, precision):
        logits = model(images, text)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure_run(
    model: nn.Module,
    run: Run,
    device: torch.device,
    *,
    batch: int,
    size: int,
    tokens: int,
    warmup_steps: int,
    steps: int,
) -> dict[str, Any]:
    """Train ``model`` (already on ``device``) for ``warmup_steps + steps`` steps; peak memory and step times."""
    from benchmarks.dcmfnet import _tokens

    set_igf_options(model, fused=run.fused, checkpoint=run.checkpoint)
    model.train()
    model.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    text = {k: v.to(device) for k, v in _tokens(model, batch, tokens, gen).items()}
    target = (torch.rand(batch, 1, size, size, generator=gen) > 0.5).float().to(device)
    cuda = device.type == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if cuda else None
    optimizer = torch.optim.Adam([{"params": g["params"]} for g in model.parameter_groups()], lr=1e-5)  # type: ignore[operator]

    def step() -> None:
        _train_step(model, optimizer, images, text, target, device, run.precision)

    for _ in range(warmup_steps):
        step()
    synchronize(device)
    record: dict[str, Any] = {"allocated_before_bytes": before}
    if cuda:
        record["warmup_peak_bytes"] = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    if cuda:
        record.update(
            peak_bytes=torch.cuda.max_memory_allocated(device),
            reserved_peak_bytes=torch.cuda.max_memory_reserved(device),
        )
    median = statistics.median(times)
    record.update(step_seconds=times, median_step_seconds=median, images_per_s=batch / median)
    model.zero_grad(set_to_none=True)
    return record  # the optimizer and its state are freed with this frame


def _gib(value: float | None) -> str:
    return "–" if value is None else f"{value / GIB:.2f}"


def markdown(env: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The report: predicted against measured peak, and images/s, one line per run."""
    lines = [
        f"# Training peak and throughput at batch {env['batch']}, {env['size']}x{env['size']}: measured vs predicted",
        "",
        f"Device: {env['device_name']} ({env['device']}); torch {env['torch']}, CUDA {env['cuda']}; "
        f"commit {env['git_commit']}; {env['date_utc']}.",
        f"Command: `{env['command']}`",
        "",
        f"Each run: {env['warmup_steps']} warm-up and {env['steps']} timed training steps (forward under autocast, "
        "BCE, backward, Adam step), random weights, random BERT-base where no local weights. Measured peak: "
        "`torch.cuda.max_memory_allocated` over the timed steps (CUDA context excluded); reserved: "
        "`max_memory_reserved`. Predicted: `dcmfnet stats --memory` "
        f"({env['predictions'] or 'no prediction file'}). Fits 24 GB: measured peak <= {FITS_GIB:g} GiB.",
        "",
        "| config | precision | IGF step | checkpoint | predicted peak GiB | measured peak GiB | measured / predicted "
        "| reserved GiB | warm-up peak GiB | step ms | images/s | fits 24 GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = (
            f"| {r['config']} | {r['precision']} | {'fused' if r['fused'] else 'plain'} | "
            f"{'yes' if r['checkpoint'] else 'no'} | {_gib(r.get('predicted_peak_bytes'))} |"
        )
        if "error" in r or "skipped" in r:
            lines.append(f"{head} {r.get('error') or r['skipped']} |||||||")
            continue
        peak, predicted = r.get("peak_bytes"), r.get("predicted_peak_bytes")
        ratio = f"{peak / predicted:.2f}" if peak and predicted else "–"
        fits = "–" if peak is None else ("yes" if peak <= FITS_GIB * GIB else "no")
        lines.append(
            f"{head} {_gib(peak)} | {ratio} | {_gib(r.get('reserved_peak_bytes'))} | "
            f"{_gib(r.get('warmup_peak_bytes'))} | {r['median_step_seconds'] * 1e3:.0f} | {r['images_per_s']:.2f} | "
            f"{fits} |"
        )
    return "\n".join(lines) + "\n"


def environment(device: torch.device, args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from benchmarks.run import environment as run_environment

    env = run_environment(device)
    env.update(
        command="python -m benchmarks.training_peak " + " ".join(argv),
        batch=args.batch,
        size=args.size,
        tokens=args.tokens,
        warmup_steps=args.warmup_steps,
        steps=args.steps,
        predictions=str(args.predictions) if args.predictions and args.predictions.is_file() else None,
    )
    return env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.training_peak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--configs", default=",".join(PAPER_CONFIGS), help="comma-separated shipped configs")
    p.add_argument("--variants", choices=("default", "all"), default="all", help="all: also plain and checkpoint")
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--size", type=int, default=480)
    p.add_argument("--tokens", type=int, default=15, help="tokens per expression (paper: 15)")
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--budget-s", type=float, default=None, help="start no run that would end after this many seconds")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")
    p.add_argument(
        "--predictions",
        type=Path,
        default=DEFAULT_PREDICTIONS,
        help="rows of `dcmfnet stats --memory --memory-json` (default: the committed paper_memory.json)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure the runs; returns the rows (also written to ``--output-dir``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    env = environment(device, args, argv)
    predictions = load_predictions(args.predictions)
    runs = planned_runs(tuple(args.configs.split(",")), args.variants)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    models: dict[str, nn.Module] = {}
    seconds_per_run: dict[str, float] = {}  # last duration of a run of each config, its build excluded

    def write() -> None:
        env["total_seconds"] = round(time.perf_counter() - started, 1)
        (out / "training.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
        (out / "training.md").write_text(markdown(env, rows))

    for i, run in enumerate(runs, 1):
        row: dict[str, Any] = dataclasses.asdict(run)
        predicted = predictions.get((run.config, run.precision, run.fused, run.checkpoint))
        if predicted is not None:
            row.update(predicted_peak_bytes=predicted["peak"], predicted=predicted)
        elapsed = time.perf_counter() - started
        estimate = seconds_per_run.get(run.config, 0.0)
        if args.budget_s is not None and elapsed + 1.5 * estimate > args.budget_s:
            row["skipped"] = f"not started: {elapsed:.0f} s of the {args.budget_s:.0f} s budget spent"
        else:
            t0 = time.perf_counter()
            try:
                row.update(_measure(run, models, device, args))
            except Exception as error:  # one failed run (e.g. out of memory) is recorded; the next one runs
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                row["traceback"] = traceback.format_exc(limit=6)
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            row["run_seconds"] = round(time.perf_counter() - t0, 1)
            seconds_per_run[run.config] = row["run_seconds"] - row.get("build_seconds", 0.0)
        rows.append(row)
        status = (
            row.get("error")
            or row.get("skipped")
            or (
                f"peak {_gib(row.get('peak_bytes'))} GiB (predicted {_gib(row.get('predicted_peak_bytes'))}), "
                f"{row['images_per_s']:.2f} images/s"
            )
        )
        print(f"[{i}/{len(runs)}] {time.perf_counter() - started:6.1f}s {run.label}: {status}", flush=True)
        write()
    write()
    print(f"wrote {out / 'training.json'} and {out / 'training.md'}")
    return rows


def _measure(run: Run, models: dict[str, nn.Module], device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Build (once per config; the other configs' models wait on the CPU) and measure one run."""
    extra: dict[str, Any] = {}
    for name in [n for n in models if n != run.config]:
        models[name].to("cpu")
    if run.config not in models:
        from benchmarks.dcmfnet import _build

        t0 = time.perf_counter()
        torch.manual_seed(0)
        model, text_note = _build(run.config, torch.device("cpu"))
        models[run.config] = model
        extra.update(build_seconds=round(time.perf_counter() - t0, 1), text_encoder=text_note)
    model = models[run.config].to(device)
    extra["parameter_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        **extra,
        **measure_run(
            model,
            run,
            device,
            batch=args.batch,
            size=args.size,
            tokens=args.tokens,
            warmup_steps=args.warmup_steps,
            steps=args.steps,
        ),
    }


if __name__ == "__main__":
    main()
