"""Runs the rows of the ablation tables: one ``dcmfnet train`` and one ``dcmfnet evaluate`` per split, per run.

A run is one row's model at one seed, trained for exactly ``steps`` optimizer steps (the schedule
follows the steps, no time budget) in ``OUTPUT/runs/RUN_ID/`` and scored from its ``last.pt``.
Every training and evaluation is its own subprocess with one thread (``OMP_NUM_THREADS=1``), so
``jobs`` of them run side by side. An interrupted run resumes from its ``last.pt``; a run whose
record is in ``runs.jsonl`` is skipped. Nothing here is specific to a device or a dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import igf
from dcmfnet.ablations.cost import learning_curve, saved_activation_bytes
from dcmfnet.ablations.records import append_record
from dcmfnet.ablations.tables import TABLES, Row, TableId
from dcmfnet.errors import InputError
from dcmfnet.loading import load_model_from_checkpoint
from dcmfnet.model_stats import count_parameters

__all__ = [
    "CPU_CAPABILITIES",
    "RunFailed",
    "RunSpec",
    "cpu_capability_of",
    "execute_run",
    "plan_runs",
    "run_all",
    "source_commit",
]

#: Run-config keys the runner sets itself (from --seeds and --steps, and the equal-steps protocol).
MANAGED_KEYS = ("train.seed", "train.max_steps", "train.epochs", "optim.schedule_by", "train.max_train_minutes")
#: ``--cpu-capability`` → the environment that holds PyTorch's kernels (``ATEN_CPU_CAPABILITY``), oneDNN's
#: convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's BLAS (``MKL_ENABLE_INSTRUCTIONS``) to that instruction set. A
#: run is bit-for-bit repeatable on one machine, but AVX2 and AVX-512 kernels round differently and training
#: amplifies the difference (docs/guides/ablations.rst, "Reproducing a run"); pinned, a run repeats on any machine
#: that has the instruction set.
CPU_CAPABILITIES: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
    },
}
#: The metrics a record keeps per split (paper §4.1; :mod:`dcmfnet.metrics`).
METRIC_KEYS = ("overall_iou", "mean_iou", *(f"precision@{t}" for t in ("0.5", "0.6", "0.7", "0.8", "0.9")))


class RunFailed(RuntimeError):
    """A training or evaluation subprocess of a run exited with an error; the message has its log's tail."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run.

    Attributes:
        run_id: ``ROW-sSEED`` (``full-s0``, ``mlff-concat-s2``).
        row: The row's key (:attr:`~dcmfnet.ablations.tables.Row.key`).
        table: The paper tables that hold the row.
        paper_rows: ``TABLE:ROW`` of each paper row it stands for (``["2:7", "2:8"]``).
        overrides: The row's model switches as overrides.
        seed: ``train.seed`` (initial weights and data order; the data itself does not change).
        steps: Optimizer steps.
        config: The run config (a shipped name or a path).
        dataset: The dataset's name in the reports.
        global_overrides: ``key=value`` overrides given on the command line, for every run.
        eval_splits: The splits scored after training, the first one is the tables' main split.
    """

    run_id: str
    row: str
    table: tuple[TableId, ...]
    paper_rows: tuple[str, ...]
    overrides: tuple[str, ...]
    seed: int
    steps: int
    config: str
    dataset: str
    global_overrides: tuple[str, ...]
    eval_splits: tuple[str, ...]

    def train_overrides(self) -> list[str]:
        """The overrides of ``dcmfnet train``: the command line's, the row's, then the protocol's."""
        protocol = [
            f"train.seed={self.seed}",
            f"train.max_steps={self.steps}",
            f"train.epochs={self.steps}",  # enough epochs for the steps: every epoch has at least one
            "optim.schedule_by=steps",
            "train.max_train_minutes=null",
            "train.num_threads=1",
            "train.progress_bar=false",
        ]
        return [*self.global_overrides, *self.overrides, *protocol]

    def settings(self) -> dict[str, Any]:
        """The fields of a record that every run of an output folder shares."""
        return {
            "config": self.config,
            "dataset": self.dataset,
            "steps": self.steps,
            "global_overrides": list(self.global_overrides),
            "eval_splits": list(self.eval_splits),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunSpec:
        """The spec of a recorded run (to run it again)."""
        names = [spec_field.name for spec_field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in record]
        if missing:
            raise InputError(f"record {record.get('run_id')!r} lacks {', '.join(missing)}; it cannot be rerun")
        values: dict[str, Any] = {name: tuple(v) if isinstance(v := record[name], list) else v for name in names}
        return cls(**values)


def plan_runs(
    rows: Sequence[Row],
    seeds: Sequence[int],
    *,
    steps: int,
    config: str,
    dataset: str,
    global_overrides: Sequence[str] = (),
    eval_splits: Sequence[str] = ("val", "test"),
) -> list[RunSpec]:
    """The runs of ``rows`` (one per distinct key) at every seed, seed by seed, the full model first.

    Raises:
        InputError: An override sets a model switch of the tables or a key the runner manages.
    """
    switch_keys = {f"model.{name}" for row in rows for name in row.switches()}
    for item in global_overrides:
        key = item.split("=", 1)[0]
        if key in switch_keys or key in MANAGED_KEYS:
            raise InputError(
                f"override {item!r} sets {key}, which the ablation runner sets itself "
                "(model switches by the table rows, seeds by --seeds, steps by --steps)"
            )
    distinct = list({row.key: row for row in sorted(rows, key=lambda row: not row.is_full)}.values())
    specs = []
    for seed in seeds:
        for row in distinct:
            holders = [(table.number, paper_row.paper_row) for table in TABLES.values()
                       for paper_row in table.rows if paper_row.key == row.key]  # fmt: skip
            specs.append(
                RunSpec(
                    run_id=f"{row.key}-s{seed}",
                    row=row.key,
                    table=tuple(dict.fromkeys(number for number, _ in holders)),
                    paper_rows=tuple(f"{number}:{label}" for number, label in holders),
                    overrides=tuple(row.overrides()),
                    seed=seed,
                    steps=steps,
                    config=config,
                    dataset=dataset,
                    global_overrides=tuple(global_overrides),
                    eval_splits=tuple(eval_splits),
                )
            )
    return specs


def source_commit() -> str | None:
    """The git commit of the dcmfnet sources, with ``+dirty`` when tracked source files of dcmfnet or igf differ
    (results written into the checkout, such as ``runs.jsonl``, do not count); None outside git."""
    folder = Path(__file__).resolve().parent
    sources = [str(folder.parent), str(Path(igf.__file__).resolve().parent)]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *sources],
            cwd=folder, capture_output=True, text=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


class _Processes:
    """The live subprocesses, so that a stop request reaches them (the trainer saves ``last.pt`` on SIGTERM).

    Args:
        cpu_capability: A key of :data:`CPU_CAPABILITIES` that every subprocess is held to, or None.
    """

    def __init__(self, cpu_capability: str | None = None) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen[bytes]] = set()
        self.stopping = threading.Event()
        self.environment = _one_thread_environment(cpu_capability)

    def call(self, command: list[str], log: Path) -> int:
        with self.lock:
            if self.stopping.is_set():
                raise RunFailed("stopped before it started")
            with log.open("ab") as handle:
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=self.environment)
            self.live.add(process)
        try:
            return process.wait()
        finally:
            with self.lock:
                self.live.discard(process)

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
            live = list(self.live)
        for process in live:
            process.terminate()
        for process in live:
            process.wait()


def _one_thread_environment(cpu_capability: str | None = None) -> dict[str, str]:
    """The subprocesses' environment: one thread, and the instruction set of ``cpu_capability`` if given.

    Raises:
        InputError: ``cpu_capability`` is not a key of :data:`CPU_CAPABILITIES`.
    """
    if cpu_capability is not None and cpu_capability not in CPU_CAPABILITIES:
        raise InputError(f"cpu capability must be one of {', '.join(CPU_CAPABILITIES)}, got {cpu_capability!r}")
    pinned = CPU_CAPABILITIES[cpu_capability] if cpu_capability else {}
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **pinned}


def cpu_capability_of(environment: dict[str, str]) -> str:
    """The instruction set PyTorch dispatches its CPU kernels to in a subprocess of ``environment`` (``"AVX2"`` …).

    Raises:
        RunFailed: The subprocess could not report it (e.g. ``ATEN_CPU_CAPABILITY`` names a set this CPU lacks).
    """
    probe = [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"]
    result = subprocess.run(probe, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise RunFailed(f"could not read the CPU capability: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def _dcmfnet(*arguments: str) -> list[str]:
    """The ``dcmfnet`` command of this interpreter (``python -m dcmfnet`` is the console script)."""
    return [sys.executable, "-m", "dcmfnet", *arguments]


def _check_call(processes: _Processes, command: list[str], log: Path, what: str) -> None:
    code = processes.call(command, log)
    if code != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RunFailed(f"{what} exited with {code}; the end of {log}:\n{tail}")


def _kept_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """The metrics a record keeps of an evaluation's scores: :data:`METRIC_KEYS` and ``num_samples``."""
    return {key: float(scores[key]) for key in METRIC_KEYS} | {"num_samples": scores["num_samples"]}


def execute_run(
    spec: RunSpec,
    output_dir: Path,
    *,
    commit: str | None,
    processes: _Processes | None = None,
    cpu_capability: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run in ``output_dir/runs/RUN_ID``; returns its record.

    Raises:
        InputError: The run folder holds a run of another spec.
        RunFailed: A subprocess failed, or training ended at another step than ``spec.steps``.
    """
    processes = processes or _Processes()
    run_dir = output_dir / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "runs" / ".gitignore").write_text("# checkpoints and logs of the runs: not for git\n*\n")
    spec_path = run_dir / "spec.json"
    spec_json = dataclasses.asdict(spec)
    if spec_path.exists() and json.loads(spec_path.read_text()) != json.loads(json.dumps(spec_json)):
        raise InputError(f"{run_dir} holds a run of another spec ({spec_path}); use another --output-dir")
    spec_path.write_text(json.dumps(spec_json, indent=2) + "\n")
    # a run stopped part-way resumes from its last.pt; wall_seconds then covers this invocation only
    resumed = (run_dir / "last.pt").exists()
    start = time.perf_counter()
    train_command = _dcmfnet("train", "--config", spec.config, "--output-dir", str(run_dir), *spec.train_overrides())
    _check_call(processes, train_command, run_dir / "train.log", f"training of {spec.run_id}")
    metrics: dict[str, dict[str, float]] = {}
    by_form: dict[str, dict[str, dict[str, float]]] = {}
    for split in spec.eval_splits:
        result = run_dir / f"{split}.json"
        command = _dcmfnet("evaluate", "--checkpoint", str(run_dir / "last.pt"), "--split", split,
                           "--output-json", str(result), "--gallery", "none")  # fmt: skip
        _check_call(processes, command, run_dir / f"evaluate_{split}.log", f"evaluation of {spec.run_id} on {split}")
        scores = json.loads(result.read_text())
        metrics[split] = _kept_metrics(scores)
        if "by_form" in scores:  # the built-in benchmark: the metrics of each expression form
            by_form[split] = {form: _kept_metrics(form_scores) for form, form_scores in scores["by_form"].items()}
    model, run_config, state = load_model_from_checkpoint(run_dir / "last.pt")
    if state["step"] != spec.steps:
        raise RunFailed(f"{spec.run_id} stopped at step {state['step']}, not {spec.steps} (see {run_dir}/train.log)")
    train_seconds = float(state["train_seconds"])
    return {
        **dataclasses.asdict(spec),
        "metrics": metrics,
        **({"by_form": by_form} if by_form else {}),
        "parameters": count_parameters(model),
        "saved_activation_bytes": saved_activation_bytes(model, run_config),
        "curve": learning_curve(run_dir),
        "steps_per_second": spec.steps / train_seconds if train_seconds > 0 else None,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "resumed": resumed,
        "commit": commit,
        **({"cpu_capability": cpu_capability} if cpu_capability else {}),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_all(
    specs: Iterable[RunSpec],
    output_dir: Path,
    *,
    jobs: int = 1,
    on_record: Callable[[dict[str, Any]], object] | None = None,
    cpu_capability: str | None = None,
) -> list[str]:
    """Execute ``specs`` with ``jobs`` runs at a time, appending each record to ``runs.jsonl`` as it finishes.

    Args:
        specs: The runs (those already recorded should be left out by the caller).
        output_dir: The ablation's output folder.
        jobs: Runs at a time.
        on_record: Called with each new record (e.g. to refresh the reports).
        cpu_capability: A key of :data:`CPU_CAPABILITIES` to hold every run to, or None for the machine's best.
            Either way each record keeps the instruction set its runs used (``cpu_capability``).

    Returns:
        One message per failed run (the others still ran).
    """
    commit = source_commit()
    processes = _Processes(cpu_capability)
    specs = list(specs)
    used = cpu_capability_of(processes.environment) if specs else None
    write_lock = threading.Lock()
    failures: list[str] = []

    def one(spec: RunSpec) -> None:
        if processes.stopping.is_set():  # stopped while this run waited for a worker: it never starts
            return
        print(f"[ablate] {spec.run_id}: training {spec.steps} steps", flush=True)
        record = execute_run(spec, output_dir, commit=commit, processes=processes, cpu_capability=used)
        with write_lock:
            append_record(output_dir, record)
            oiou = record["metrics"][spec.eval_splits[0]]["overall_iou"]
            print(f"[ablate] {spec.run_id}: {spec.eval_splits[0]} overall IoU {oiou:.4f}, "
                  f"{record['wall_seconds']:.0f} s", flush=True)  # fmt: skip
            if on_record is not None:
                on_record(record)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, spec): spec for spec in specs}
        try:
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    if not isinstance(error, (RunFailed, InputError)):
                        raise error
                    failures.append(f"{futures[future].run_id}: {error}")
                    print(f"[ablate] {futures[future].run_id} failed: {error}", file=sys.stderr, flush=True)
        except BaseException:
            processes.stop()  # the trainers save last.pt on SIGTERM: the same command resumes them
            pool.shutdown(cancel_futures=True)
            raise
    return failures
