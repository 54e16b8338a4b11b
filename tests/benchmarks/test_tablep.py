"""The ``tablep`` benchmark group: DCMFNet's training step for every model of the ablation Table P.

Structure only (cases, switches, pairs, report rows, a quick run's exit status and report), never a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dcmfnet")

from benchmarks.dcmfnet import DCMFNetCase, model_config
from benchmarks.report import table_row_rows
from benchmarks.suite import TABLEP_CONFIG, TABLEP_QUICK_BATCH, build_suite, comparison_pairs
from dcmfnet.ablations.tables import FULL_KEY, FULL_MODEL, LAYER_SWITCHES, TABLES

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def _tablep_cases(quick: bool) -> list[DCMFNetCase]:
    return [c for c, _ in build_suite(CPU, quick, ("tablep",))]


@pytest.mark.parametrize("quick", [False, True])
def test_one_training_step_case_per_table_p_model_at_the_run_configs_sizes(quick: bool) -> None:
    cases = _tablep_cases(quick)
    assert [c.row for c in cases] == TABLES["P"].keys()
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        assert (c.config, c.table, c.pass_, c.precision) == (TABLEP_CONFIG, "P", "train", "fp32")
        assert (c.batch, c.image_size, c.text_length) == (TABLEP_QUICK_BATCH if quick else 32, 64, 16)
    assert "dcmfnet/ablation_clean_refcocog_like/peer-film/train/fp32/b32/64px" in {
        c.name for c in _tablep_cases(False)
    }


def test_each_case_builds_its_rows_model() -> None:
    configs = {c.row: model_config(c) for c in _tablep_cases(False)}
    assert configs["peer-film"].fusion_layer == "film"
    assert not configs["peer-pwam-default-init"].pwam_identity_init and configs["peer-pwam"].pwam_identity_init
    full = configs[FULL_KEY]
    assert {name: getattr(full, name) for name in {**FULL_MODEL, **LAYER_SWITCHES}} == {**FULL_MODEL, **LAYER_SWITCHES}
    for row in TABLES["P"].rows:
        assert {name: getattr(configs[row.key], name) for name in row.changes} == dict(row.changes)
        # everything else is the run config's model, switches aside
        assert configs[row.key].backbone_options == full.backbone_options and configs[row.key].igf_heads == 3


def test_each_row_is_paired_with_the_full_model() -> None:
    cases = _tablep_cases(True)
    (full,) = [c for c in cases if c.row == FULL_KEY]
    pairs = comparison_pairs(cases)
    keys = TABLES["P"].keys()
    assert [num.row for num, _ in pairs] == [key for key in keys if key != FULL_KEY]
    assert all(den == full for _, den in pairs)


def test_the_dcmfnet_group_is_unchanged() -> None:
    names = [c.name for c, _ in build_suite(CPU, True, ("dcmfnet",))]
    assert names == ["dcmfnet/model_cpu/infer/fp32/b2/64px", "dcmfnet/model_cpu/train/fp32/b2/64px"]
    assert "row" not in DCMFNetCase("model_cpu", "train", 2, 64).fields()


def test_report_rows_give_time_over_the_full_models() -> None:
    base = {"kind": "dcmfnet", "table": "P", "config": "c", "pass": "train", "precision": "fp32", "batch": 4,
            "image_size": 64, "compiled": False, "channels_last": False, "parameters": 1000}  # fmt: skip
    records = [
        {**base, "name": "a", "row": "full", "row_label": "IGF", "row_changes": "full model", "full_model": True,
         "time_s": {"median": 0.02, "min": 0.02, "iqr": 0.001}},
        {**base, "name": "b", "row": "peer-film", "row_label": "FiLM", "row_changes": "fusion_layer=film",
         "full_model": False, "time_s": {"median": 0.01, "min": 0.005, "iqr": 0.001}},
    ]  # fmt: skip
    rows = table_row_rows(records, "P")
    assert [row[0] for row in rows] == ["IGF", "FiLM"]
    assert rows[0][6:8] == ["1.00", "1.00"] and rows[1][6:8] == ["0.50", "0.25"] and rows[1][3] == "1,000"


def test_quick_run_of_the_group_exits_0_and_reports_the_rows(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--threads", "1", "--groups", "tablep"]
    done = subprocess.run([*command, "--output-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    md = (tmp_path / "results.md").read_text()
    section = md.split("## Table P rows: training step", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {row.paper_row} | `{row.key}` |" in section for row in TABLES["P"].rows)
