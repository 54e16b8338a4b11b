"""torch.tanh against its sigmoid form 2 sigmoid(2x) - 1 on this CPU: the kernels alone and whole IGF calls.

igf computes eager CPU ``tanh`` of float32/float64 tensors in the sigmoid form where
:func:`igf.cpu_tanh.eager_cpu_tanh_via_sigmoid` is true (by default where ATen's kernels are
AVX2). This command measures whether that pays on the machine it runs on::

    python -m benchmarks.tanh_forms --threads 1 --output benchmarks/results/tanh_forms.md

Each comparison times the two forms in alternating blocks in one process (the flag is
switched before every call), so a change of machine load does not bias the ratio.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from pathlib import Path

import torch

import igf.cpu_tanh
from benchmarks.cases import IGFCase, Placement, full_width_placements, paper_placements, reduced
from benchmarks.timing import measure_interleaved

_CPU = torch.device("cpu")


def _with_form(via_sigmoid: bool, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with eager CPU tanh in the given form."""

    def run() -> object:
        with igf.cpu_tanh.eager_cpu_tanh_form(via_sigmoid=via_sigmoid):
            return fn()

    return run


def _row(what: str, fns: tuple[Callable[[], object], Callable[[], object]], min_run_time: float) -> str:
    """``| what | torch.tanh ms | sigmoid form ms | ratio | ratio of fastest blocks |``; the default form is kept."""
    tanh_time, sigmoid_time = measure_interleaved(list(fns), _CPU, min_run_time=min_run_time)
    ratio, fastest = sigmoid_time.median / tanh_time.median, sigmoid_time.min / tanh_time.min
    return f"| {what} | {tanh_time.median * 1e3:.3f} | {sigmoid_time.median * 1e3:.3f} | {ratio:.2f} | {fastest:.2f} |"


def kernel_rows(numel: int, min_run_time: float) -> list[str]:
    """The two forms alone, on ``numel`` float32 values (out of place, as a fresh result)."""
    x = torch.randn(numel, generator=torch.Generator().manual_seed(0))
    fns = (_with_form(False, lambda: igf.cpu_tanh.tanh(x)), _with_form(True, lambda: igf.cpu_tanh.tanh(x)))
    return [_row(f"`igf.cpu_tanh.tanh` on {numel:,} float32 values", fns, min_run_time)]


def igf_rows(placements: tuple[Placement, ...], min_run_time: float) -> list[str]:
    """Whole eager IGF calls (L = 5, ASGate), forward and forward+backward, at each placement."""
    rows = []
    for p in placements:
        for pass_ in ("fwd", "fwdbwd"):
            work = IGFCase(p, pass_, guidance="vector" if p.vector_guidance else "map").build(_CPU)
            fns = (_with_form(False, work.step), _with_form(True, work.step))
            rows.append(_row(f"IGF {pass_} at {p.describe()}", fns, min_run_time))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds of blocks per form and case")
    parser.add_argument("--output", type=Path, help="write the Markdown table here (default: print only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    placements = (*(reduced(p) for p in paper_placements(8)), *full_width_placements()[2:])
    rows = kernel_rows(1_152_000, args.min_run_time) + igf_rows(placements, args.min_run_time)
    default_form = igf.cpu_tanh.eager_cpu_tanh_via_sigmoid()
    lines = [
        "# Eager CPU tanh: torch.tanh against 2 sigmoid(2x) - 1",
        "",
        f"Command: `python -m benchmarks.tanh_forms --threads {args.threads}`; "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}; torch {torch.__version__}; "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {args.threads} thread(s); float32. "
        f"Default here: `eager_cpu_tanh_via_sigmoid() = {default_form}`. Median ms per call over alternating blocks; "
        "ratio < 1: the sigmoid form is faster.",
        "",
        "| what | torch.tanh ms | sigmoid form ms | sigmoid / tanh | fastest blocks |",
        "|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output is not None:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
