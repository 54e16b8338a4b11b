"""On a GPU: the CUDA tests, the CUDA benchmarks at the paper's shapes, and the paper configs' measured training
peak and throughput, in at most about 8 minutes, everything written under one folder.

Usage::

    benchmarks/device_check.sh OUT              # or: python -m benchmarks.device_check OUT
    benchmarks/device_check.sh                  # OUT from the environment variable $OUT

Parts, in this order, each in its own process under its own time limit (a part that fails
or runs out of time is recorded with its exit status, 124 for a timeout, and the next part
runs; ``--budget-s`` caps the whole):

==========  =====  ===================================================================
part        limit  what, and where it writes (under OUT)
==========  =====  ===================================================================
tests        90 s  ``pytest -m cuda`` on every ``tests/**/test_cuda.py``: IGF fused against
                   plain and against the CPU for the three gates, bf16/fp16 autocast,
                   ``torch.compile`` (Inductor), checkpointing's peak; DCMFNet training steps
                   and CPU parity (``model_cpu``). ``tests/junit.xml``, ``tests/log.txt``
training   120 s  ``python -m benchmarks.training_peak``: ``paper_resnet101`` and ``paper_swin``
                   at batch 6, 480x480, fp32 and bf16 autocast, a few Adam steps each: peak of
                   ``torch.cuda.max_memory_allocated`` beside ``dcmfnet stats --memory``'s
                   prediction, and images/s. ``training/training.{json,md}``
igf        150 s  ``python -m benchmarks.run --device cuda --groups fused,checkpoint,precision
                   --match /L5/fwdbwd/``: E3, E4, E_enc, E_dec at 480x480, batch 6 (paper §4.1),
                   forward + backward, fused against plain, checkpointing on and off, bf16 and
                   fp16 autocast; time, conv floor, FLOPs, peak memory. ``igf/results.{json,md}``
compile    110 s  ``python -m benchmarks.run --device cuda --groups compile --match fwdbwd``:
                   compiled against eager at E3 (compile time apart). ``compile/results.{json,md}``
==========  =====  ===================================================================

``summary.md`` and ``summary.json`` (rewritten after every part) hold each part's status,
exit status, seconds and outputs, the test counts and the training table.

Without CUDA every part is skipped: a line starting with ``no CUDA:`` is printed, the
summary says so, and the exit status is 0. With CUDA the exit status is 1 when a part
failed or ran out of time (after everything is written), else 0. Nothing is downloaded
(``HF_HUB_OFFLINE=1``; the paper configs get a randomly initialised BERT-base).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a part gets beyond its limit to stop after SIGTERM before SIGKILL.
KILL_GRACE_S = 10


@dataclasses.dataclass(frozen=True)
class Part:
    """One step of the check: a command run from the repository root with a time limit."""

    name: str
    limit_s: int
    command: tuple[str, ...]
    outputs: str


def parts(out: Path) -> list[Part]:
    """The parts, in run order, writing under ``out``."""
    tests = " ".join(sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_cuda.py")))
    bench = "-m benchmarks.run --device cuda --min-run-time 0.2 --warmup 2"

    def python(arguments: str) -> tuple[str, ...]:
        return (sys.executable, *shlex.split(arguments))

    def to(folder: str) -> str:
        return shlex.quote(str(out / folder))

    return [
        Part(
            "tests",
            90,
            python(f"-m pytest -m cuda -q -p no:cacheprovider --junitxml {to('tests')}/junit.xml {tests}"),
            "tests/junit.xml, tests/log.txt",
        ),
        Part(
            "training",
            120,
            python(f"-m benchmarks.training_peak --device cuda --budget-s 95 --output-dir {to('training')}"),
            "training/training.md, training/training.json",
        ),
        Part(
            "igf",
            150,
            python(f"{bench} --groups fused,checkpoint,precision --match /L5/fwdbwd/ --output-dir {to('igf')}"),
            "igf/results.md, igf/results.json, igf/*.png",
        ),
        Part(
            "compile",
            110,
            python(f"{bench} --groups compile --match fwdbwd --no-plots --output-dir {to('compile')}"),
            "compile/results.md, compile/results.json",
        ),
    ]


def run_part(
    command: tuple[str, ...], limit_s: float, log: Path, env: dict[str, str] | None = None
) -> tuple[int, float]:
    """Run ``command`` with stdout and stderr to ``log``; after ``limit_s`` seconds stop its whole process group.

    Returns:
        The exit status (124 when the limit was reached, as ``timeout`` reports it) and the seconds taken.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        try:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as error:
            handle.write(f"could not start: {error}\n")
            return 127, time.perf_counter() - started
        try:
            rc = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            handle.write(f"\n[device_check] stopped after the {limit_s:.0f} s limit\n")
            rc = 124
    return rc, time.perf_counter() - started


def _stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process group of ``process`` (it leads its own session), SIGKILL if it outlives the grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _junit_counts(path: Path) -> dict[str, int] | None:
    """tests, failures, errors, skipped of a junit xml file (``None`` if it is missing or unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}


def _gpu() -> dict[str, str] | None:
    """Name, memory and driver of the first GPU from ``nvidia-smi`` (no CUDA context is created here)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, memory, driver = ([*(f.strip() for f in out.splitlines()[0].split(",")), "", ""])[:3]
    return {"name": name, "memory": memory, "driver": driver}


def _status(rc: int | None) -> str:
    if rc is None:
        return "skipped"
    return {0: "ok", 124: "timed out"}.get(rc, "failed")


def summary_markdown(summary: dict[str, Any], out: Path) -> str:
    """The summary page: environment, one row per part, the test counts and the training table."""
    gpu = summary.get("gpu") or {}
    lines = [
        "# Device check",
        "",
        f"{summary['date_utc']}; commit {summary['git_commit']}; torch {summary['torch']} "
        f"(CUDA {summary['torch_cuda']}); Python {summary['python']}; {summary['platform']}.",
        "",
    ]
    if not summary["cuda"]:
        lines += [summary["no_cuda"], ""]
    else:
        lines += [f"GPU: {gpu.get('name', '?')}, {gpu.get('memory', '?')}, driver {gpu.get('driver', '?')}.", ""]
    lines += ["| part | status | exit status | seconds | limit s | outputs |", "|---|---|---|---|---|---|"]
    for p in summary["parts"]:
        seconds = "–" if p["seconds"] is None else f"{p['seconds']:.0f}"
        rc = "–" if p["rc"] is None else str(p["rc"])
        lines.append(f"| {p['name']} | {p['status']} | {rc} | {seconds} | {p['limit_s']} | {p['outputs']} |")
    tests = summary.get("tests")
    if tests:
        lines += [
            "",
            f"CUDA tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped.",
        ]
    training_md = out / "training" / "training.md"
    if training_md.is_file():
        table = [line for line in training_md.read_text().splitlines() if line.startswith("|")]
        lines += ["", "Training peak and throughput (`training/training.md`):", "", *table]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.device_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", nargs="?", type=Path, default=None, help="output folder (default: $OUT)")
    p.add_argument("--parts", default=None, help="comma-separated subset of: tests, training, igf, compile")
    p.add_argument("--budget-s", type=float, default=480, help="start no part after this many seconds (default 480)")
    args = p.parse_args(argv)
    if args.out is None:
        if not os.environ.get("OUT"):
            p.error("give the output folder as an argument or in $OUT")
        args.out = Path(os.environ["OUT"])
    known = {part.name for part in parts(args.out)}
    if args.parts is not None and set(args.parts.split(",")) - known:
        p.error(f"unknown parts {sorted(set(args.parts.split(',')) - known)}; expected a subset of {sorted(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the check; returns the exit status."""
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import torch  # after parsing, so that --help is quick

    cuda = torch.cuda.is_available()
    selected = [p for p in parts(out) if args.parts is None or p.name in args.parts.split(",")]
    summary: dict[str, Any] = {
        "cuda": cuda,
        "gpu": _gpu() if cuda else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.device_check " + " ".join(sys.argv[1:] if argv is None else argv),
        "budget_s": args.budget_s,
        "parts": [
            {
                "name": p.name,
                "limit_s": p.limit_s,
                "command": list(p.command),
                "outputs": p.outputs,
                "rc": None,
                "seconds": None,
                "status": "not run",
            }
            for p in selected
        ],
    }

    def write() -> None:
        summary["total_seconds"] = round(time.perf_counter() - started, 1)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        (out / "summary.md").write_text(summary_markdown(summary, out))

    if not cuda:
        summary["no_cuda"] = (
            f"no CUDA: torch.cuda.is_available() is False (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); skipped: {', '.join(p.name for p in selected)}"
        )
        for p in summary["parts"]:
            p["status"] = "skipped: no CUDA"
        print(summary["no_cuda"], flush=True)
        write()
        print(f"wrote {out / 'summary.md'} and {out / 'summary.json'}")
        return 0

    gpu = summary["gpu"] or {}
    print(f"CUDA: {gpu.get('name', 'a GPU')} ({gpu.get('memory', '?')}); torch {torch.__version__}", flush=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "examples" / "dcmfnet" / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    for part, record in zip(selected, summary["parts"], strict=True):
        left = args.budget_s - (time.perf_counter() - started)
        if left < 20:
            record["status"] = f"skipped: {args.budget_s:.0f} s budget spent"
            print(f"[{part.name}] {record['status']}", flush=True)
            write()
            continue
        limit = min(part.limit_s, left)
        print(f"[{part.name}] running, limit {limit:.0f} s: {' '.join(part.command[1:])}", flush=True)
        rc, seconds = run_part(part.command, limit, out / part.name / "log.txt", env)
        record.update(rc=rc, seconds=round(seconds, 1), status=_status(rc), limit_s=round(limit))
        if part.name == "tests":
            summary["tests"] = _junit_counts(out / "tests" / "junit.xml")
        print(f"[{part.name}] {record['status']} (exit status {rc}) after {seconds:.0f} s", flush=True)
        if rc != 0:
            tail = (out / part.name / "log.txt").read_text(errors="replace").splitlines()[-15:]
            print(*(f"    {line}" for line in tail), sep="\n", flush=True)
        write()
    write()
    failed = [p["name"] for p in summary["parts"] if p["status"] in ("failed", "timed out")]
    print(f"wrote {out / 'summary.md'}; " + (f"failed or timed out: {', '.join(failed)}" if failed else "all parts ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
