"""Smoke test of the benchmark harness: a minimal quick run completes and writes its outputs.

It asserts structure only (records, files, finite positive numbers), never a timing
or a ratio: timings on shared CI machines mean nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")

from benchmarks import run
from benchmarks.flops import capture_all_ops, capture_flop_ops, replay, summarise_calls
from benchmarks.timing import page_faults_per_call


def test_quick_subset_runs(tmp_path: Path) -> None:
    """One test (so that pytest-xdist runs the benchmarks once): outputs, records, a memory comparison."""
    records = run.main(["--quick", "--groups", "gate,igf,checkpoint,fused", "--output-dir", str(tmp_path)])

    for name in ("results.json", "results.md", "command.txt", "checkpoint_memory.png"):
        assert (tmp_path / name).is_file(), name
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["environment"]["torch_num_threads"] == 1
    assert len(data["records"]) == len(records) > 0
    md = (tmp_path / "results.md").read_text()
    assert "Targets, as measured" in md and "checkpoint_memory.png" in md

    assert not [(r["name"], r["error"]) for r in records if "error" in r]
    assert {r["kind"] for r in records} == {"gate", "igf"}
    assert {r["gate"] for r in records if r["kind"] == "gate"} == {"asgate", "convgru", "convlstm"}
    for r in records:
        t = r["time_s"]
        assert math.isfinite(t["median"]) and t["median"] > 0 and t["iqr"] >= 0
        assert r["flops"] > 0 and r["floor_ratio"] > 0
        assert r["page_faults_per_call"] >= 0 and r["floor_page_faults_per_call"] >= 0
        if r["kind"] == "igf":  # the all-op replay ran (no operator failed on random inputs)
            assert "op_replay_error" not in r and r["op_replay_ratio"] > 0
        assert r["peak_memory_bytes"] >= 0

    # Memory, unlike time, is deterministic: checkpointing must lower the training peak.
    peak = {
        r["checkpoint"]: r["peak_memory_bytes"]
        for r in records
        if r["kind"] == "igf"
        and r["pass"] == "fwdbwd"
        and r["layers"] == 5
        and r["placement"] == "E3"
        and r["guidance"] == "vector"
        and not r["channels_last"]
        and r["precision"] == "fp32"
    }
    assert peak[True] < peak[False]

    # Saved activations (docs/guides/reproducing.rst) are deterministic too: the fused default keeps less than
    # the plain path, and checkpointing cuts at least 60% of what the fused path keeps.
    saved = {
        (r["fused"], r["checkpoint"]): r["saved_bytes"]
        for r in records
        if r["kind"] == "igf"
        and r["pass"] == "fwdbwd"
        and r["layers"] == 5
        and r["placement"] == "E3"
        and r["guidance"] == "vector"
        and r["precision"] == "fp32"
    }
    assert saved[(True, False)] < saved[(False, False)]
    assert saved[(True, True)] <= 0.4 * saved[(True, False)]
    pairs = {(c["numerator"], c["denominator"]): c for c in data["comparisons"]}
    fused_pair = next(c for (num, den), c in pairs.items() if den.endswith("/plain"))
    assert fused_pair["max_abs_output_diff"] <= 1e-5


def test_all_op_replay_records_every_operator_and_the_conv_floor_only_the_matmuls() -> None:
    x, w = torch.randn(4, 8), torch.randn(8, 8)

    def call() -> torch.Tensor:
        return torch.tanh(x @ w).mul_(2.0).sum()

    every = summarise_calls(capture_all_ops(call))
    assert {"mm.default", "tanh.default", "mul_.Tensor", "sum.default"} <= set(every)
    assert summarise_calls(capture_flop_ops(call)) == {"mm.default": 1}
    replay(capture_all_ops(call))()  # runs on random tensors of the recorded layouts


def test_page_faults_count_first_touches_of_fresh_memory() -> None:
    """64 MiB is above glibc's largest mmap threshold: each call maps, touches and unmaps 16384 fresh pages."""
    faults = page_faults_per_call(lambda: torch.empty(16 * 2**20).fill_(1.0), torch.device("cpu"), calls=4)
    assert faults is not None and faults >= 16384 * 0.9
    reused = torch.zeros(16 * 2**20)  # touched once here
    assert page_faults_per_call(lambda: reused.fill_(1.0), torch.device("cpu"), calls=4) == pytest.approx(0, abs=50)


def test_a_dcmfnet_case_with_a_missing_config_is_an_error() -> None:
    from benchmarks.dcmfnet import DCMFNetCase

    record = run.run_case(
        DCMFNetCase("no_such_config", "infer", 1, 32),
        ["dcmfnet"],
        torch.device("cpu"),
        run.parse_args(["--output-dir", "x"]),
    )
    assert "no_such_config" in record["error"] and "skipped" not in record


def test_unknown_group_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["--groups", "gate,nope", "--output-dir", str(tmp_path)])


def test_failed_cases_exit_non_zero_after_writing_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_case(case: object, groups: object, device: object, args: object) -> dict:
        return {"name": case.name, "error": "RuntimeError: boom"}  # type: ignore[attr-defined]

    monkeypatch.setattr(run, "run_case", failing_case)
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--quick", "--groups", "gate", "--no-pairs", "--no-plots", "--output-dir", str(tmp_path)])
    assert exit_info.value.code == 1
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert records and all(r["error"] == "RuntimeError: boom" for r in records)
    assert (tmp_path / "results.md").is_file()
    assert f"{records[0]['name']}: RuntimeError: boom" in capsys.readouterr().err


def test_full_width_placements_keep_the_paper_channels() -> None:
    """Full-width copies change pixels and batch only: per pixel, the paper's mix of conv and elementwise work."""
    from benchmarks.cases import full_width_placements, paper_placements

    channel_fields = ("guidance_channels", "guided_channels", "hidden_channels", "guidance_hidden_channels")
    for wide, paper in zip(full_width_placements(), paper_placements(8), strict=True):
        assert wide.name == f"{paper.name}-full-width"
        assert all(getattr(wide, f) == getattr(paper, f) for f in (*channel_fields, "out_channels"))
        assert wide.size[0] * wide.size[1] < paper.size[0] * paper.size[1] and wide.batch < paper.batch


def test_tanh_forms_rows_time_both_forms_and_leave_the_default_alone() -> None:
    import igf.cpu_tanh
    from benchmarks.cases import paper_placements, reduced
    from benchmarks.tanh_forms import igf_rows, kernel_rows

    default = igf.cpu_tanh.eager_cpu_tanh_via_sigmoid()
    tiny = reduced(paper_placements(8)[3], batch=1, channel_div=16, spatial_div=8)
    rows = kernel_rows(1000, 0.01) + igf_rows((tiny,), 0.01)
    assert len(rows) == 3 and all(row.startswith("| ") and row.count("|") == 6 for row in rows)
    assert "IGF fwdbwd at E_dec" in rows[2]
    assert igf.cpu_tanh.eager_cpu_tanh_via_sigmoid() is default
