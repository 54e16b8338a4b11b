"""``dcmfnet ablate --diagnose``: a row's loss curves, gradients and output scales at init beside the full model's."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from dcmfnet.ablations.diagnose import InitDiagnostics, LossPoint, init_diagnostics, loss_curves
from dcmfnet.ablations.records import append_record
from dcmfnet.ablations.runner import RunSpec, plan_runs
from dcmfnet.ablations.tables import FULL_KEY, rows_by_key
from dcmfnet.commands import ablate as command
from dcmfnet.errors import InputError
from tests.dcmfnet.test_ablations import ABLATION_TINY
from tests.dcmfnet.tiny_run import CPU_CONFIG

IGF_SITES = ("fusion_e3", "fusion_e4", "fusion_enc", "fusion_dec")
#: What the trainer logged, by hand: (step, train_loss, val_overall_iou or None) per run.
LOGS = {
    "full-s0": [(2, 0.9, None), (4, 0.7, 0.25)],
    "L1-s0": [(2, 0.95, None), (4, 0.8, 0.2)],
}


def _specs() -> dict[str, RunSpec]:
    rows = [rows_by_key()[FULL_KEY], rows_by_key()["L1"]]
    specs = plan_runs(rows, [0, 1], steps=4, config=str(CPU_CONFIG), dataset="synthetic",
                      global_overrides=ABLATION_TINY, eval_splits=["val"])  # fmt: skip
    return {spec.run_id: spec for spec in specs}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs.jsonl with full-s0, full-s1 (its log not kept) and L1-s0; the logs of full-s0 and L1-s0."""
    output = tmp_path_factory.mktemp("diagnose")
    specs = _specs()
    for run_id in ("full-s0", "full-s1", "L1-s0"):
        metrics = {"val": {"overall_iou": 0.3, "num_samples": 8}}
        append_record(output, dataclasses.asdict(specs[run_id]) | {"metrics": metrics, "parameters": 1000})
    for run_id, points in LOGS.items():
        folder = output / "runs" / run_id
        folder.mkdir(parents=True)
        lines = [{"step": step, "train_loss": loss} | ({} if iou is None else {"val_overall_iou": iou})
                 for step, loss, iou in points]  # fmt: skip
        (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return output


@pytest.fixture(scope="module")
def at_init() -> dict[str, InitDiagnostics]:
    specs = _specs()
    return {key: init_diagnostics(str(CPU_CONFIG), specs[f"{key}-s0"].train_overrides(), 0) for key in (FULL_KEY, "L1")}


def test_loss_curves_read_back_exactly(recorded: Path, tmp_path: Path) -> None:
    curves = loss_curves(recorded, ["L1-s0", "full-s0"])
    assert list(curves) == ["L1-s0", "full-s0"]
    for run_id, points in LOGS.items():
        assert curves[run_id] == [LossPoint(*point) for point in points]
    with pytest.raises(InputError, match="no training log"):
        loss_curves(recorded, ["full-s1"])
    (tmp_path / "runs" / "bad").mkdir(parents=True)
    (tmp_path / "runs" / "bad" / "metrics.jsonl").write_text('{"step": 1, "train_loss": 0.5}\n{"step": 2, \n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        loss_curves(tmp_path, ["bad"])


def test_init_diagnostics_are_reproducible_and_every_module_gets_a_gradient(
    at_init: dict[str, InitDiagnostics],
) -> None:
    full = at_init[FULL_KEY]
    again = init_diagnostics(str(CPU_CONFIG), _specs()["full-s0"].train_overrides(), 0)
    assert again == full  # the same seed: the same weights, batch and numbers
    other_seed = init_diagnostics(str(CPU_CONFIG), _specs()["full-s0"].train_overrides(), 1)
    assert other_seed.seed == 1 and other_seed.loss != full.loss
    assert full.batch_size == 4 and math.isfinite(full.loss) and full.grad_norm > 0 and full.logits[1] > 0
    with_parameters = [module for module in full.modules if module.parameters > 0]
    named = {module.name for module in with_parameters}
    assert {"backbone", "backbone.stem", "text_encoder", "head", "fusion_enc.gates"} <= named
    for module in with_parameters:
        assert module.grad_norm is not None and math.isfinite(module.grad_norm) and module.grad_norm > 0, module
    modules = {module.name: module for module in full.modules}
    # an IGF site returns IGFOutput here: its scale is its first tensor's, the output convolution's (Eq. 4)
    assert modules["fusion_e3"].output == modules["fusion_e3.out_proj"].output is not None
    assert modules["backbone"].output is None and modules["backbone.stages.3"].output is not None


def test_a_variant_changes_the_igf_parameters(at_init: dict[str, InitDiagnostics]) -> None:
    full = {module.name: module for module in at_init[FULL_KEY].modules}
    single = {module.name: module for module in at_init["L1"].modules}
    for site in IGF_SITES:
        assert single[site].parameters < full[site].parameters
        assert single[f"{site}.gates"].parameters == 0 < full[f"{site}.gates"].parameters  # L = 1: no gate
    for name in ("backbone", "text_encoder", "multi_level", "aspp", "head"):
        assert single[name].parameters == full[name].parameters
    for site in ("e3", "e4", "enc", "dec"):
        assert len(at_init["L1"].sites[site].fusions) == 1 and len(at_init[FULL_KEY].sites[site].fusions) == 5
        assert len(at_init[FULL_KEY].sites[site].gates) == 4


def test_cli_prints_and_writes_the_report(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--diagnose", "L1", "--output-dir", str(recorded)]) == 0
    printed = capsys.readouterr().out
    report = (recorded / "diagnose_L1.md").read_text()
    assert printed.startswith(report) and report.startswith("# Diagnosis: L1 against the full model")
    assert "| step | L1-s0 | full-s0 |" in report and "No `metrics.jsonl` for full-s1." in report
    assert "| 2 | 0.9500 | 0.9000 |" in report and "| 4 | 0.8000 (0.200) | 0.7000 (0.250) |" in report
    assert "## At initialization (seed 0, the trainer's first batch of 4)" in report
    assert "| fusion_enc.gates | 0 / " in report and "| enc | 5 | – / " in report


@pytest.mark.parametrize("row", ["nope", "gate-convgru", FULL_KEY])
def test_cli_unknown_row_is_a_one_line_error(recorded: Path, row: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["--diagnose", row, "--output-dir", str(recorded)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("dcmfnet ablate: error:")
    assert not (recorded / f"diagnose_{row}.md").exists()


def test_cli_diagnose_excludes_the_other_modes(recorded: Path) -> None:
    with pytest.raises(SystemExit):
        command.main(["--diagnose", "L1", "--report-only", "--output-dir", str(recorded)])
    assert command.main(["--diagnose", "L1", "--seeds", "0,1", "--output-dir", str(recorded)]) == 2
