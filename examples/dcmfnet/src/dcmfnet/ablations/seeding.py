"""Seeds added to a table until every row reads to a chosen precision, or its seeds are spent.

A row gets another seed while the 95% CI half-width of its paired difference to the full model
(overall IoU on the main split, :func:`~dcmfnet.ablations.statistics.paired_difference`) is wider than
the target, up to a maximum number of seeds. The rule looks at the width of the interval only, never at
the sign or size of the difference, so it does not stop a row because it looks significant. The full model
runs at every seed some row needs (the differences are paired by seed).

Example::

    >>> from dcmfnet.ablations.tables import TABLES
    >>> records = [{"row": row, "seed": seed, "metrics": {"val": {"overall_iou": value}}}
    ...            for row, values in {"full": [0.60, 0.62], "gate-convgru": [0.55, 0.60]}.items()
    ...            for seed, value in enumerate(values)]
    >>> next_seeds(TABLES[6].rows, records, split="val", half_width=0.01, max_seeds=10)
    {'gate-convlstm': 0, 'gate-convgru': 2}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dcmfnet.ablations.statistics import paired_difference
from dcmfnet.ablations.tables import Row

__all__ = ["next_seeds", "wide_rows"]


def _scores(records: Sequence[dict[str, Any]], key: str, split: str) -> dict[int, float]:
    """Seed → overall IoU on ``split`` of the recorded runs of row ``key``."""
    return {int(r["seed"]): float(r["metrics"][split]["overall_iou"]) for r in records if r["row"] == key}


def wide_rows(rows: Sequence[Row], records: Sequence[dict[str, Any]], *, split: str, half_width: float) -> list[str]:
    """The keys of the rows (not the full model) whose paired CI is wider than ``half_width`` or not yet defined.

    Args:
        rows: The table rows (the full model among them; rows sharing a key count once).
        records: The runs recorded so far (``runs.jsonl``).
        split: The split whose overall IoU is read (the tables' main split).
        half_width: The target 95% CI half-width of the paired difference, a fraction (0.01 = 1 point).

    Returns:
        Row keys in table order: rows with fewer than two seeds shared with the full model, and rows whose
        half-width exceeds ``half_width``.
    """
    full = next(row for row in rows if row.is_full)
    reference = _scores(records, full.key, split)
    wide = []
    for key in dict.fromkeys(row.key for row in rows if not row.is_full):
        difference = paired_difference(_scores(records, key, split), reference)
        if difference is None or difference.half_width is None or difference.half_width > half_width:
            wide.append(key)
    return wide


def next_seeds(
    rows: Sequence[Row], records: Sequence[dict[str, Any]], *, split: str, half_width: float, max_seeds: int
) -> dict[str, int]:
    """The next seed of every row still wider than ``half_width`` that has fewer than ``max_seeds`` seeds.

    Args:
        rows: The table rows (the full model among them).
        records: The runs recorded so far.
        split: The split whose overall IoU is read.
        half_width: The target 95% CI half-width of the paired difference, a fraction.
        max_seeds: The most seeds a row gets.

    Returns:
        Row key → its smallest seed not yet recorded, for the rows of :func:`wide_rows` below ``max_seeds``
        seeds; empty when every row is narrow enough or out of seeds. The caller runs the full model at
        these seeds too.

    Raises:
        ValueError: ``half_width`` is not positive or ``max_seeds`` is below 2 (no CI from one seed).
    """
    if not half_width > 0:
        raise ValueError(f"half_width must be positive, got {half_width!r}")
    if max_seeds < 2:
        raise ValueError(f"max_seeds must be at least 2 (a CI needs two seeds), got {max_seeds!r}")
    seeds: dict[str, int] = {}
    for key in wide_rows(rows, records, split=split, half_width=half_width):
        recorded = set(_scores(records, key, split))
        if len(recorded) < max_seeds:
            seeds[key] = next(seed for seed in range(len(recorded) + 1) if seed not in recorded)
    return seeds
