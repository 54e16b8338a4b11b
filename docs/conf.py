"""Sphinx configuration of the igf documentation.

Build (offline, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Run every code example of the pages and of the API reference::

    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Set ``IGF_DOCS_ONLINE=1`` to link ``torch.*`` and Python names to their own
documentation through intersphinx (this fetches the inventories, so it needs
the network); the default build never touches the network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
