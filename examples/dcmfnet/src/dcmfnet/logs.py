"""JSON-lines logs: a training run's ``metrics.jsonl`` and the ablations' ``runs.jsonl``, one reader for both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcmfnet.errors import InputError

__all__ = ["METRICS_FILE", "append_json_line", "read_json_lines", "read_metrics"]

#: A training run's log: one JSON object per epoch or scheduled validation (``epoch``, ``step``, losses, metrics).
METRICS_FILE = "metrics.jsonl"


def read_json_lines(path: str | Path, required_key: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, blank lines skipped, each checked to hold ``required_key``.

    Raises:
        InputError: A line that is not JSON or not an object with ``required_key``.
    """
    path = Path(path)
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path} line {number} is not JSON ({error.msg})") from None
        if not isinstance(entry, dict) or required_key not in entry:
            raise InputError(f"{path} line {number}: expected a JSON object with a {required_key}, got {line[:80]!r}")
        entries.append(entry)
    return entries


def append_json_line(path: str | Path, record: dict[str, Any], *, sort_keys: bool = False) -> None:
    """Append ``record`` as one line of the JSON-lines file ``path``."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=sort_keys) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` in file order.

    Raises:
        InputError: No such log, or a line that is not a JSON object with a ``step``.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise InputError(f"no training log {path}")
    return read_json_lines(path, "step")
