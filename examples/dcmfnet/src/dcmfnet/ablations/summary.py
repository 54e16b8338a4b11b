"""Each row of an ablation table summarised over its seeds: mean and 95% CI, paired difference to the full model.

What :mod:`~dcmfnet.ablations.report` writes as markdown and :mod:`~dcmfnet.ablations.plots` draws.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dcmfnet.ablations.runner import METRIC_KEYS
from dcmfnet.ablations.statistics import Interval, mean_interval, paired_difference
from dcmfnet.ablations.tables import FULL_KEY, Row, Table

__all__ = ["RowResult", "summarize"]

_Key = TypeVar("_Key", bound=Hashable)


@dataclass(frozen=True)
class RowResult:
    """One row's runs, summarised.

    Attributes:
        row: The table row.
        seeds: The seeds recorded for it.
        parameters: Its parameter count (None without runs).
        metrics: Split → metric → mean and CI over seeds (fractions, not percent).
        differences: Split → paired difference of overall IoU to the full model (None for the full model).
        seconds_per_step: Training seconds per optimizer step, mean and CI over seeds (None without runs).
        saved_activation_bytes: Bytes saved for backward by one training step (None if not recorded).
        curve: ``(step, mean val overall IoU over the seeds that logged that step, seeds)`` of the learning curves.
        by_form: Expression form → (mean overall IoU of its samples on the main split over the seeds that scored
            it, its sample count), sorted by form; empty where the records hold no ``by_form`` (only the built-in
            benchmark has forms, and records written before forms were scored have none).
    """

    row: Row
    seeds: tuple[int, ...]
    parameters: int | None
    metrics: dict[str, dict[str, Interval]]
    differences: dict[str, Interval | None]
    seconds_per_step: Interval | None = None
    saved_activation_bytes: int | None = None
    curve: tuple[tuple[int, float, int], ...] = ()
    by_form: dict[str, tuple[float, int]] = field(default_factory=dict)


def summarize(table: Table, records: Sequence[dict[str, Any]], splits: Sequence[str]) -> list[RowResult]:
    """The results of every row of ``table`` (rows without a record included, empty)."""
    by_row: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        by_row.setdefault(record["row"], {})[int(record["seed"])] = record
    full = by_row.get(FULL_KEY, {})
    results = []
    for row in table.rows:
        runs = by_row.get(row.key, {})
        metrics = {
            split: {key: mean_interval([run["metrics"][split][key] for run in runs.values()]) for key in METRIC_KEYS}
            for split in splits
            if runs
        }
        differences = {
            split: None if row.is_full else paired_difference(
                {seed: run["metrics"][split]["overall_iou"] for seed, run in runs.items()},
                {seed: run["metrics"][split]["overall_iou"] for seed, run in full.items()},
            )
            for split in splits
        }  # fmt: skip
        parameters = next((run.get("parameters") for run in runs.values()), None)
        speeds = [run["train_seconds"] / run["steps"] for run in runs.values() if run.get("train_seconds")]
        saved = next((run["saved_activation_bytes"] for run in runs.values() if "saved_activation_bytes" in run), None)
        results.append(RowResult(
            row, tuple(sorted(runs)), parameters, metrics, differences,
            seconds_per_step=mean_interval(speeds) if speeds else None,
            saved_activation_bytes=saved, curve=_mean_curve([run.get("curve", []) for run in runs.values()]),
            by_form=_mean_by_form(list(runs.values()), splits[0]),
        ))  # fmt: skip
    return results


def _means(pairs: Iterable[tuple[_Key, float]]) -> dict[_Key, tuple[float, int]]:
    """Per key, the mean of its values and how many there were (runs that lack a key do not count)."""
    by_key: dict[_Key, list[float]] = {}
    for key, value in pairs:
        by_key.setdefault(key, []).append(float(value))
    return {key: (sum(values) / len(values), len(values)) for key, values in by_key.items()}


def _mean_curve(curves: Sequence[Sequence[Sequence[float]]]) -> tuple[tuple[int, float, int], ...]:
    """The mean learning curve: per logged step, the mean over the runs that logged it, and how many did."""
    means = _means((int(step), value) for curve in curves for step, value in curve)
    return tuple((step, mean, count) for step, (mean, count) in sorted(means.items()))


def _mean_by_form(runs: Sequence[dict[str, Any]], split: str) -> dict[str, tuple[float, int]]:
    """Per expression form of ``split``: the mean overall IoU over the runs that scored it, and its sample count."""
    scored = [(form, scores) for run in runs for form, scores in run.get("by_form", {}).get(split, {}).items()]
    means = _means((form, scores["overall_iou"]) for form, scores in scored)
    samples = {form: int(scores["num_samples"]) for form, scores in scored}  # the same split at every seed
    return {form: (means[form][0], samples[form]) for form in sorted(means)}
