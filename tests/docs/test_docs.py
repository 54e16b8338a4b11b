"""The documentation builds without warnings, and every example in it runs.

- ``sphinx-build -W --keep-going -b html``: the pages, with warnings as errors.
- ``sphinx-build -W --keep-going -b doctest``: every ``doctest`` / ``testcode`` block of the
  pages (guides, math, gates, API pages), including ``torch.compile``, ``torch.export`` and ONNX.
- ``doctest`` over ``igf``'s modules: the examples in the docstrings (as
  ``python -m pytest --doctest-modules igf`` would run them).

Both Sphinx builds start together in a module fixture (they are separate processes), so
the module takes about as long as the slower one.
"""

from __future__ import annotations

import doctest
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed")
pytest.importorskip("furo", reason="the docs extra is not installed")

import igf

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = (
    "index",
    "guides/install",
    "guides/own_model",
    "guides/choosing",
    "guides/ranks",
    "guides/dcmfnet",
    "guides/benchmarks",
    "guides/ablations",
    "guides/reproducing",
    "math",
    "gates",
    "api/igf",
    "api/dcmfnet",
)
PUBLIC_NAMES = tuple(name for name in igf.__all__ if not name.startswith("_"))
IGF_MODULES = (
    "igf",
    "igf.fusion",
    "igf.gates",
    "igf.iterative",
    "igf._validation",
    "igf.film",
    "igf.pixel_word_attention",
    "igf.concat",
    "igf.protocol",
    "igf.registry",
    "igf.spatial",
)


class Build:
    def __init__(self, builder: str, out: Path) -> None:
        self.out = out
        env = {**os.environ, "IGF_DOCS_ONLINE": "0", "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
                   "-d", str(out / "doctrees"), str(DOCS), str(out / builder)]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._result: tuple[int, str, str] | None = None

    def result(self) -> tuple[int, str, str]:
        if self._result is None:
            stdout, stderr = self.process.communicate(timeout=600)
            self._result = (self.process.returncode, stdout, stderr)
        return self._result


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Build]]:
    started = {builder: Build(builder, tmp_path_factory.mktemp(f"docs_{builder}")) for builder in ("html", "doctest")}
    yield started
    for build in started.values():
        if build.process.poll() is None:
            build.process.kill()
            build.process.wait()


def test_html_build_has_no_warnings(builds: dict[str, Build]) -> None:
    build = builds["html"]
    returncode, _, stderr = build.result()
    assert returncode == 0, f"sphinx-build -b html failed:\n{stderr}"
    assert "WARNING" not in stderr and "ERROR" not in stderr, stderr
    for page in PAGES:
        assert (build.out / "html" / f"{page}.html").is_file(), f"page {page} was not built"


def test_every_public_name_has_an_api_entry(builds: dict[str, Build]) -> None:
    returncode, _, stderr = builds["html"].result()
    assert returncode == 0, stderr
    html = (builds["html"].out / "html" / "api" / "igf.html").read_text(encoding="utf-8")
    missing = [name for name in PUBLIC_NAMES if f'id="igf.{name}"' not in html]
    assert not missing, f"no API entry for {missing}"


def test_committed_ablation_tables_are_rendered(builds: dict[str, Build]) -> None:
    """Every committed ``tableN.md`` (one folder per benchmark kind) appears on the ablations page."""
    returncode, _, stderr = builds["html"].result()
    assert returncode == 0, stderr
    html = (builds["html"].out / "html" / "guides" / "ablations.html").read_text(encoding="utf-8")
    results = ROOT / "examples" / "dcmfnet" / "ablations" / "results"
    tables = sorted([*results.glob("table*.md"), *results.glob("*/table*.md")])
    if not tables:
        assert "No ablation results are committed" in html
    for table in tables:
        assert table.relative_to(ROOT).as_posix() in html, f"{table} is not rendered"
        assert f"{table.stem}.png" in html


#: ``src``/``href`` values that leave the built pages: an absolute URL or a scheme-relative one.
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
SCRIPT_SOURCES = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
STYLESHEETS = re.compile(
    r"<link\b(?=[^>]*\brel\s*=\s*[\"']?stylesheet)[^>]*\bhref\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE
)


def test_pages_load_no_script_from_another_host(builds: dict[str, Build]) -> None:
    """Offline, every formula renders: MathJax and every other script and stylesheet come with the pages."""
    returncode, _, stderr = builds["html"].result()
    assert returncode == 0, stderr
    html_root = builds["html"].out / "html"
    pages = sorted(html_root.rglob("*.html"))
    assert len(pages) >= len(PAGES)
    external = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for url in [*SCRIPT_SOURCES.findall(text), *STYLESHEETS.findall(text)]:
            if EXTERNAL.match(url):
                external.append(f"{page.relative_to(html_root)}: {url}")
            else:  # a local script must be there, or the page is as broken as with a CDN offline
                local = (page.parent / url.split("?", 1)[0]).resolve()
                assert local.is_file(), f"{page.relative_to(html_root)} loads {url}, which the build lacks"
    assert not external, "pages load from another host:\n" + "\n".join(external)
    math_page = (html_root / "math.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in SCRIPT_SOURCES.findall(math_page)
    fonts = html_root / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), "MathJax's fonts were not copied beside it"


def test_every_public_name_has_an_example() -> None:
    """Each public name has a runnable example: in its docstring, or in its entry on api/igf.rst."""
    source = (DOCS / "api" / "igf.rst").read_text(encoding="utf-8")
    entries = re.split(r"^\.\. (?:auto\w+|py:\w+):: ", source, flags=re.MULTILINE)[1:]
    examples_on_page = {
        re.split(r"[(\s]", entry, maxsplit=1)[0]: ">>>" in entry or ".. testcode::" in entry for entry in entries
    }
    without = [
        name
        for name in PUBLIC_NAMES
        if not examples_on_page.get(name) and ">>>" not in (getattr(igf, name).__doc__ or "")
    ]
    assert not without, f"public names without an example: {without}"


def test_guide_and_page_examples_run(builds: dict[str, Build]) -> None:
    build = builds["doctest"]
    returncode, stdout, stderr = build.result()
    report_file = build.out / "doctest" / "output.txt"
    report = report_file.read_text(encoding="utf-8") if report_file.is_file() else ""
    assert returncode == 0, f"sphinx-build -b doctest failed:\n{report}\n{stdout}\n{stderr}"
    passed = sum(int(n) for n in re.findall(r"^(\d+) passed and 0 failed", report, flags=re.MULTILINE))
    assert passed >= 50, f"expected the pages' examples to run, the report says:\n{report}"
    assert "failed" not in report.replace("0 failed", ""), report


@pytest.mark.parametrize("module_name", IGF_MODULES)
def test_igf_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {module_name} failed"


def _docs_extension():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("igf_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_gate_cost_table_numbers() -> None:
    """The numbers the gates page computes at build time: Table 6's parameter counts, conv FLOPs."""
    rows = {row["gate"]: row for row in _docs_extension().gate_costs(256, 30, 30, 5)}
    assert {name: row["params"] for name, row in rows.items()} == {
        "asgate": 1_769_984,
        "convgru": 3_539_712,
        "convlstm": 4_719_616,
    }
    for name, row in rows.items():  # 2 FLOPs per multiply-add, per output pixel and parameter weight
        assert row["flops"] == 2 * (row["params"] - {"asgate": 2, "convgru": 3, "convlstm": 4}[name] * 256) * 30 * 30


def test_benchmark_report_rendering_cannot_warn() -> None:
    """Report text is turned into nodes without reST parsing: markup-like text stays text."""
    from docutils import nodes

    report = "# title\n\nSome *text* with `code`, a_trailing_ ref_ and |bars|.\n\n"
    report += "| a | b |\n|---|---|\n| `x` | 1* |\n"
    rendered = _docs_extension().markdown_nodes(report + "\n- item `y`\n\n![plot](p.png)\n")
    kinds = [type(node) for node in rendered]
    assert kinds == [nodes.rubric, nodes.paragraph, nodes.table, nodes.bullet_list]
    assert rendered[1].astext() == "Some text with code, a_trailing_ ref_ and |bars|."
    assert rendered[2].astext().endswith("1*")
    assert len(list(rendered[2].findall(nodes.row))) == 2  # header + one body row; the --- line is dropped
