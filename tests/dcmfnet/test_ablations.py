"""The ablation runner: its statistics, its tables of the paper, its reports, and ``dcmfnet ablate`` end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from dcmfnet.ablations.cost import saved_activation_bytes
from dcmfnet.ablations.records import read_records
from dcmfnet.ablations.report import table_markdown
from dcmfnet.ablations.runner import MANAGED_KEYS, METRIC_KEYS, plan_runs
from dcmfnet.ablations.statistics import Interval, compare, mean_interval, paired_difference, t_quantile, verdict
from dcmfnet.ablations.summary import summarize
from dcmfnet.ablations.tables import FULL_KEY, FULL_MODEL, LAYER_SWITCHES, TABLES, rows_by_key, table_id
from dcmfnet.commands import ablate as command
from dcmfnet.config import build_model, load_model_config
from dcmfnet.errors import InputError
from dcmfnet.train_config import load_run_config
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY

# Two-sided 95% Student-t critical values as printed in standard tables (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.2).
PUBLISHED_T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
                  10: 2.228, 20: 2.086, 30: 2.042, 100: 1.984}  # fmt: skip


# -- statistics ----------------------------------------------------------------------------------


def test_t_quantile_matches_published_values() -> None:
    for dof, expected in PUBLISHED_T_95.items():
        assert t_quantile(dof) == pytest.approx(expected, abs=5e-4), dof
    assert t_quantile(5, 0.90) == pytest.approx(2.015, abs=5e-4)
    assert t_quantile(3, 0.99) == pytest.approx(5.841, abs=5e-4)


def test_t_quantile_matches_scipy_to_float_precision() -> None:
    stats = pytest.importorskip("scipy.stats")
    for dof in [*range(1, 41), 99, 500]:
        for confidence in (0.8, 0.95, 0.99):
            assert t_quantile(dof, confidence) == pytest.approx(stats.t.ppf((1 + confidence) / 2, dof), rel=1e-10)


@pytest.mark.parametrize(("dof", "confidence"), [(0, 0.95), (2.5, 0.95), (True, 0.95), (3, 1.0), (3, 0.0)])
def test_t_quantile_rejects_bad_input(dof: Any, confidence: float) -> None:
    with pytest.raises(ValueError, match=r"dof|confidence"):
        t_quantile(dof, confidence)


def test_mean_interval_known_values() -> None:
    interval = mean_interval([0.61, 0.64, 0.60])
    # mean 0.61667, s = sqrt(((-1/150)^2 + (7/300)^2 + (-1/60)^2) / 2) = 0.020817, t_{0.975,2} = 4.302653
    assert interval.mean == pytest.approx(0.616667, abs=1e-6)
    assert interval.half_width == pytest.approx(4.302653 * 0.0208167 / math.sqrt(3), rel=1e-5)
    assert interval.half_width == pytest.approx(0.051712, abs=1e-6)
    assert interval.count == 3
    assert mean_interval([0.5]) == Interval(0.5, None, 1)
    with pytest.raises(ValueError, match="at least one"):
        mean_interval([])


def test_paired_difference_pairs_by_seed_and_drops_unpaired_seeds() -> None:
    variant = {0: 0.50, 1: 0.60, 2: 0.70, 3: 0.90}
    full = {0: 0.40, 1: 0.55, 2: 0.60, 7: 0.10}
    difference = paired_difference(variant, full)
    assert difference is not None
    # differences 0.10, 0.05, 0.10: mean 0.083333, s = 0.028868, half-width 4.302653 * s / sqrt(3) = 0.071711
    assert difference.count == 3
    assert difference.mean == pytest.approx(0.083333, abs=1e-6)
    assert difference.half_width == pytest.approx(0.071711, abs=1e-6)
    # pairing removes the seed-to-seed spread that an unpaired comparison keeps
    unpaired = mean_interval([0.50, 0.60, 0.70]).half_width
    assert unpaired is not None and difference.half_width < unpaired
    assert paired_difference({0: 0.5}, {1: 0.5}) is None


@pytest.mark.parametrize(
    ("mean", "half_width", "paper", "expected"),
    [
        (-0.02, 0.01, -0.5, "holds"),  # paper: the variant is worse; so it is here, CI below 0
        (0.02, 0.01, 0.3, "holds"),
        (0.02, 0.01, -0.5, "reverses"),
        (-0.02, 0.01, 0.3, "reverses"),
        (-0.02, 0.03, -0.5, "within noise"),
        (0.0, 0.0, -0.5, "within noise"),
        (-0.02, None, -0.5, "n/a (1 seed)"),
        (-0.02, 0.01, 0.0, "—"),
        (-0.02, 0.01, None, "—"),
    ],
)
def test_verdict(mean: float, half_width: float | None, paper: float | None, expected: str) -> None:
    assert verdict(Interval(mean, half_width, 3), paper) == expected


# -- the paper's tables ----------------------------------------------------------------------------


def test_every_row_is_a_valid_model_and_rows_sharing_a_key_are_one_model() -> None:
    for table in TABLES.values():
        assert sum(row.is_full for row in table.rows) >= 1
        for row in table.rows:
            assert set(row.changes) <= set(FULL_MODEL) | set(LAYER_SWITCHES)
            config = load_model_config("model_cpu", [override.removeprefix("model.") for override in row.overrides()])
            for name, value in row.switches().items():
                assert getattr(config, name) == value
            assert rows_by_key()[row.key].switches() == row.switches(), row.key
    assert rows_by_key()[FULL_KEY].switches() == dict(FULL_MODEL)
    distinct = [tuple(sorted(row.switches().items())) for row in rows_by_key().values()]
    assert len(distinct) == len(set(distinct)), "two keys name the same model"


def test_paper_numbers_match_spec_section_4() -> None:
    oiou = {table: [row.paper["overall_iou"] for row in TABLES[table].rows] for table in (2, 4, 5, 6)}
    assert oiou[4] == [69.91, 70.37, 70.48, 70.68, 71.00, 70.36, 70.33]
    assert oiou[6] == [70.17, 70.61, 71.00]
    assert [row.paper_params for row in TABLES[6].rows] == [4.72, 3.54, 1.77]
    full_row_4 = TABLES[2].rows[3]
    assert full_row_4.is_full and full_row_4.paper_row == "4"
    assert [full_row_4.paper[f"precision@{t}"] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        83.81, 80.30, 74.78, 63.83, 34.02
    ]  # fmt: skip
    assert {row.paper_row: row.paper["overall_iou"] for row in TABLES[2].rows}["7"] == 68.66
    assert TABLES[2].rows[0].paper["overall_iou"] == 66.92
    assert all(row.paper["overall_iou"] == 71.00 for table in oiou for row in TABLES[table].rows if row.is_full)
    assert all(not row.paper for row in TABLES["P"].rows)  # the paper has no Table P


def test_parse_seeds() -> None:
    assert command.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert command.parse_seeds("0,1,2") == [0, 1, 2]
    assert command.parse_seeds("3-4,0,4") == [3, 4, 0]
    for bad in ("", "a", "1-x", "-1"):
        with pytest.raises(InputError, match="--seeds"):
            command.parse_seeds(bad)


def test_plan_runs_shares_the_full_model_and_refuses_overrides_of_switches() -> None:
    rows = [row for number in (2, 4) for row in TABLES[number].rows]
    specs = plan_runs(rows, [0, 1], steps=10, config="cpu_synthetic", dataset="synthetic")
    ids = [spec.run_id for spec in specs]
    assert ids[0] == "full-s0" and ids.count("full-s0") == 1 and ids.count("no-mlff-s1") == 1
    assert len(ids) == 2 * (len(TABLES[2].keys()) + len(TABLES[4].keys()) - 1)
    assert ids.index("full-s1") > max(i for i, run_id in enumerate(ids) if run_id.endswith("-s0"))
    full = specs[0]
    assert full.table == (2, 4, 5, 6, "P") and "2:12" in full.paper_rows
    overrides = full.train_overrides()
    assert "train.max_steps=10" in overrides and "optim.schedule_by=steps" in overrides and "train.seed=0" in overrides
    for item in ["model.igf_layers=2", "train.seed=3", *(f"{key}=1" for key in MANAGED_KEYS)]:
        with pytest.raises(InputError, match="sets"):
            plan_runs(rows, [0], steps=10, config="cpu_synthetic", dataset="synthetic", global_overrides=[item])


def _record(row: str, seed: int, oiou: float) -> dict[str, Any]:
    metrics = dict.fromkeys(METRIC_KEYS, 0.5) | {"overall_iou": oiou}
    return {
        "run_id": f"{row}-s{seed}", "row": row, "seed": seed, "config": "c", "dataset": "d", "steps": 10,
        "global_overrides": [], "eval_splits": ["val"], "metrics": {"val": metrics}, "parameters": 1000,
        "commit": "abc",
    }  # fmt: skip


def test_table_markdown_verdicts_and_resolution() -> None:
    full = [0.60, 0.62, 0.64]
    records = [_record(FULL_KEY, seed, value) for seed, value in enumerate(full)]
    # ConvGRU worse than ASGate by 5 points at every seed (as in the paper), ConvLSTM better (against it)
    records += [_record("gate-convgru", seed, value - 0.05) for seed, value in enumerate(full)]
    records += [_record("gate-convlstm", seed, value + 0.03 + 0.001 * seed) for seed, value in enumerate(full)]
    markdown = table_markdown(TABLES[6], records)
    lines: dict[str, str] = {}
    for line in markdown.splitlines():  # the first table: overall IoU on val
        if line.startswith("| "):
            lines.setdefault(line.split("|")[1].strip(), line)
    assert "-5.00 ± 0.00" in lines["ConvGRUCell"] and "| -0.39 |" in lines["ConvGRUCell"]
    assert lines["ConvGRUCell"].rstrip().endswith("| holds |")
    assert lines["ConvLSTMCell"].rstrip().endswith("| reverses |")
    assert "62.00 ± 4.97" in lines["ASGate"] and "reference" in lines["ASGate"]
    half_width = 100 * t_quantile(2) * 0.02 / math.sqrt(3)
    assert f"95% CI half-width {half_width:.2f} points over 3 seeds" in markdown
    widest = 100 * t_quantile(2) * 0.001 / math.sqrt(3)  # ConvLSTM's differences: 3.0, 3.1, 3.2 points
    assert f"The widest paired CI of Δ is ± {widest:.2f} points (ConvLSTMCell, 3 seeds); 2 of 2 rows" in markdown
    assert "(paper 1.77M)" in lines["ASGate"]
    with pytest.raises(InputError, match="mix several steps"):
        table_markdown(TABLES[6], [*records, _record("gate-convgru", 5, 0.5) | {"steps": 20}])


def test_table_ids_as_typed() -> None:
    assert [table_id(text) for text in ("2", " 6", "p", "P")] == [2, 6, "P", "P"]
    with pytest.raises(ValueError, match=r"unknown table '3'; valid: 2, 4, 5, 6, P"):
        table_id("3")


def test_table_p_rows_put_one_layer_at_every_site_and_share_no_fusion_with_table_2() -> None:
    switches = {row.key: row.switches() for row in TABLES["P"].rows}
    assert list(switches) == ["full", "peer-film", "peer-pwam", "peer-pwam-default-init", "peer-concat", "igf-words",
                              "no-fusion"]  # fmt: skip
    assert [switches[key]["fusion_layer"] for key in ("peer-film", "peer-pwam", "peer-concat")] == [
        "film", "pwam", "concat"]  # fmt: skip
    assert switches["peer-pwam-default-init"] == switches["peer-pwam"] | {"pwam_identity_init": False}
    assert "pwam_identity_init" not in switches["peer-pwam"]  # the runs recorded before the row existed stay valid
    assert switches["igf-words"]["igf_token_pooling"] == "attention"
    assert switches["no-fusion"] == TABLES[2].rows[0].switches()


@pytest.mark.parametrize(
    ("mean", "half_width", "expected"),
    [(0.02, 0.01, "above the full model"), (-0.02, 0.01, "below the full model"), (0.005, 0.01, "within noise"),
     (0.02, None, "n/a (1 seed)")],
)  # fmt: skip
def test_compare_reads_a_difference_without_the_papers_direction(
    mean: float, half_width: float | None, expected: str
) -> None:
    assert compare(Interval(mean, half_width, 3 if half_width is not None else 1)) == expected
    assert compare(None) == "—"


def test_table_p_markdown_has_cost_columns_readings_and_mean_curves() -> None:
    full = [0.60, 0.62, 0.64]

    def record(row: str, seed: int, oiou: float, seconds: float, curve: list[list[float]]) -> dict[str, Any]:
        return _record(row, seed, oiou) | {"train_seconds": seconds, "saved_activation_bytes": 3 * 2**20,
                                           "curve": curve}  # fmt: skip

    records = [record(FULL_KEY, seed, value, 5.0, [[5, value - 0.1], [10, value]]) for seed, value in enumerate(full)]
    records += [record("peer-film", seed, value - 0.05, 2.0, [[5, 0.3], [10, value - 0.05]])
                for seed, value in enumerate(full)]  # fmt: skip
    markdown = table_markdown(TABLES["P"], records)
    lines: dict[str, str] = {}
    for line in markdown.splitlines():  # the first table: overall IoU on val
        if line.startswith("| "):
            lines.setdefault(line.split("|")[1].strip(), line)
    assert "| below the full model | 200 ± 0 | 3.0 |" in lines["FiLM"]  # 2 s / 10 steps, 3 MiB
    assert "| reference | — | — | 500 ± 0 | 3.0 |" in lines["IGF"]
    assert "## Learning curves (val overall IoU, mean over seeds)" in markdown
    assert "| full model | 52.0 | 62.0 |" in markdown and "| fusion_layer=film | 30.0 | 57.0 |" in markdown
    results = summarize(TABLES["P"], records, ["val"])
    assert results[0].curve == ((5, pytest.approx(0.52), 3), (10, pytest.approx(0.62), 3))


def test_table_markdown_has_val_overall_iou_by_expression_form_where_records_have_it() -> None:
    def record(row: str, seed: int, forms: dict[str, float]) -> dict[str, Any]:
        by_form = {form: {"overall_iou": value, "num_samples": 30 + len(form)} for form, value in forms.items()}
        return _record(row, seed, 0.6) | {"by_form": {"val": by_form, "test": {"between": {"overall_iou": 0.0}}}}

    # two seeds of the full model, one FiLM run scored on one form only, and an older record without by_form
    records = [record(FULL_KEY, 0, {"relation": 0.50, "between": 0.20}),
               record(FULL_KEY, 1, {"relation": 0.60, "between": 0.30}),
               record("peer-film", 0, {"relation": 0.40}), _record("peer-concat", 0, 0.5)]  # fmt: skip
    markdown = table_markdown(TABLES["P"], records)
    section = markdown.split("## By expression form (val overall IoU, mean over seeds)\n\n")[1].splitlines()
    assert section == ["| model | between (n=37) | relation (n=38) |", "|---|---|---|",
                       "| full model | 25.0 | 55.0 |", "| fusion_layer=film | — | 40.0 |"]  # fmt: skip
    assert summarize(TABLES["P"], records, ["val"])[0].by_form == {"between": (pytest.approx(0.25), 37),
                                                                   "relation": (pytest.approx(0.55), 38)}  # fmt: skip
    assert "By expression form" not in table_markdown(TABLES["P"], [_record(FULL_KEY, 0, 0.6)])


def test_saved_activations_of_a_training_step_grow_with_the_batch() -> None:
    cfg = load_run_config(CPU_CONFIG, [*TINY, "model.fusion_layer=film"])
    model = build_model(cfg.model)
    model.eval()
    one = saved_activation_bytes(model, cfg)
    assert one > 0 and not model.training  # measured in training mode, mode restored
    cfg.train.batch_size *= 2
    assert saved_activation_bytes(model, cfg) == pytest.approx(2 * one, rel=0.05)


# -- end to end ------------------------------------------------------------------------------------

#: The tiny run of the trainer's tests, less what the runner sets itself, with a tiny test split.
_RUNNER_KEYS = {*MANAGED_KEYS, *(f"model.{name}" for name in FULL_MODEL)}
ABLATION_TINY = [item for item in TINY if item.split("=")[0] not in _RUNNER_KEYS] + ["data.synthetic.test_samples=8"]
TINY_TABLE = ["--table", "6", "--rows", "gate-convgru", "--seeds", "0,1", "--steps", "3", "--config", str(CPU_CONFIG)]


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Table 6 shrunk to two rows (full model, ConvGRU) x two seeds x three steps, two jobs at a time."""
    output = tmp_path_factory.mktemp("ablation")
    assert command.main([*TINY_TABLE, "--jobs", "2", "--output-dir", str(output), *ABLATION_TINY]) == 0
    return output


def test_ablation_records_every_run(ablation: Path) -> None:
    records = {record["run_id"]: record for record in read_records(ablation)}
    assert sorted(records) == ["full-s0", "full-s1", "gate-convgru-s0", "gate-convgru-s1"]
    for record in records.values():
        assert record["steps"] == 3 and record["dataset"] == "synthetic"
        assert set(record["metrics"]) == {"val", "test"}
        for split in ("val", "test"):
            assert set(METRIC_KEYS) <= set(record["metrics"][split])
            assert record["metrics"][split]["num_samples"] == 8
        assert record["parameters"] > 0 and record["steps_per_second"] > 0 and record["wall_seconds"] > 0
        assert record["resumed"] is False
        assert "commit" in record and record["global_overrides"] == ABLATION_TINY
    assert "model.igf_gate=convgru" in records["gate-convgru-s0"]["overrides"]
    assert records["gate-convgru-s0"]["parameters"] > records["full-s0"]["parameters"]  # ConvGRU is the larger gate
    assert records["full-s0"]["table"] == [2, 4, 5, 6, "P"]
    for record in records.values():
        assert record["saved_activation_bytes"] > 0
        assert [step for step, _ in record["curve"]] == [3] and 0 <= record["curve"][0][1] <= 1
    assert (ablation / "COMMAND.txt").read_text().splitlines()[1].startswith("dcmfnet ablate --table 6 --rows")


def test_ablation_writes_markdown_and_plot(ablation: Path) -> None:
    markdown = (ablation / "table6.md").read_text()
    assert markdown.startswith("# Table 6")
    assert "**Resolution**: the full model's val overall IoU is" in markdown
    assert "## Overall IoU (test)" in markdown and "![Table 6](table6.png)" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ConvGRUCell")]
    assert len(rows) == 3 and "| 2 |" in rows[0]  # two seeds
    assert (ablation / "table6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (ablation / "table2.md").exists()


def test_recorded_runs_are_skipped(ablation: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a recorded run was started again")

    monkeypatch.setattr("dcmfnet.ablations.runner.execute_run", refuse)
    before = (ablation / "runs.jsonl").read_text()
    assert command.main([*TINY_TABLE, "--output-dir", str(ablation), *ABLATION_TINY]) == 0
    assert (ablation / "runs.jsonl").read_text() == before
    # and a folder of other settings is refused rather than mixed
    assert command.main([*TINY_TABLE[:-4], "--steps", "4", "--config", str(CPU_CONFIG),
                         "--output-dir", str(ablation), *ABLATION_TINY]) == 2  # fmt: skip
    # and a config that sets a switch only some rows change (the others rely on its value) is refused
    pwam_open = ablation.parent / "pwam_open.yaml"
    pwam_open.write_text(Path(CPU_CONFIG).read_text().replace("model:\n", "model:\n  pwam_identity_init: false\n", 1))
    assert command.main([*TINY_TABLE[:-1], str(pwam_open), "--output-dir", str(ablation / "other"),
                         "--dry-run", *ABLATION_TINY]) == 2  # fmt: skip


def test_only_reruns_a_recorded_run_with_the_same_metrics(
    ablation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "only"
    assert command.main(["--only", "full-s1", "--from", str(ablation), "--output-dir", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "full-s1: recorded in" in printed and "val      overall_iou" in printed
    recorded = {record["run_id"]: record for record in read_records(ablation)}["full-s1"]
    [rerun] = read_records(output)
    assert rerun["run_id"] == "full-s1" and rerun["overrides"] == recorded["overrides"]
    assert recorded["metrics"]["val"]["overall_iou"] > 0  # a real score, not a trivial 0 = 0
    for split in ("val", "test"):
        for key in METRIC_KEYS:
            assert rerun["metrics"][split][key] == pytest.approx(recorded["metrics"][split][key], abs=1e-6)
    assert command.main(["--only", "nope-s0", "--from", str(ablation), "--output-dir", str(output)]) == 2
    assert command.main(["--only", "full-s1", "--from", str(ablation), "--output-dir", str(ablation)]) == 2


def test_a_resumed_run_says_so_and_keeps_the_whole_runs_training_time(ablation: Path, tmp_path: Path) -> None:
    """A run folder with a ``last.pt`` (a run stopped part-way) resumes: ``resumed`` is set, training
    time is the trainer's over the whole run, ``wall_seconds`` only this invocation's."""
    from dcmfnet.ablations.runner import RunSpec, execute_run

    recorded = {record["run_id"]: record for record in read_records(ablation)}["full-s0"]
    output = tmp_path / "resume"
    shutil.copytree(ablation / "runs" / "full-s0", output / "runs" / "full-s0")
    record = execute_run(RunSpec.from_record(recorded), output, commit=None)
    assert record["resumed"] is True
    assert record["train_seconds"] == recorded["train_seconds"]  # nothing left to train: the same clock
    assert record["metrics"] == recorded["metrics"]


def test_a_run_keeps_each_splits_metrics_by_expression_form(
    ablation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the evaluation JSON has ``by_form`` (the built-in benchmark), the record keeps it per split, with the
    metrics a record keeps; the subprocesses are replaced by one writing such a JSON."""
    from dcmfnet.ablations import runner

    scores = dict.fromkeys(METRIC_KEYS, 0.5) | {"overall_iou_standard_error": 0.1, "num_samples": 8}
    forms = {"ordinal": scores | {"num_samples": 3}, "relation": scores | {"num_samples": 5}}

    def evaluate_with_forms(processes: Any, command: list[str], log: Path, what: str) -> None:
        if "evaluate" in command:  # training: nothing left to train
            Path(command[command.index("--output-json") + 1]).write_text(json.dumps(scores | {"by_form": forms}))

    monkeypatch.setattr(runner, "_check_call", evaluate_with_forms)
    recorded = {record["run_id"]: record for record in read_records(ablation)}["full-s0"]
    shutil.copytree(ablation / "runs" / "full-s0", tmp_path / "runs" / "full-s0")
    record = runner.execute_run(runner.RunSpec.from_record(recorded), tmp_path, commit=None)
    kept = {form: {key: value for key, value in form_scores.items() if key != "overall_iou_standard_error"}
            for form, form_scores in forms.items()}  # fmt: skip
    assert record["by_form"] == {"val": kept, "test": kept} and "by_form" not in recorded


def test_report_only_rebuilds_the_tables_from_runs_jsonl(ablation: Path, tmp_path: Path) -> None:
    output = tmp_path / "report"
    output.mkdir()
    shutil.copy(ablation / "runs.jsonl", output / "runs.jsonl")
    assert command.main(["--report-only", "--output-dir", str(output)]) == 0
    assert (output / "table6.md").read_text() == (ablation / "table6.md").read_text()
    assert (output / "table6.png").exists() and not (output / "table4.md").exists()
    assert command.main(["--report-only", "--output-dir", str(tmp_path / "empty")]) == 2


def test_a_stopped_runner_starts_no_waiting_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs still queued when a stop request arrives (SIGTERM) are neither started nor announced."""
    from dcmfnet.ablations import runner

    started: list[str] = []

    def stopped_during_the_first_run(spec: Any, output_dir: Path, **kwargs: Any) -> dict[str, Any]:
        processes = kwargs["processes"]
        started.append(spec.run_id)
        processes.stop()  # the stop request arrives while this run trains
        metrics = {split: {"overall_iou": 0.5} for split in spec.eval_splits}
        return {"run_id": spec.run_id, "metrics": metrics, "wall_seconds": 1.0}

    monkeypatch.setattr(runner, "execute_run", stopped_during_the_first_run)
    specs = plan_runs(TABLES[6].rows[:1], [0, 1, 2], steps=3, config="cpu_synthetic", dataset="synthetic")
    assert runner.run_all(specs, tmp_path, jobs=1) == []
    assert started == [specs[0].run_id]
    assert capsys.readouterr().out.count("training") == 1


# -- seeds until the paired CI is narrow ------------------------------------------------------------


def test_seeding_docstring_example() -> None:
    import doctest

    from dcmfnet.ablations import seeding

    assert doctest.testmod(seeding, report=True).failed == 0


def test_next_seeds_reads_the_width_of_the_paired_interval_only() -> None:
    from dcmfnet.ablations.seeding import next_seeds, wide_rows

    rows = TABLES[6].rows
    full = [0.60, 0.63, 0.61, 0.64]
    # ConvGRU: 5 points below at every seed (a narrow CI); ConvLSTM: +-3 points around the full model (wide)
    records = [_record(FULL_KEY, seed, value) for seed, value in enumerate(full)]
    records += [_record("gate-convgru", seed, value - 0.05) for seed, value in enumerate(full)]
    records += [_record("gate-convlstm", seed, value + 0.03 * (-1) ** seed) for seed, value in enumerate(full)]
    assert wide_rows(rows, records, split="val", half_width=0.01) == ["gate-convlstm"]
    assert next_seeds(rows, records, split="val", half_width=0.01, max_seeds=10) == {"gate-convlstm": 4}
    assert next_seeds(rows, records, split="val", half_width=0.2, max_seeds=10) == {}  # narrow enough
    assert next_seeds(rows, records, split="val", half_width=0.01, max_seeds=4) == {}  # out of seeds
    # a row whose seed 1 is missing gets it first; a row with one paired seed has no CI yet
    sparse = [r for r in records if r["run_id"] not in ("gate-convgru-s1", "gate-convgru-s2", "gate-convgru-s3")]
    assert next_seeds(rows, sparse, split="val", half_width=0.2, max_seeds=10) == {"gate-convgru": 1}
    with pytest.raises(ValueError, match="max_seeds must be at least 2"):
        next_seeds(rows, records, split="val", half_width=0.01, max_seeds=1)
    with pytest.raises(ValueError, match="half_width must be positive"):
        next_seeds(rows, records, split="val", half_width=0.0, max_seeds=10)


def _fake_run(spec: Any, output_dir: Path, *, commit: Any, processes: Any, cpu_capability: Any) -> dict[str, Any]:
    """A record without training: the full model scores 0.60 at every seed, ConvGRU 5 +- 1 points below it
    (alternating with the seed), so its paired CI half-width shrinks as seeds are added (12.7, 2.9, 1.8, 1.4,
    1.2, 1.0 points at 2..7 seeds)."""
    value = 0.60 if spec.row == FULL_KEY else 0.55 + 0.01 * (-1) ** spec.seed
    metrics = {split: dict.fromkeys(METRIC_KEYS, value) | {"num_samples": 8} for split in spec.eval_splits}
    return {**dataclasses.asdict(spec), "metrics": metrics, "parameters": 1000, "commit": commit, "wall_seconds": 1}


@pytest.mark.parametrize(("max_seeds", "seeds_run"), [(10, 7), (5, 5)])
def test_until_ci_adds_seeds_until_the_paired_ci_is_narrow_or_the_seeds_are_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_seeds: int, seeds_run: int
) -> None:
    from dcmfnet.ablations import runner

    monkeypatch.setattr(runner, "execute_run", _fake_run)
    arguments = [*TINY_TABLE, "--until-ci", "1.0", "--max-seeds", str(max_seeds), "--output-dir", str(tmp_path)]
    assert command.main([*arguments, *ABLATION_TINY]) == 0
    run_ids = [record["run_id"] for record in read_records(tmp_path)]
    expected = {f"{row}-s{seed}" for row in (FULL_KEY, "gate-convgru") for seed in range(seeds_run)}
    assert sorted(run_ids) == sorted(expected) and len(run_ids) == len(expected)  # each run once
    assert "--until-ci 1.0 --max-seeds" in (tmp_path / "COMMAND.txt").read_text()
    # the same command again finds nothing to add
    monkeypatch.setattr(runner, "execute_run", lambda *args, **kwargs: pytest.fail("a recorded run ran again"))
    assert command.main([*arguments, *ABLATION_TINY]) == 0


@pytest.mark.parametrize("option", [["--until-ci", "0"], ["--until-ci", "-1"], ["--until-ci", "1", "--max-seeds", "1"]])
def test_until_ci_refuses_bad_values(tmp_path: Path, option: list[str]) -> None:
    assert command.main([*TINY_TABLE, *option, "--dry-run", "--output-dir", str(tmp_path), *ABLATION_TINY]) == 2


# -- the CPU instruction set a run is held to --------------------------------------------------------


def test_a_pinned_cpu_capability_reaches_the_subprocesses() -> None:
    import torch

    from dcmfnet.ablations import runner

    environment = runner._one_thread_environment("avx2")
    assert environment["ATEN_CPU_CAPABILITY"] == "avx2" and environment["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert environment["OMP_NUM_THREADS"] == "1"
    with pytest.raises(InputError, match="one of avx2, avx512, got 'sse'"):
        runner._one_thread_environment("sse")
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("not an x86 CPU with AVX2")
    assert runner.cpu_capability_of(environment) == "AVX2"
    assert runner.cpu_capability_of(runner._one_thread_environment()) == torch.backends.cpu.get_cpu_capability()


def test_records_keep_the_cpu_capability_and_only_reruns_with_it(
    ablation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    records = read_records(ablation)
    assert {record["cpu_capability"] for record in records} == {torch.backends.cpu.get_cpu_capability()}
    held: list[Any] = []

    def capture(specs: Any, output_dir: Path, **kwargs: Any) -> list[str]:
        held.append(kwargs["cpu_capability"])
        raise KeyboardInterrupt  # nothing to train: stop as a stopped runner does

    monkeypatch.setattr("dcmfnet.commands.ablate.run_all", capture)
    source = tmp_path / "source"
    source.mkdir()
    (source / "runs.jsonl").write_text(
        "".join(json.dumps(record | {"cpu_capability": "AVX2"}) + "\n" for record in records)
    )
    assert command.main(["--only", "full-s0", "--from", str(source), "--output-dir", str(tmp_path / "a")]) == 130
    assert command.main(["--only", "full-s0", "--from", str(source), "--output-dir", str(tmp_path / "b"),
                         "--cpu-capability", "avx512"]) == 130  # fmt: skip
    assert held == ["avx2", "avx512"]
    assert "--cpu-capability avx2" in (tmp_path / "a" / "COMMAND.txt").read_text()
