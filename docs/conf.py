"""Sphinx configuration of the igf documentation.

Build (offline, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Run every code example of the pages and of the API reference::

    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Set ``IGF_DOCS_ONLINE=1`` to link ``torch.*`` and Python names to their own
documentation through intersphinx (this fetches the inventories, so it needs
the network); the default build never touches the network.

The pages load nothing from another host: MathJax 3 is copied into
``_static/mathjax`` from the ``sphinx-mathjax-offline`` package (the ``docs``
extra), so formulas render from a local copy of the built pages.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The repository root: ``igf`` and the ``examples`` / ``benchmarks`` packages import from a fresh clone.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import igf  # noqa: E402

project = "igf"
author = "igf developers"
copyright = "igf developers, MIT License"
release = igf.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
    "igf_docs",  # docs/_ext/igf_docs.py: gate cost table and benchmark results
]

ONLINE = os.environ.get("IGF_DOCS_ONLINE", "") not in ("", "0")
if ONLINE:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
    }

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
default_role = "code"

# -- MathJax, served from the built pages ----------------------------------------
# ``sphinx-mathjax-offline`` ships MathJax 3 (the files only are used here: its own
# Sphinx hook would copy all 24 MB of bundles). The pages load ``tex-chtml.js`` from
# ``_static/mathjax``; it finds its fonts and on-demand TeX extensions beside it.
_MATHJAX_PACKAGE = "sphinx-mathjax-offline"
_MATHJAX_SPEC = importlib.util.find_spec(_MATHJAX_PACKAGE)
if _MATHJAX_SPEC is None or not _MATHJAX_SPEC.submodule_search_locations:
    raise RuntimeError(
        f"the docs render formulas with a local MathJax from the {_MATHJAX_PACKAGE!r} package, "
        "which is not installed: pip install -e \".[docs]\""
    )
MATHJAX_SOURCE = Path(next(iter(_MATHJAX_SPEC.submodule_search_locations))) / "static" / "mathjax"
# What tex-chtml.js needs: the combined component, TeX extensions it autoloads, the CHTML
# fonts, the context menu and its accessibility parts.
MATHJAX_PARTS = ("tex-chtml.js", "input", "output/chtml", "output/chtml.js", "ui", "a11y", "adaptors")
mathjax_path = "mathjax/tex-chtml.js"  # relative to _static


def _copy_mathjax(app: Any, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        source = MATHJAX_SOURCE / part
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)


def setup(app: Any) -> None:
    app.connect("build-finished", _copy_mathjax)


# -- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = f"igf {release}"
html_static_path: list[str] = []
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# -- autodoc / napoleon ---------------------------------------------------------
autodoc_member_order = "bysource"
# Types stay in the signatures (wrapped one parameter per line when long); the docstrings'
# ``Args:`` give meaning and shapes. ("description" would add a "Return type: None" of
# ``__init__`` under every class whose docstring has a ``Returns:`` section for ``forward``.)
autodoc_typehints = "signature"
maximum_signature_line_length = 88
# nn.Module.forward's generic docstring is not about our modules: do not inherit it.
autodoc_inherit_docstrings = False
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = False  # ``Attributes:`` become attribute entries that can be linked
# igf's docstrings state tensor shapes in an ``Inputs:`` section (TorchMultimodal style).
napoleon_custom_sections = ["Inputs"]

# -- doctest ----------------------------------------------------------------------
# Every ``doctest`` / ``testcode`` block of the pages runs under ``sphinx-build -b doctest``.
# Plain ``>>>`` blocks (the docstrings that autodoc pulls in) are left to their own test
# runners: ``igf``'s examples run with ``python -m pytest --doctest-modules igf`` (tests/docs).
doctest_test_doctest_blocks = ""
doctest_global_setup = f"""
import importlib.util
import torch
ROOT = {str(ROOT)!r}
torch.manual_seed(0)
# The ONNX example needs the ``dev`` extra (onnx, onnxscript, onnxruntime); it is skipped without it.
HAVE_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
"""
trim_doctest_flags = True
