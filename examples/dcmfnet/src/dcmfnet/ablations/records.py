"""``runs.jsonl``: one JSON record per finished ablation run, appended as runs finish.

A record holds what identifies the run (``run_id``, ``row``, ``table``, ``seed``, the overrides,
``steps``, ``config``, ``dataset``) and what it measured (``metrics`` per split with the keys of
:data:`dcmfnet.ablations.runner.METRIC_KEYS`, ``parameters``, ``steps_per_second``,
``train_seconds``, ``wall_seconds``, ``resumed``, ``commit``; on the built-in benchmark ``by_form``: per split
and expression form the same metrics over that form's samples, a key that older records lack).
``train_seconds`` is the trainer's own clock over the whole run; ``wall_seconds`` (training and
evaluation) covers only the invocation that finished the run, which for a ``resumed`` run (one that
continued from its ``last.pt``) is not the whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcmfnet.errors import InputError
from dcmfnet.logs import append_json_line, read_json_lines

__all__ = ["RUNS_FILE", "SETTINGS", "append_record", "check_same_settings", "read_records"]

RUNS_FILE = "runs.jsonl"
#: Record fields that every run of one output folder shares (runs are compared at equal settings).
SETTINGS = ("config", "dataset", "steps", "global_overrides", "eval_splits")


def read_records(output_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``output_dir/runs.jsonl`` in file order (none when the file does not exist).

    Raises:
        InputError: A line is not a JSON object with a ``run_id``.
    """
    path = Path(output_dir) / RUNS_FILE
    if not path.exists():
        return []
    return read_json_lines(path, "run_id")


def append_record(output_dir: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line of ``output_dir/runs.jsonl``."""
    append_json_line(Path(output_dir) / RUNS_FILE, record, sort_keys=True)


def check_same_settings(records: list[dict[str, Any]], settings: dict[str, Any], where: str | Path) -> None:
    """Refuse to mix runs of other settings (config, steps, overrides …) into one output folder.

    Raises:
        InputError: A record's setting differs from ``settings``; the message names both values.
    """
    for record in records:
        for name in SETTINGS:
            if name in settings and record.get(name) != settings[name]:
                raise InputError(
                    f"{where} holds run {record['run_id']} with {name}={record.get(name)!r}, but this command has "
                    f"{name}={settings[name]!r}; runs of one folder are compared at equal settings: "
                    "use another --output-dir"
                )
