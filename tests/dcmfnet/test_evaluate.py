"""Evaluation and prediction entry points, the REFER path end to end, and a 2-process torchrun run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dcmfnet.checkpoint import load_checkpoint, save_checkpoint
from dcmfnet.commands import evaluate, predict
from dcmfnet.data import BenchmarkReferring, SyntheticReferring
from dcmfnet.errors import InputError
from dcmfnet.evaluation import evaluate_to_json
from dcmfnet.loading import load_model_from_checkpoint
from dcmfnet.training import train
from tests.dcmfnet.fixtures_refer import make_refer_fixture
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY, tiny_config

REPO = Path(__file__).resolve().parents[2]
KEYS = {"overall_iou", "mean_iou", "num_samples", *(f"precision@{t}" for t in (0.5, 0.6, 0.7, 0.8, 0.9))}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run")
    train(tiny_config("train.epochs=1", "data.synthetic.val_samples=7", "data.synthetic.test_samples=5"), output)
    return output / "last.pt"


def test_evaluate_cli_writes_metrics_and_gallery(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "val.json"
    assert evaluate.main(["--checkpoint", str(checkpoint), "--output-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= KEYS and result["num_samples"] == 7 and result["split"] == "val"
    assert all(0.0 <= result[k] <= 1.0 for k in KEYS - {"num_samples"})
    assert (tmp_path / "val_gallery.png").is_file()
    shuffled = tmp_path / "shuffled.json"
    evaluate.main(["--checkpoint", str(checkpoint), "--split", "test", "--shuffle-expressions",
                   "--output-json", str(shuffled), "--gallery", "none"])  # fmt: skip
    result = json.loads(shuffled.read_text())
    assert result["num_samples"] == 5 and result["shuffle_expressions"] is True and result["split"] == "test"
    assert not (tmp_path / "shuffled_gallery.png").exists()


def test_evaluate_to_json_is_the_command_without_argparse(checkpoint: Path, tmp_path: Path) -> None:
    """The library function the command calls: typed arguments, the record and the files written."""
    result = evaluate_to_json(tmp_path / "t.json", checkpoint=checkpoint, split="test", max_samples=3)
    assert result.split == "test" and result.output_json == tmp_path / "t.json"
    assert json.loads((tmp_path / "t.json").read_text()) == result.record and result.record["num_samples"] == 3
    assert result.gallery == tmp_path / "t_gallery.png" and result.gallery.is_file()
    result = evaluate_to_json(tmp_path / "u.json", checkpoint=checkpoint, write_gallery=False)
    assert result.gallery is None and not (tmp_path / "u_gallery.png").exists()
    with pytest.raises(InputError, match="exactly one"):
        evaluate_to_json(tmp_path / "v.json")
    with pytest.raises(InputError, match="batch_size must be at least 1, got 0"):
        evaluate_to_json(tmp_path / "v.json", checkpoint=checkpoint, batch_size=0)


def test_evaluate_to_json_scores_each_benchmark_form(checkpoint: Path, tmp_path: Path) -> None:
    """On the built-in benchmark the record has ``by_form``, the split's samples by expression form; a shuffled
    run has none (its expressions belong to other samples), nor has a dataset without forms."""
    state = load_checkpoint(checkpoint)
    state["config"]["data"]["dataset"] = "refcocog_like"  # the same tiny model, scored on benchmark scenes
    moved = save_checkpoint(tmp_path / "benchmark.pt", {k: v for k, v in state.items() if k != "format"})
    record = evaluate_to_json(tmp_path / "b.json", checkpoint=moved, max_samples=16, write_gallery=False).record
    assert json.loads((tmp_path / "b.json").read_text()) == record
    by_form = record["by_form"]
    dataset = BenchmarkReferring(kind="refcocog_like", split="val", num_samples=16, seed=0)
    assert list(by_form) == sorted({dataset.form(i) for i in range(16)}) and len(by_form) > 1
    assert sum(scores["num_samples"] for scores in by_form.values()) == record["num_samples"] == 16
    assert all(set(scores) == KEYS | {"overall_iou_standard_error"} for scores in by_form.values())
    shuffled = evaluate_to_json(tmp_path / "s.json", checkpoint=moved, max_samples=16, shuffle_expressions=True,
                                write_gallery=False)  # fmt: skip
    assert "by_form" not in shuffled.record and shuffled.record["num_samples"] == 16
    plain = evaluate_to_json(tmp_path / "p.json", checkpoint=checkpoint, max_samples=2, write_gallery=False)
    assert "by_form" not in plain.record


def test_predict_cli_overlay_maps_and_bad_input(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = SyntheticReferring(split="test", num_samples=1, image_size=48).raw(0)  # another size than training
    Image.fromarray(raw.image).save(tmp_path / "scene.png")
    args = ["--checkpoint", str(checkpoint), "--image", str(tmp_path / "scene.png"), "--expression", raw.expression]
    assert predict.main([*args, "--output", str(tmp_path / "out.png"), "--maps", str(tmp_path / "maps")]) == 0
    assert Image.open(tmp_path / "out.png").size == (48, 48)
    names = {p.name for p in (tmp_path / "maps").iterdir()}
    assert "fig6_stages.png" in names and {"fig7_e3.png", "fig7_e4.png", "fig7_enc.png", "fig7_dec.png"} <= names
    assert predict.main([*args[:4], "--expression", "  ", "--output", str(tmp_path / "x.png")]) == 2
    assert "expression is empty" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    broken = [*args[:2], "--image", str(tmp_path / "broken.png"), "--expression", "the red circle"]
    assert predict.main([*broken, "--output", str(tmp_path / "x.png")]) == 2  # one line, exit 2
    assert "broken.png" in capsys.readouterr().err
    with pytest.raises(OSError, match=r"broken\.png"):  # --debug: the exception itself
        predict.main([*broken, "--output", str(tmp_path / "x.png"), "--debug"])


def test_refer_dataset_trains_and_evaluates_at_original_size(tmp_path: Path) -> None:
    make_refer_fixture(tmp_path / "refer")
    cfg = tiny_config("data.dataset=refcoco", f"data.root={tmp_path / 'refer'}", "train.epochs=1", "train.batch_size=2")
    train(cfg, tmp_path / "run")
    out = tmp_path / "testA.json"
    evaluate.main(["--checkpoint", str(tmp_path / "run" / "last.pt"), "--split", "testA", "--output-json", str(out)])
    result = json.loads(out.read_text())
    assert result["num_samples"] == 4 and result["resolution"] == "original image size"
    # a missing dataset root names the expected layout
    missing_root = ["--checkpoint", str(tmp_path / "run" / "last.pt"), "--data-root", str(tmp_path / "none")]
    with pytest.raises(FileNotFoundError, match="expected the REFER layout"):
        evaluate.main([*missing_root, "--output-json", str(out), "--debug"])


def _run(command: list[str], env: dict[str, str]) -> None:
    """Run a torchrun command; on timeout kill its whole process group (no orphaned workers)."""
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]


def test_torchrun_two_processes_train_and_evaluate(checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    overrides = [*TINY, "train.epochs=1", "data.synthetic.val_samples=7"]
    _run(
        [*launcher, "-m", "dcmfnet.train", "--config", str(CPU_CONFIG), "--output-dir", str(tmp_path / "ddp"),
         *overrides],
        env,
    )  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_num_samples"] == 7  # 7 samples over 2 ranks: none lost, none counted twice
    assert records[-1]["step"] == 3  # 24 samples / 2 ranks / batch 4
    # a 2-process evaluation gives the single-process numbers
    _run(
        [*launcher, "-m", "dcmfnet.evaluate", "--checkpoint", str(checkpoint), "--gallery", "none",
         "--output-json", str(tmp_path / "ddp.json")],
        env,
    )  # fmt: skip
    evaluate.main(["--checkpoint", str(checkpoint), "--gallery", "none", "--output-json", str(tmp_path / "one.json")])
    two, one = (json.loads((tmp_path / name).read_text()) for name in ("ddp.json", "one.json"))
    assert {k: two[k] for k in KEYS} == pytest.approx({k: one[k] for k in KEYS})
    assert two["num_samples"] == 7


def test_evaluation_does_not_need_the_training_backbone_weights(checkpoint: Path, tmp_path: Path) -> None:
    state = load_checkpoint(checkpoint)
    state["config"]["model"]["backbone_weights"] = str(tmp_path / "only_on_the_training_machine.pt")
    moved = save_checkpoint(tmp_path / "moved.pt", {k: v for k, v in state.items() if k != "format"})
    model, cfg, _ = load_model_from_checkpoint(moved)
    assert cfg.model.backbone_weights == state["config"]["model"]["backbone_weights"]  # the config is as stored
    for key, value in state["model"].items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
