"""Local Sphinx extension of the igf docs: numbers computed at build time, so they cannot rot.

Directives:

``.. igf-gate-costs::``
    A table of parameters and FLOPs of every built-in gate and of a whole
    :class:`igf.IterativeGatedFusion` using it, computed with
    :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device
    (shapes only: no memory, no arithmetic, a second of build time).
    Options: ``:channels:`` (default 256), ``:height:`` / ``:width:`` (default 30),
    ``:num-layers:`` (default 5).

``.. igf-benchmark-results::``
    Every ``*.md`` report that ``python -m benchmarks.run`` wrote under
    ``benchmarks/results/`` (its tables rendered as tables) with the PNG plots
    beside it, or,
    where none was committed, a sentence with the command that produces them.

``.. dcmfnet-ablation-results:: [FOLDER]``
    The same for the ``tableN.md`` reports of ``dcmfnet ablate`` committed under
    ``examples/dcmfnet/ablations/results/`` (or only its sub-folder ``FOLDER``), each with its ``tableN.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
ABLATIONS = ROOT / "examples" / "dcmfnet" / "ablations" / "results"


def gate_costs(channels: int, height: int, width: int, num_layers: int) -> list[dict[str, Any]]:
    """Parameters and FLOPs (``2 x`` multiply-adds of the convolutions) of each built-in gate.

    Returns one dict per gate name with keys ``gate``, ``params``, ``flops``,
    ``igf_params`` and ``igf_flops`` (a whole IGF with a vector guidance of
    ``channels`` channels and a guided map of ``channels`` channels).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from igf import GATES, IterativeGatedFusion

    def count(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
        with FlopCounterMode(display=False) as counter:
            module(*inputs)
        return int(counter.get_total_flops())

    meta = torch.device("meta")
    guided = torch.empty(1, channels, height, width, device=meta)
    sentence = torch.empty(1, channels, device=meta)
    rows = []
    for name, factory in GATES.items():
        gate = factory(channels, kernel_size=3, device=meta, dtype=None)
        igf = IterativeGatedFusion(channels, channels, num_layers=num_layers, gate=name, device=meta)
        rows.append(
            {
                "gate": name,
                "params": sum(p.numel() for p in gate.parameters()),
                "flops": count(gate, guided, guided),
                "igf_params": sum(p.numel() for p in igf.parameters()),
                "igf_flops": count(igf, sentence, guided),
            }
        )
    return rows


def parse_lines(directive: SphinxDirective, lines: list[str]) -> list[nodes.Node]:
    """Parse generated reST ``lines`` in the context of ``directive``."""
    container = nodes.container()
    source = directive.get_source_info()[0]
    directive.state.nested_parse(StringList(lines, source=source), directive.content_offset, container)
    return list(container.children)


class GateCosts(SphinxDirective):
    has_content = False
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {
        "channels": directives.positive_int,
        "height": directives.positive_int,
        "width": directives.positive_int,
        "num-layers": directives.positive_int,
    }

    def run(self) -> list[nodes.Node]:
        channels = self.options.get("channels", 256)
        height = self.options.get("height", 30)
        width = self.options.get("width", 30)
        num_layers = self.options.get("num-layers", 5)
        rows = gate_costs(channels, height, width, num_layers)
        names = {"asgate": "ASGate", "convgru": "ConvGRU", "convlstm": "ConvLSTM"}
        lines = [
            f".. list-table:: Cost per gate and per IGF (C'_v = {channels}, H x W = {height} x {width}, "
            f"batch 1, L = {num_layers})",
            "   :header-rows: 1",
            "   :widths: auto",
            "",
            "   * - gate (``gate=``)",
            "     - parameters per gate",
            "     - GFLOPs per gate call",
            "     - parameters of the IGF",
            "     - GFLOPs of the IGF forward",
        ]
        for row in rows:
            lines += [
                f'   * - {names.get(row["gate"], row["gate"])} (``"{row["gate"]}"``)',
                f"     - {row['params']:,}",
                f"     - {row['flops'] / 1e9:.2f}",
                f"     - {row['igf_params']:,}",
                f"     - {row['igf_flops'] / 1e9:.2f}",
            ]
        return parse_lines(self, lines)


class BenchmarkResults(SphinxDirective):
    has_content = False
    #: What the page says where no report is committed.
    missing: ClassVar[tuple[str, ...]] = (
        "No measured results are committed in this checkout. Produce them on your own hardware with",
        "``python -m benchmarks.run --device cuda --output-dir benchmarks/results`` (or",
        "``--device cpu --quick`` for a short CPU run); :doc:`/guides/benchmarks` explains the output.",
    )

    def reports(self) -> list[Path]:
        return sorted(RESULTS.rglob("*.md")) if RESULTS.is_dir() else []

    def plots(self, report: Path) -> list[Path]:
        return sorted(report.parent.glob("*.png"))

    def run(self) -> list[nodes.Node]:
        tables = self.reports()
        if not tables:
            return parse_lines(self, list(self.missing))
        result: list[nodes.Node] = []
        for report in tables:
            self.env.note_dependency(str(report))
            source = nodes.paragraph()
            source += nodes.Text("From ")
            source += nodes.literal(text=report.relative_to(ROOT).as_posix())
            source += nodes.Text(":")
            result.append(source)
            result += markdown_nodes(report.read_text(encoding="utf-8"))
            # The plots that the report links to, or that lie beside it.
            plots = self.plots(report)
            lines: list[str] = []
            for plot in plots:
                # Image paths starting with "/" are relative to the docs folder.
                lines += [f".. figure:: /../{plot.relative_to(ROOT).as_posix()}", "   :width: 80%", ""]
                lines += [f"   ``{plot.name}``", ""]
            result += parse_lines(self, lines) if lines else []
        return result


class AblationResults(BenchmarkResults):
    """The ``tableN.md`` reports of ``dcmfnet ablate`` in ``ABLATIONS``, each with its ``tableN.png``.

    An optional argument names one folder under ``ABLATIONS`` (one operating point, e.g. ``refcocog_like``);
    without it every folder's tables are rendered.
    """

    optional_arguments = 1
    missing: ClassVar[tuple[str, ...]] = (
        "No ablation results are committed in this checkout yet. Produce them with ``dcmfnet ablate``",
        "(the commands above) and ``--output-dir examples/dcmfnet/ablations/results``; the tables appear here.",
    )

    def reports(self) -> list[Path]:
        # One folder per operating point (``results/refcocog_like/table2.md``), or the tables directly in it.
        if self.arguments:
            folder = ABLATIONS / self.arguments[0]
            return sorted(folder.glob("table*.md")) if folder.is_dir() else []
        if not ABLATIONS.is_dir():
            return []
        return sorted([*ABLATIONS.glob("table*.md"), *ABLATIONS.glob("*/table*.md")])

    def plots(self, report: Path) -> list[Path]:
        return sorted(report.parent.glob(f"{report.stem}.png"))


_CODE_SPAN = re.compile(r"`([^`]+)`")
_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|\*(.+?)\*")
_IMAGE = re.compile(r"^!\[[^\]]*\]\([^)]*\)$")


def _inline(text: str) -> list[nodes.Node]:
    """Plain text with Markdown code spans as literals and ``*emphasis*`` markers dropped.

    Nothing else is interpreted, so no text can cause a markup warning.
    """
    out: list[nodes.Node] = []
    for index, part in enumerate(_CODE_SPAN.split(text)):
        if part and index % 2:
            out.append(nodes.literal(text=part))
        elif part:
            out.append(nodes.Text(_EMPHASIS.sub(lambda m: m.group(1) or m.group(2), part)))
    return out


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(rows: list[list[str]]) -> nodes.table:
    header, body = rows[0], [row for row in rows[1:] if not all(set(cell) <= set(":-") for cell in row)]
    width = len(header)
    table = nodes.table(classes=["colwidths-auto"])  # HTML sizes the columns to their content
    group = nodes.tgroup(cols=width)
    table += group
    for column in range(width):  # text and LaTeX builders use these widths
        longest = max((len(row[column]) for row in [header, *body] if column < len(row)), default=1)
        group += nodes.colspec(colwidth=min(max(longest, 3), 60))

    def row_node(cells: list[str]) -> nodes.row:
        row = nodes.row()
        for cell in (cells + [""] * width)[:width]:
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += _inline(cell)
            entry += paragraph
            row += entry
        return row

    thead = nodes.thead()
    thead += row_node(header)
    tbody = nodes.tbody()
    tbody += [row_node(row) for row in body]
    group += [thead, tbody]
    return table


def markdown_nodes(text: str) -> list[nodes.Node]:
    """Render the Markdown subset of the benchmark reports: headings, pipe tables, lists, paragraphs.

    Built as docutils nodes directly (no reST parsing), so whatever a report contains cannot
    produce a Sphinx warning. Image links are skipped: the caller shows the PNG files.
    """
    result: list[nodes.Node] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line or _IMAGE.match(line):
            index += 1
        elif line.startswith("#"):
            result.append(nodes.rubric(text=line.lstrip("#").strip()))
            index += 1
        elif line.startswith("|"):
            rows = []
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(_cells(lines[index]))
                index += 1
            result.append(_table(rows))
        elif line.startswith(("- ", "* ")):
            bullets = nodes.bullet_list()
            while index < len(lines) and lines[index].strip().startswith(("- ", "* ")):
                item, paragraph = nodes.list_item(), nodes.paragraph()
                paragraph += _inline(lines[index].strip()[2:])
                item += paragraph
                bullets += item
                index += 1
            result.append(bullets)
        else:
            paragraph_lines = []
            while index < len(lines) and lines[index].strip() and not lines[index].strip().startswith(("#", "|")):
                paragraph_lines.append(lines[index].strip())
                index += 1
            paragraph = nodes.paragraph()
            paragraph += _inline(" ".join(paragraph_lines))
            result.append(paragraph)
    return result


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("igf-gate-costs", GateCosts)
    app.add_directive("igf-benchmark-results", BenchmarkResults)
    app.add_directive("dcmfnet-ablation-results", AblationResults)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
