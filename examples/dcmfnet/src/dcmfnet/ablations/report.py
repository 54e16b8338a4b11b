"""Markdown tables and plots of the ablation runs, beside the paper's numbers (Tables 2, 4, 5, 6), and Table P.

Per paper table, ``tableN.md`` has per row the mean ± 95% CI over seeds of every metric on the
main split (the first evaluated, ``val``), the paper's value beside it, the paired difference to
the full model with its CI, and the verdict; the other splits get the overall IoU and its
verdict; the table's resolution is the CI half-width of the full model's overall IoU.
``tableN.png`` plots overall IoU per row (against L in Table 4, against the parameter count in
Table 6) and the paired differences beside the paper's. Table P, which the paper does not have, reads each
difference on its own (above / below the full model, or within noise) and adds each row's cost: training
time per step, saved activations per step (:mod:`~dcmfnet.ablations.cost`) and parameters. Every table
ends with the rows' mean learning curves (val overall IoU at each logged step) and ``tableN_curves.png``, and,
on the built-in benchmark, the rows' overall IoU per expression form (where a row wins or loses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcmfnet.ablations.plots import plot_curves, plot_table
from dcmfnet.ablations.records import SETTINGS, read_records
from dcmfnet.ablations.runner import METRIC_KEYS
from dcmfnet.ablations.statistics import Interval, compare, verdict
from dcmfnet.ablations.summary import RowResult, summarize
from dcmfnet.ablations.tables import FULL_KEY, TABLES, Row, Table, TableId
from dcmfnet.errors import InputError

__all__ = ["table_markdown", "write_reports"]

_NAMES = {"overall_iou": "overall IoU", "mean_iou": "mean IoU", **{f"precision@{t}": f"Prec@{t}" for t in
          ("0.5", "0.6", "0.7", "0.8", "0.9")}}  # fmt: skip


def _percent(interval: Interval | None, *, signed: bool = False) -> str:
    if interval is None:
        return "—"
    sign = "+" if signed else ""
    text = f"{100 * interval.mean:{sign}.2f}"
    return text if interval.half_width is None else f"{text} ± {100 * interval.half_width:.2f}"


def _paper_difference(table: Table, row: Row) -> float | None:
    full = next(r for r in table.rows if r.is_full)
    if row.is_full or "overall_iou" not in row.paper or "overall_iou" not in full.paper:
        return None
    return round(row.paper["overall_iou"] - full.paper["overall_iou"], 2)


def _header(table: Table, records: Sequence[dict[str, Any]], results: list[RowResult], main: str) -> list[str]:
    first = records[0]
    seeds = sorted({int(record["seed"]) for record in records})
    commits = sorted({str(record.get("commit")) for record in records})
    overrides = " ".join(f"`{item}`" for item in first["global_overrides"]) or "none"
    full = next(result for result in results if result.row.is_full)
    full_interval = full.metrics.get(main, {}).get("overall_iou")
    if full_interval is None:
        resolution = "no run of the full model yet."
    elif full_interval.half_width is None:
        resolution = f"the full model's {main} overall IoU is {_percent(full_interval)} (one seed: no CI yet)."
    else:
        resolution = (
            f"the full model's {main} overall IoU is {_percent(full_interval)}: 95% CI half-width "
            f"{100 * full_interval.half_width:.2f} points over {full_interval.count} seeds."
        )
    paired = [(result.differences[main], result.row) for result in results if result.differences.get(main)]
    widths = [(interval.half_width, interval.count, row) for interval, row in paired if interval.half_width is not None]
    if widths:
        width, count, row = max(widths, key=lambda item: item[0])
        resolution += (f" The widest paired CI of Δ is ± {100 * width:.2f} points ({row.paper_row}, {count} seeds); "
                       f"{sum(w <= 0.01 for w, _, _ in widths)} of {len(widths)} rows are within ± 1.00 "
                       "(the precision docs/guides/ablations.rst aims at).")  # fmt: skip
    return [
        f"# Table {table.number}: {table.title}",
        "",
        f"Dataset `{first['dataset']}` (config `{first['config']}`), {first['steps']} optimizer steps per run, "
        f"seeds {', '.join(map(str, seeds))}, extra overrides {overrides}, commit {', '.join(commits)}.",
        "",
        "Values in percent: mean ± half-width of the 95% Student-t confidence interval over seeds (S − 1 degrees "
        "of freedom). Δ is the paired difference to the full model (same seed: same initial weights where the "
        "shapes allow, same data order) with its 95% CI. Verdict: the paper's direction *holds* when the CI of Δ "
        "excludes 0 on the paper's side, *reverses* when it excludes 0 on the other side, and is *within noise* "
        "when it contains 0. The paper's values are RefCOCO val."
        if table.x_axis != "cost"
        else "Δ is read on its own: *above* or *below the full model* when its CI excludes 0, *within noise* when it "
        "contains 0 (the paper has no such table). Cost: training seconds per optimizer step (mean ± CI over "
        "seeds; one thread, two runs side by side on a shared 2-core machine, so compare rows, not machines), "
        "bytes saved for backward by one training step at the run's batch (docs/guides/benchmarks.rst).",
        "",
        f"**Resolution**: {resolution}",
        "",
    ]


def table_markdown(table: Table, records: Sequence[dict[str, Any]]) -> str:
    """The markdown report of ``table`` from the records of one output folder.

    Raises:
        InputError: No record, or records of different settings (config, steps …).
    """
    if not records:
        raise InputError(f"no runs recorded for Table {table.number}")
    for name in SETTINGS:
        values = {repr(record.get(name)) for record in records}
        if len(values) > 1:
            raise InputError(f"the runs mix several {name}: {', '.join(sorted(values))}; report them apart")
    splits = list(records[0]["eval_splits"])
    main = splits[0]
    results = summarize(table, records, splits)
    lines = _header(table, records, results, main)
    lines += _overall_iou_section(table, results, main)
    keys = [key for key in METRIC_KEYS if key != "overall_iou"]
    lines += ["", f"## Every metric ({main}): ours (paper)", "",
              "| paper row | model | " + " | ".join(_NAMES[key] for key in keys) + " |",
              "|---|---|" + "---|" * len(keys)]  # fmt: skip
    for result in results:
        cells = []
        for key in keys:
            paper = result.row.paper.get(key)
            cell = _percent(result.metrics.get(main, {}).get(key))
            cells.append(cell if paper is None else f"{cell} ({paper:.2f})")
        lines.append(f"| {result.row.paper_row} | {result.row.describe()} | " + " | ".join(cells) + " |")
    for split in splits[1:]:
        lines += ["", f"## Overall IoU ({split})", "",
                  "| paper row | model | overall IoU | Δ overall IoU | paper Δ (val) | verdict |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for result in results:
            paper_difference = _paper_difference(table, result.row)
            difference = result.differences[split]
            lines.append(
                f"| {result.row.paper_row} | {result.row.describe()} "
                f"| {_percent(result.metrics.get(split, {}).get('overall_iou'))} "
                f"| {'reference' if result.row.is_full else _percent(difference, signed=True)} "
                f"| {'—' if paper_difference is None else f'{paper_difference:+.2f}'} "
                f"| {_read(difference, paper_difference, table)} |"
            )
    lines += ["", f"![Table {table.number}](table{table.number}.png)", ""]
    lines += _curves_section(table, results)
    lines += _forms_section(results, main)
    return "\n".join(lines)


def _read(difference: Interval | None, paper_difference: float | None, table: Table) -> str:
    return compare(difference) if table.x_axis == "cost" else verdict(difference, paper_difference)


def _cost_cells(result: RowResult) -> str:
    speed = result.seconds_per_step
    seconds = "—" if speed is None else f"{1000 * speed.mean:.0f}" + (
        "" if speed.half_width is None else f" ± {1000 * speed.half_width:.0f}")  # fmt: skip
    saved = result.saved_activation_bytes
    return f"| {seconds} | {'—' if saved is None else f'{saved / 2**20:.1f}'} "


def _overall_iou_section(table: Table, results: Sequence[RowResult], main: str) -> list[str]:
    cost = table.x_axis == "cost"
    lines = [
        f"## Overall IoU ({main})",
        "",
        "| paper row | model | seeds | parameters | overall IoU | paper | Δ overall IoU | paper Δ | verdict |"
        + (" ms / step | saved MiB / step |" if cost else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if cost else ""),
    ]
    for result in results:
        row, paper_difference = result.row, _paper_difference(table, result.row)
        parameters = "—" if result.parameters is None else f"{result.parameters / 1e6:.3f}M"
        if row.paper_params is not None:
            parameters += f" (paper {row.paper_params:.2f}M)"
        difference = result.differences[main]
        paper = row.paper.get("overall_iou")
        ours = _percent(result.metrics.get(main, {}).get("overall_iou"))
        lines.append(
            f"| {row.paper_row} | {row.describe()} | {len(result.seeds)} | {parameters} "
            f"| {ours} | {'—' if paper is None else f'{paper:.2f}'} "
            f"| {'reference' if row.is_full else _percent(difference, signed=True)} "
            f"| {'—' if paper_difference is None else f'{paper_difference:+.2f}'} "
            f"| {_read(difference, paper_difference, table)} " + (_cost_cells(result) + "|" if cost else "|")
        )
    return lines


def _curves_section(table: Table, results: Sequence[RowResult]) -> list[str]:
    """The mean learning curves as a table: val overall IoU (percent) per logged step and row."""
    curves = {result.row.key: result for result in results if result.curve}
    if not curves:
        return []
    steps = sorted({step for result in curves.values() for step, _, _ in result.curve})
    lines = ["## Learning curves (val overall IoU, mean over seeds)", "",
             "| model | " + " | ".join(map(str, steps)) + " |", "|---|" + "---|" * len(steps)]  # fmt: skip
    for result in curves.values():
        values = {step: value for step, value, _ in result.curve}
        lines.append(f"| {result.row.describe()} | "
                     + " | ".join(f"{100 * values[s]:.1f}" if s in values else "—" for s in steps) + " |")  # fmt: skip
    lines += ["", f"![Table {table.number} learning curves](table{table.number}_curves.png)", ""]
    return lines


def _forms_section(results: Sequence[RowResult], main: str) -> list[str]:
    """Overall IoU (percent) per expression form and row, where the records score forms (the built-in benchmark)."""
    scored = [result for result in results if result.by_form]
    if not scored:
        return []
    samples = {form: count for result in scored for form, (_, count) in result.by_form.items()}
    forms = sorted(samples)
    lines = [f"## By expression form ({main} overall IoU, mean over seeds)", "",
             "| model | " + " | ".join(f"{form} (n={samples[form]})" for form in forms) + " |",
             "|---|" + "---|" * len(forms)]  # fmt: skip
    for result in scored:
        cells = [f"{100 * result.by_form[form][0]:.1f}" if form in result.by_form else "—" for form in forms]
        lines.append(f"| {result.row.describe()} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _tables_with_runs(records: Sequence[dict[str, Any]]) -> list[TableId]:
    """The tables with a recorded row other than the full model's, or every table if there is none."""
    recorded = {record["row"] for record in records} - {FULL_KEY}
    found = [number for number, table in TABLES.items() if recorded & set(table.keys())]
    return found or list(TABLES)


def write_reports(output_dir: str | Path, tables: Sequence[TableId] | None = None) -> list[Path]:
    """Write ``tableN.md`` and ``tableN.png`` in ``output_dir`` from its ``runs.jsonl``.

    Args:
        output_dir: The ablation's output folder.
        tables: The table numbers; default: those with recorded rows.

    Returns:
        The files written.

    Raises:
        InputError: ``runs.jsonl`` is missing or empty.
    """
    output_dir = Path(output_dir)
    records = read_records(output_dir)
    if not records:
        raise InputError(f"no runs recorded in {output_dir / 'runs.jsonl'}")
    written = []
    for number in tables or _tables_with_runs(records):
        table = TABLES[number]
        keys = set(table.keys())
        mine = [record for record in records if record["row"] in keys]
        if not mine:
            continue
        markdown = output_dir / f"table{number}.md"
        markdown.write_text(table_markdown(table, mine), encoding="utf-8")
        results = summarize(table, mine, list(mine[0]["eval_splits"]))
        written += [markdown, plot_table(table, results, mine[0]["eval_splits"][0], output_dir / f"table{number}.png")]
        if any(result.curve for result in results):
            written.append(plot_curves(table, results, output_dir / f"table{number}_curves.png"))
    return written
