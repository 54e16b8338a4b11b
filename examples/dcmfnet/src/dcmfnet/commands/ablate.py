"""Run the paper's ablation tables (2, 4, 5, 6) and Table P at equal optimizer steps over several seeds; report them.

Usage::

    dcmfnet ablate --table 2 4 5 6 --seeds 0-4 --steps 1500 --dataset refcocog_like --jobs 2 \\
        --output-dir ablations/refcocog_like
    dcmfnet ablate --table 4 --rows L1,L3 --seeds 0,1,2 --config refcocog_umd_resnet101 --output-dir D \\
        data.root=/data/refer
    dcmfnet ablate --table P --seeds 0-3 --dataset refcocog_like --jobs 2 --output-dir D   # Table P: IGF vs peers
    dcmfnet ablate --table P --seeds 0-3 --until-ci 1.0 --max-seeds 10 --config C --jobs 2 --output-dir D
    dcmfnet ablate --report-only --output-dir ablations/refcocog_like
    dcmfnet ablate --only mlff-concat-s3 --from ablations/refcocog_like --output-dir /tmp/rerun
    dcmfnet ablate --diagnose gate-convgru --output-dir ablations/refcocog_like

Each run (one row's model at one seed) trains for exactly ``--steps`` optimizer steps in
``OUTPUT/runs/RUN_ID/`` (a subprocess with one thread), is scored on every ``--eval-splits`` split
from its last checkpoint, and is appended to ``OUTPUT/runs.jsonl``. The full model (Table 2 row 4
= L 5 = all fusions = ASGate) runs once per seed for every table. Running the same command again
skips recorded runs and resumes interrupted ones. ``OUTPUT/tableN.md`` and ``tableN.png`` are
rewritten after every run; ``OUTPUT/COMMAND.txt`` keeps every command that wrote to the folder.
``key=value`` overrides go to every run (not the model switches, seeds or steps: the runner sets
those). ``--diagnose ROW`` compares a recorded row with the full model (loss curves; gradient norms
and output scales at init) and writes ``OUTPUT/diagnose_ROW.md``.

``--cpu-capability avx2`` holds every run to one CPU instruction set: a run repeats bit for bit on the
same machine, but AVX2 and AVX-512 kernels round differently and training amplifies it; each record
keeps the instruction set it ran with (``cpu_capability``), and ``--only`` reruns with the recorded one.

``--until-ci POINTS`` keeps going once ``--seeds`` are recorded: every row whose paired 95% CI of val
overall IoU against the full model is wider than ``± POINTS`` gets its next seed (and the full model
that seed), round after round, until every row is narrow enough or has ``--max-seeds`` seeds
(:mod:`dcmfnet.ablations.seeding`; the rule reads the width of the interval, never the difference).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from dcmfnet.ablations.diagnose import diagnose
from dcmfnet.ablations.records import check_same_settings, read_records
from dcmfnet.ablations.report import write_reports
from dcmfnet.ablations.runner import CPU_CAPABILITIES, METRIC_KEYS, RunSpec, plan_runs, run_all, source_commit
from dcmfnet.ablations.seeding import next_seeds
from dcmfnet.ablations.tables import FULL_MODEL, LAYER_SWITCHES, TABLES, Row, TableId, table_id
from dcmfnet.commands.base import run_command
from dcmfnet.errors import InputError
from dcmfnet.train_config import load_run_config

__all__ = ["DATASET_KINDS", "add_arguments", "main", "parse_seeds", "run"]

#: Built-in benchmark kinds of ``--dataset``; each names the shipped run config ``ablation_<kind>``.
DATASET_KINDS = ("refcoco_like", "refcocoplus_like", "refcocog_like")
DEFAULT_SEEDS = "0-2"


def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,1,2"`` or ``"0-2,7"`` → the seeds, in order, without repeats.

    Raises:
        InputError: Not a list of non-negative ints and ranges.
    """
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            numbers = range(int(first), int(last) + 1) if last else [int(first)]
            seeds += [seed for seed in numbers if seed not in seeds]
    except ValueError:
        raise InputError(f"--seeds expects seeds and ranges like 0-4 or 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise InputError(f"--seeds expects non-negative seeds like 0-4 or 0,1,2, got {text!r}")
    return seeds


def _table_argument(text: str) -> TableId:
    try:
        return table_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ablate`` subcommand's arguments; ``key=value`` overrides may follow anywhere."""
    parser.add_argument(
        "--table",
        type=_table_argument,
        nargs="+",
        action="extend",
        help=f"tables to run: {', '.join(map(str, TABLES))} (several allowed; default: all, or those holding --rows)",
    )
    parser.add_argument(
        "--rows",
        default=None,
        help="only these rows, by key, comma-separated (e.g. L1,L3,L7); the full model always runs",
    )
    parser.add_argument("--seeds", default=None, help=f"seeds, e.g. 0-4 or 0,1,2 (default {DEFAULT_SEEDS})")
    parser.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per run (default: the config's train.max_steps)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", choices=DATASET_KINDS, help="a built-in benchmark kind: runs the shipped config ablation_<kind>"
    )
    source.add_argument("--config", help="any run config (shipped name or YAML file), e.g. a REFER config")
    parser.add_argument(
        "--until-ci",
        type=float,
        default=None,
        metavar="POINTS",
        help="after --seeds, add seeds to every row whose paired 95%% CI of overall IoU (main split) is wider "
        "than +-POINTS, e.g. 1.0, until none is or each has --max-seeds",
    )
    parser.add_argument(
        "--max-seeds", type=int, default=10, help="with --until-ci: the most seeds a row gets (default 10)"
    )
    parser.add_argument(
        "--cpu-capability",
        choices=tuple(CPU_CAPABILITIES),
        default=None,
        help="hold every run to this CPU instruction set (runs repeat bit for bit on any machine that has it; "
        "default: the machine's best; --only defaults to the recorded run's)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each one process with one thread)")
    parser.add_argument(
        "--eval-splits",
        default="val,test",
        help="splits scored after training, comma-separated; the first is the tables' main split",
    )
    parser.add_argument("--output-dir", required=True, help="folder of runs.jsonl, the tables, plots and runs/")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--report-only", action="store_true", help="only rewrite the tables and plots from runs.jsonl")
    mode.add_argument(
        "--only",
        metavar="RUN_ID",
        default=None,
        help="rerun one recorded run (from --from) into a new --output-dir and compare its metrics",
    )
    mode.add_argument(
        "--diagnose",
        metavar="ROW",
        default=None,
        help="compare a row's recorded loss curves, and its gradient norms and output scales at init (seed: "
        "--seeds, default the first recorded), with the full model's; writes OUTPUT/diagnose_ROW.md",
    )
    parser.add_argument("--from", dest="from_dir", default=None, help="with --only: the folder that recorded it")
    parser.add_argument("--dry-run", action="store_true", help="list the runs (and which are recorded); run nothing")
    parser.epilog = "Row keys: " + ", ".join(dict.fromkeys(r.key for t in TABLES.values() for r in t.rows)) + "."


def _select_rows(tables: Sequence[TableId] | None, keys: str | None) -> tuple[list[TableId], list[Row]]:
    """The tables and their rows that the options select (the full model always among them)."""
    wanted = [key.strip() for key in keys.split(",") if key.strip()] if keys else []
    if tables:
        numbers = list(dict.fromkeys(tables))
    else:
        numbers = [n for n, table in TABLES.items() if not wanted or set(wanted) & set(table.keys())]
    rows = [row for number in numbers for row in TABLES[number].rows]
    unknown = [key for key in wanted if key not in {row.key for row in rows}]
    if unknown:
        valid = ", ".join(dict.fromkeys(row.key for row in rows))
        raise InputError(f"unknown row {', '.join(unknown)} for tables {numbers}; valid rows: {valid}")
    if wanted:
        rows = [row for row in rows if row.key in wanted or row.is_full]
    return numbers, rows


def _command_line(args: argparse.Namespace, tables: Sequence[TableId], steps: int | None, seeds: str) -> str:
    """The command as it could be typed again (with the resolved steps and seeds)."""
    words = ["dcmfnet", "ablate"]
    if args.only:
        words += ["--only", args.only, "--from", args.from_dir]
    else:
        words += ["--table", *map(str, tables)]
        words += ["--rows", args.rows] if args.rows else []
        words += ["--seeds", seeds, "--steps", str(steps)]
        words += ["--until-ci", str(args.until_ci), "--max-seeds", str(args.max_seeds)] if args.until_ci else []
        words += ["--dataset", args.dataset] if args.dataset else ["--config", args.config]
        words += ["--jobs", str(args.jobs), "--eval-splits", args.eval_splits]
    words += ["--cpu-capability", args.cpu_capability] if args.cpu_capability else []
    words += ["--output-dir", args.output_dir, *args.overrides]
    return shlex.join(words)


def _note_command(output_dir: Path, command: str) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "COMMAND.txt").open("a", encoding="utf-8") as handle:
        handle.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S %z')}, commit {source_commit()}\n{command}\n")


def _interrupt_on_sigterm() -> Any:
    def handle(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handle)


def _execute(
    specs: list[RunSpec], output_dir: Path, jobs: int, tables: Sequence[TableId], cpu_capability: str | None
) -> int:
    """Run ``specs``, refreshing the reports after each; the exit status."""
    previous = _interrupt_on_sigterm()
    try:
        failures = run_all(specs, output_dir, jobs=jobs, cpu_capability=cpu_capability,
                           on_record=lambda record: write_reports(output_dir, tables))  # fmt: skip
    except KeyboardInterrupt:
        print("[ablate] stopped: the trainers saved last.pt; run the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if read_records(output_dir):
        for path in write_reports(output_dir, tables):
            print(f"[ablate] wrote {path}")
    if failures:
        print(f"[ablate] {len(failures)} run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def _run_tables(args: argparse.Namespace) -> int:
    if not (args.dataset or args.config):
        raise InputError("choose the data: --dataset KIND (a built-in benchmark) or --config FILE")
    if args.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {args.jobs}")
    if args.until_ci is not None and not args.until_ci > 0:
        raise InputError(f"--until-ci expects a positive CI half-width in points, e.g. 1.0, got {args.until_ci}")
    if args.max_seeds < 2:
        raise InputError(f"--max-seeds must be at least 2 (a CI needs two seeds), got {args.max_seeds}")
    tables, rows = _select_rows(args.table, args.rows)
    config = f"ablation_{args.dataset}" if args.dataset else args.config
    base = load_run_config(config, args.overrides)  # fails fast on a bad config or override
    steps = args.steps if args.steps is not None else base.train.max_steps
    if steps is None or steps < 1:
        raise InputError(f"runs are compared at equal optimizer steps: pass --steps N (N >= 1), got {steps}")
    pinned = {name: getattr(base.model, name) for name, value in LAYER_SWITCHES.items()
              if getattr(base.model, name) != value}  # fmt: skip
    if pinned:
        raise InputError(f"config {config} sets {pinned}; the tables' rows expect {dict(LAYER_SWITCHES)} "
                         "(only the rows that change it set another value)")  # fmt: skip
    differing = {name: getattr(base.model, name) for name, value in FULL_MODEL.items()
                 if getattr(base.model, name) != value}  # fmt: skip
    if differing:
        print(f"[ablate] note: config {config} has {differing}; the tables' full model is {dict(FULL_MODEL)} "
              "(docs/guides/reproducing.rst), every run sets these switches itself", flush=True)  # fmt: skip
    seeds = args.seeds or DEFAULT_SEEDS
    specs = plan_runs(
        rows, parse_seeds(seeds), steps=steps, config=config, dataset=base.data.dataset,
        global_overrides=args.overrides, eval_splits=[s.strip() for s in args.eval_splits.split(",") if s.strip()],
    )  # fmt: skip
    for spec in specs[: len(specs) // len(parse_seeds(seeds))]:
        load_run_config(config, spec.train_overrides())  # every row's model is valid before hours of runs
    output_dir = Path(args.output_dir)
    records = {record["run_id"]: record for record in read_records(output_dir)}
    check_same_settings(list(records.values()), specs[0].settings(), output_dir / "runs.jsonl")
    for spec in specs:
        if spec.run_id in records and records[spec.run_id]["overrides"] != list(spec.overrides):
            raise InputError(f"run {spec.run_id} was recorded with other model switches; use another --output-dir")
    pending = [spec for spec in specs if spec.run_id not in records]
    print(f"[ablate] tables {tables}: {len(specs)} runs, {len(specs) - len(pending)} recorded, {len(pending)} to run")
    if args.dry_run:
        for spec in specs:
            state = "recorded" if spec.run_id in records else "to run"
            print(f"  {spec.run_id:32s} {state:9s} {' '.join(spec.overrides)}")
        if args.until_ci:
            print(f"  then seeds for every row whose paired CI is wider than +-{args.until_ci} points "
                  f"(at most {args.max_seeds} seeds a row)")  # fmt: skip
        return 0
    _note_command(output_dir, _command_line(args, tables, steps, seeds))
    status = _execute(pending, output_dir, args.jobs, tables, args.cpu_capability)
    while status == 0 and args.until_ci:
        added = _seeds_until_narrow(rows, read_records(output_dir), specs[0], args.until_ci / 100, args.max_seeds)
        if not added:
            break
        print(f"[ablate] CI wider than +-{args.until_ci} points: " + ", ".join(s.run_id for s in added), flush=True)
        status = _execute(added, output_dir, args.jobs, tables, args.cpu_capability)
    return status


def _seeds_until_narrow(
    rows: Sequence[Row], records: list[dict[str, Any]], template: RunSpec, half_width: float, max_seeds: int
) -> list[RunSpec]:
    """The next round of ``--until-ci``: the runs (row and full model) of each wide row's next seed."""
    seeds = next_seeds(rows, records, split=template.eval_splits[0], half_width=half_width, max_seeds=max_seeds)
    full = next(row for row in rows if row.is_full)
    recorded = {record["run_id"] for record in records}
    planned: dict[str, RunSpec] = {}
    for row in rows:
        if row.key in seeds:
            for spec in plan_runs(
                [full, row], [seeds[row.key]], steps=template.steps, config=template.config,
                dataset=template.dataset, global_overrides=template.global_overrides,
                eval_splits=template.eval_splits,
            ):  # fmt: skip
                if spec.run_id not in recorded:
                    planned.setdefault(spec.run_id, spec)
    return list(planned.values())


def _run_only(args: argparse.Namespace) -> int:
    if not args.from_dir:
        raise InputError("--only RUN_ID needs --from DIR, the output folder that recorded the run")
    given = [name for name in ("table", "rows", "seeds", "steps", "dataset", "config") if getattr(args, name)]
    if given or args.overrides:
        raise InputError(f"--only reruns a run with its recorded settings; drop {given or args.overrides}")
    source, output_dir = Path(args.from_dir), Path(args.output_dir)
    if output_dir.resolve() == source.resolve():
        raise InputError("--only reruns into a new --output-dir, not the folder that recorded the run")
    records = {record["run_id"]: record for record in read_records(source)}
    if args.only not in records:
        raise InputError(f"no run {args.only!r} in {source / 'runs.jsonl'}; recorded: {', '.join(records) or 'none'}")
    recorded = records[args.only]
    spec = RunSpec.from_record(recorded)
    recorded_capability = str(recorded.get("cpu_capability", "")).lower()
    if args.cpu_capability is None and recorded_capability in CPU_CAPABILITIES:
        args.cpu_capability = recorded_capability  # the instruction set the run was recorded with
    _note_command(output_dir, _command_line(args, [], None, ""))
    reruns = {record["run_id"]: record for record in read_records(output_dir)}
    if spec.run_id not in reruns:
        status = _execute([spec], output_dir, 1, list(spec.table), args.cpu_capability)
        if status:
            return status
        reruns = {record["run_id"]: record for record in read_records(output_dir)}
    rerun = reruns[spec.run_id]
    print(
        f"{spec.run_id}: recorded in {source} (commit {recorded.get('commit')}, CPU "
        f"{recorded.get('cpu_capability', 'not recorded')}), rerun (commit {rerun.get('commit')}, CPU "
        f"{rerun.get('cpu_capability', 'not recorded')})"
    )
    print(f"{'split':8s} {'metric':15s} {'recorded':>10s} {'rerun':>10s} {'difference':>11s}")
    for split in spec.eval_splits:
        for key in METRIC_KEYS:
            before, after = recorded["metrics"][split][key], rerun["metrics"][split][key]
            print(f"{split:8s} {key:15s} {before:10.4f} {after:10.4f} {after - before:+11.4f}")
    return 0


def _run_diagnose(args: argparse.Namespace) -> int:
    given = [name for name in ("table", "rows", "steps", "dataset", "config", "from_dir") if getattr(args, name)]
    if given or args.overrides:
        raise InputError(f"--diagnose uses the recorded runs' settings; drop {given or args.overrides}")
    seeds = parse_seeds(args.seeds) if args.seeds else None
    if seeds is not None and len(seeds) != 1:
        raise InputError(f"--diagnose compares the initialization at one seed, got --seeds {args.seeds}")
    report = diagnose(args.output_dir, args.diagnose, seeds[0] if seeds else None)
    path = Path(args.output_dir) / f"diagnose_{args.diagnose}.md"
    path.write_text(report, encoding="utf-8")
    print(report, end="")
    print(f"[ablate] wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run, rerun, diagnose or report the ablations as the parsed arguments say; returns the exit status."""
    if args.only:
        return _run_only(args)
    if args.diagnose:
        return _run_diagnose(args)
    if args.report_only:
        for path in write_reports(args.output_dir, args.table):
            print(f"wrote {path}")
        return 0
    return _run_tables(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The same as ``dcmfnet ablate``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet ablate")
