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
    ``benchmarks/results/`` (shown verbatim) with the PNG plots beside it, or,
    where none was committed, a sentence with the command that produces them.
"""

from __future__ import annotations

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

    def run(self) -> list[nodes.Node]:
        tables = sorted(RESULTS.rglob("*.md")) if RESULTS.is_dir() else []
        if not tables:
            return parse_lines(
                self,
                [
                    "No measured results are committed in this checkout. Produce them on your own hardware with",
                    "``python -m benchmarks.run --device cuda --output-dir benchmarks/results`` (or",
                    "``--device cpu --quick`` for a short CPU run); :doc:`/guides/benchmarks` explains the output.",
                ],
            )
        lines: list[str] = []
        for table in tables:
            self.env.note_dependency(str(table))
            name = table.relative_to(ROOT).as_posix()
            lines += [f"``{name}``:", "", ".. code-block:: text", ""]
            lines += ["   " + line for line in table.read_text(encoding="utf-8").splitlines()]
            lines += [""]
            for plot in sorted(table.parent.glob("*.png")):
                # Image paths starting with "/" are relative to the docs folder.
                lines += [
                    f".. figure:: /../{plot.relative_to(ROOT).as_posix()}",
                    "   :width: 80%",
                    "",
                    f"   ``{plot.relative_to(ROOT).as_posix()}``",
                    "",
                ]
        return parse_lines(self, lines)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("igf-gate-costs", GateCosts)
    app.add_directive("igf-benchmark-results", BenchmarkResults)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
