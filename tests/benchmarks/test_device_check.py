"""The GPU check script without a GPU: the CPU path, the parts' time limits and exit statuses, the CUDA subset of
the benchmarks, and the training-peak measurement run on the CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import device_check, training_peak
from benchmarks.suite import build_suite, comparison_pairs

ROOT = Path(__file__).resolve().parents[2]


def test_without_cuda_every_part_is_skipped_with_a_no_cuda_line(tmp_path: Path) -> None:
    """The shell script end to end with CUDA hidden: exit 0, a ``no CUDA:`` line, a summary that says so."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_check.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^no CUDA: torch.cuda.is_available\(\) is False", done.stdout, re.MULTILINE)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cuda"] is False
    assert [p["name"] for p in summary["parts"]] == ["tests", "training", "igf", "compile"]
    assert all(p["status"] == "skipped: no CUDA" and p["rc"] is None for p in summary["parts"])
    assert "no CUDA:" in (tmp_path / "out" / "summary.md").read_text()


def test_each_part_gets_its_limit_and_a_failure_does_not_stop_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    py = sys.executable
    fake = [
        device_check.Part("slow", 1, (py, "-c", "import time; time.sleep(60)"), "-"),
        device_check.Part("fails", 30, (py, "-c", "import sys; print('boom'); sys.exit(3)"), "-"),
        device_check.Part("fine", 30, (py, "-c", "print('fine')"), "-"),
    ]
    monkeypatch.setattr(device_check, "parts", lambda out: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_check.main([str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    got = {p["name"]: (p["status"], p["rc"]) for p in summary["parts"]}
    assert got == {"slow": ("timed out", 124), "fails": ("failed", 3), "fine": ("ok", 0)}
    assert summary["parts"][0]["seconds"] < 1 + device_check.KILL_GRACE_S
    assert "boom" in (tmp_path / "fails" / "log.txt").read_text()
    assert "| fine | ok | 0 |" in (tmp_path / "summary.md").read_text()

    assert device_check.main([str(tmp_path / "none"), "--budget-s", "0"]) == 0  # no time left: nothing starts
    summary = json.loads((tmp_path / "none" / "summary.json").read_text())
    assert all(p["status"].startswith("skipped") for p in summary["parts"])


def test_the_cuda_benchmark_subset_is_the_paper_shapes_at_l5() -> None:
    """What the ``igf`` part measures: every placement fused and plain, checkpointing on and off, autocast; and the
    pairs re-timed among them."""
    igf = [c for c, _ in build_suite(torch.device("cuda"), False, ("fused", "checkpoint", "precision"))]
    subset = [c for c in igf if re.search("/L5/fwdbwd/", c.name)]
    placements = {"E3", "E4", "E_enc", "E_dec"}
    assert {c.placement.name for c in subset} == placements | {"E3-like", "E_dec-like"}
    assert all(c.placement.batch == 6 or c.placement.name.endswith("-like") for c in subset)
    assert {c.placement.name for c in subset if not c.fused} >= placements
    assert {c.placement.name for c in subset if c.checkpoint} >= placements
    assert {c.precision for c in subset} == {"fp32", "bf16", "fp16"}
    pairs = comparison_pairs(subset)
    assert sum(not den.fused for _, den in pairs) == 6 and sum(num.checkpoint for num, _ in pairs) == 4
    compiled = [c for c, _ in build_suite(torch.device("cuda"), False, ("compile",)) if "fwdbwd" in c.name]
    assert [c.compiled for c in compiled] == [False, True]


def test_training_peak_runs_on_the_cpu_beside_a_prediction(tmp_path: Path) -> None:
    predictions = tmp_path / "predicted.json"
    row = {"config": "model_cpu", "precision": "fp32", "fused": True, "checkpoint": False, "peak": 3 * 2**30}
    predictions.write_text(json.dumps([row]))
    out = tmp_path / "out"
    rows = training_peak.main(
        f"--device cpu --configs model_cpu --variants default --batch 2 --size 64 --warmup-steps 1 --steps 1 "
        f"--threads 1 --predictions {predictions} --output-dir {out}".split()
    )
    assert [(r["precision"], r["fused"], r["checkpoint"]) for r in rows] == [
        ("fp32", True, False),
        ("bf16", True, False),
    ]
    assert not [r["error"] for r in rows if "error" in r]
    assert all(r["images_per_s"] > 0 and "peak_bytes" not in r for r in rows)  # no peak measured on a CPU
    assert rows[0]["predicted_peak_bytes"] == 3 * 2**30 and "predicted_peak_bytes" not in rows[1]
    md = (out / "training.md").read_text()
    assert "| model_cpu | fp32 | fused | no | 3.00 | – |" in md
    assert json.loads((out / "training.json").read_text())["rows"][1]["precision"] == "bf16"
