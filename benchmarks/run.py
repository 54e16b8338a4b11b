"""Entry point: ``python -m benchmarks.run [--device cpu|cuda] [--quick] [--match REGEX] --output-dir DIR``.

Writes to ``DIR``:
    results.json   environment + one record per case (written after every case, so an
                   interrupted run keeps what it measured)
    results.md     tables, the targets of benchmarks/targets.py as measured, the method
    *.png          time vs L per gate, eager vs compile, memory with/without checkpointing
    command.txt    the command line that produced them

With ``--results-name NAME`` the report and records are ``NAME.json`` and ``NAME.md`` and the command
``NAME.command.txt`` (e.g. ``--groups peers --results-name results_peers`` beside a full run's results).

Exits with status 1 (after writing all of these) when any case or comparison
recorded an error, listing them on stderr, so that a CI smoke run fails loudly.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

import igf.cpu_tanh
from benchmarks import memory, report
from benchmarks.cases import Case
from benchmarks.flops import capture_all_ops, capture_flop_ops, count_flops, replay, summarise_calls
from benchmarks.provenance import git_commit
from benchmarks.suite import GROUPS, build_suite, comparison_pairs
from benchmarks.timing import TimingResult, measure, measure_interleaved, page_faults_per_call
from benchmarks.workload import Workload

FLOOR_KINDS = ("gate", "fusion", "igf", "peer", "rank")
#: Alternations at least of a target's pair: a 0.2 s case gets only five blocks of about 1 s
#: otherwise, and on a shared machine one disturbed block then moves the median.
PAIR_MIN_ROUNDS = 15


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers depend on: device, library versions, threads."""
    env: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "igf_eager_cpu_tanh_via_sigmoid": igf.cpu_tanh.eager_cpu_tanh_via_sigmoid(),
        "default_dtype": str(torch.get_default_dtype()),
        "git_commit": git_commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "memory_method": memory.CUDA_METHOD if device.type == "cuda" else memory.CPU_METHOD,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["cuda_capability"] = f"{props.major}.{props.minor}"
        env["cuda_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["allow_tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["allow_tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return env


def _time_against_floors(
    work: Workload, all_ops: bool, device: torch.device, args: argparse.Namespace, record: dict[str, Any]
) -> TimingResult:
    """Time the case in alternating blocks with its conv floor (and, if ``all_ops``, its all-op replay).

    Alternating blocks keep the ratios from drifting with the machine's load. Adds the floors'
    times, ratios and page faults to ``record``; returns the case's timing.
    """
    calls = capture_flop_ops(work.reference_step)
    floor_fn = replay(calls)
    record["floor_ops"] = summarise_calls(calls)
    functions = [work.step, floor_fn]
    if all_ops:
        try:
            functions.append(replay(capture_all_ops(work.reference_step)))
            functions[-1]()  # an operator that cannot run on random inputs fails here, not in the timing
        except Exception as error:  # the replay is a diagnostic: its failure is recorded, not fatal
            record["op_replay_error"] = f"{type(error).__name__}: {error}"
            functions = functions[:2]
    times = measure_interleaved(functions, device, min_run_time=args.min_run_time, warmup=args.warmup)
    t, ft = times[0], times[1]
    record.update(floor_time_s=ft.as_dict(), floor_ratio=t.median / ft.median)
    if len(times) == 3:
        record.update(op_replay_time_s=times[2].as_dict(), op_replay_ratio=times[2].median / ft.median)
    record.update(
        page_faults_per_call=page_faults_per_call(work.step, device),
        floor_page_faults_per_call=page_faults_per_call(floor_fn, device),
    )
    return t


def run_case(case: Case, groups: list[str], device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Build and measure one case; returns its JSON record (with ``error`` set on failure)."""
    record: dict[str, Any] = {"name": case.name, "kind": case.kind, "groups": groups, **case.fields()}
    started = time.perf_counter()
    try:
        if getattr(case, "compiled", False):
            torch._dynamo.reset()  # each compiled case starts from an empty cache (no recompile limit hit)
        work = case.build(device)
        record.update(
            shapes=work.shapes, parameters=work.parameters, items=work.items, compile_seconds=work.compile_seconds
        )
        if work.notes:
            record["notes"] = work.notes
        if work.saved_bytes is not None and work.map_bytes:
            record.update(saved_bytes=work.saved_bytes, saved_maps=work.saved_bytes / work.map_bytes)
        if not args.no_floor and case.kind in FLOOR_KINDS:
            t = _time_against_floors(work, case.kind == "igf", device, args, record)
        else:
            t = measure(work.step, device, min_run_time=args.min_run_time, warmup=args.warmup, label=case.name)
        record.update(time_s=t.as_dict(), items_per_s=work.items / t.median)
        if not args.no_flops:
            flops = count_flops(work.reference_step)
            record.update(
                flops=flops.total, flops_by_operator=flops.by_operator, achieved_flops_per_s=flops.total / t.median
            )
        if not args.no_memory:
            m = memory.peak_memory(work.step, device)
            record.update(peak_memory_bytes=m.peak_bytes, rss_peak_delta_bytes=m.rss_peak_delta_bytes)
        del work
    except Exception as e:
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc(limit=8)
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record["case_seconds"] = round(time.perf_counter() - started, 2)
    return record


def run_comparison(
    numerator: Case, denominator: Case, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    """Time two cases in alternating blocks; returns their time ratio (numerator / denominator)."""
    record: dict[str, Any] = {"numerator": numerator.name, "denominator": denominator.name}
    try:
        torch._dynamo.reset()
        a, b = numerator.build(device), denominator.build(device)
        if a.forward is not None and b.forward is not None:
            record["max_abs_output_diff"] = (a.forward() - b.forward()).abs().max().item()
        ta, tb = measure_interleaved(
            [a.step, b.step], device, min_run_time=args.min_run_time, warmup=args.warmup, min_rounds=PAIR_MIN_ROUNDS
        )
        record.update(
            numerator_time_s=ta.as_dict(),
            denominator_time_s=tb.as_dict(),
            ratio_median=ta.median / tb.median,
            ratio_min=ta.min / tb.min,
        )
        del a, b
    except Exception as e:
        record["error"] = f"{type(e).__name__}: {e}"
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced CPU set (tiny shapes, short timings) for CI: under 2 minutes, asserts nothing",
    )
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument(
        "--groups", default=",".join(GROUPS), help=f"comma-separated subset of: {', '.join(GROUPS)} (default: all)"
    )
    p.add_argument(
        "--min-run-time",
        type=float,
        default=None,
        help="seconds of timed blocks per measurement (default 1.0; 0.05 with --quick)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed calls before timing (default 3; 1 with --quick)")
    p.add_argument(
        "--output-stride",
        type=int,
        choices=(8, 16),
        default=8,
        help="backbone output stride of the paper shapes (CUDA; CPU shapes are reduced OS8)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: 1 with --quick, else torch's default). On a machine shared "
        "with other busy processes use 1: OpenMP barriers in multi-threaded ops stall whenever one "
        "thread is descheduled, which inflated timings 10-100x on a loaded 2-core machine",
    )
    p.add_argument(
        "--match",
        default=None,
        metavar="REGEX",
        help="keep only the cases of the selected groups whose name matches REGEX (re.search), e.g. "
        "'/L5/fwdbwd/'; the target pairs among them are still re-timed",
    )
    p.add_argument(
        "--results-name",
        default="results",
        metavar="NAME",
        help="file names of the outputs: NAME.json, NAME.md and NAME.command.txt (default: results.json, "
        "results.md and command.txt), so that a run of some groups can sit beside a full run's results",
    )
    p.add_argument("--no-flops", action="store_true", help="skip FLOP counting")
    p.add_argument("--no-floor", action="store_true", help="skip the conv floor")
    p.add_argument("--no-memory", action="store_true", help="skip peak memory")
    p.add_argument(
        "--no-pairs", action="store_true", help="skip re-timing the target comparisons in alternating blocks"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = p.parse_args(argv)
    if args.min_run_time is None:
        args.min_run_time = 0.05 if args.quick else 1.0
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.threads is None and args.quick:
        args.threads = 1
    if args.match is not None:
        try:
            re.compile(args.match)
        except re.error as error:
            p.error(f"--match {args.match!r}: {error}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.results_name):
        p.error(f"--results-name {args.results_name!r}: letters, digits, '_', '.' and '-' only")
    unknown = set(args.groups.split(",")) - set(GROUPS)
    if unknown:
        p.error(f"unknown groups {sorted(unknown)}; expected a subset of {list(GROUPS)}")
    return args


def failures(records: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> list[str]:
    """``"name: error"`` for every case record and comparison record that holds an error."""
    failed = [f"{r['name']}: {r['error']}" for r in records if "error" in r]
    failed += [f"{c['numerator']} / {c['denominator']}: {c['error']}" for c in comparisons if "error" in c]
    return failed


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmarks; returns the records (also written to ``--output-dir``).

    Raises:
        SystemExit: With status 1, after writing the results, when a case or comparison failed.
    """
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static shapes: let cuDNN pick the fastest algorithms
    out_dir: Path = args.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.run " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    stem = args.results_name
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    (out_dir / ("command.txt" if stem == "results" else f"{stem}.command.txt")).write_text(command + "\n")

    groups = tuple(args.groups.split(","))
    if "compile" in groups and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # a fresh Inductor cache, so that compile_seconds is a cold compile, not a cache hit
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="igf-bench-inductor-")
    suite = build_suite(device, args.quick, groups, args.output_stride)
    if args.match is not None:
        suite = [(case, case_groups) for case, case_groups in suite if re.search(args.match, case.name)]
        if not suite:
            raise SystemExit(f"--match {args.match!r}: no case of the groups {','.join(groups)} matches")
    env = environment(device)
    env["inductor_cache_dir"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    env.update(
        command=command,
        quick=args.quick,
        match=args.match,
        output_stride=args.output_stride,
        min_run_time_s=args.min_run_time,
        warmup_calls=args.warmup,
    )
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, (case, case_groups) in enumerate(suite, 1):
        rec = run_case(case, case_groups, device, args)
        records.append(rec)
        status = rec.get("error") or f"{rec['time_s']['median'] * 1e3:9.2f} ms"
        print(f"[{i:3d}/{len(suite)}] {time.perf_counter() - started:6.1f}s {case.name:70s} {status}", flush=True)
        env["total_seconds"] = round(time.perf_counter() - started, 1)
        json_path.write_text(json.dumps({"environment": env, "records": records}, indent=1))
    comparisons: list[dict[str, Any]] = []
    if not args.no_pairs:
        pairs = comparison_pairs([c for c, _ in suite], include_compiled=not args.quick)
        for i, (num, den) in enumerate(pairs, 1):
            comp = run_comparison(num, den, device, args)
            comparisons.append(comp)
            status = comp.get("error") or f"ratio {comp['ratio_median']:.2f} (fastest blocks {comp['ratio_min']:.2f})"
            print(
                f"[pair {i:2d}/{len(pairs)}] {time.perf_counter() - started:6.1f}s {num.name} / {den.name}: {status}",
                flush=True,
            )
            env["total_seconds"] = round(time.perf_counter() - started, 1)
            json_path.write_text(
                json.dumps({"environment": env, "records": records, "comparisons": comparisons}, indent=1)
            )
    report.write_report(env, records, out_dir, plots=not args.no_plots, comparisons=comparisons, name=md_path.name)
    print(f"wrote {json_path}, {md_path}" + ("" if args.no_plots else " and plots"))
    failed = failures(records, comparisons)
    if failed:
        print(f"{len(failed)} benchmark(s) failed:", *failed, sep="\n  ", file=sys.stderr)
        raise SystemExit(1)
    return records


if __name__ == "__main__":
    main()
