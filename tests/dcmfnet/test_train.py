"""The trainer on tiny runs: it learns, logs, resumes after SIGTERM exactly, refuses bad configs."""

from __future__ import annotations

import json
import math
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import dcmfnet.training as train_module
from dcmfnet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dcmfnet.commands import train as train_command
from dcmfnet.train_config import ConfigError, OptimConfig, load_run_config
from dcmfnet.training import LearningRateSchedule, _resume_state, train
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY, tiny_config


def test_cpu_config_loads_and_unknown_keys_fail() -> None:
    cfg = load_run_config(CPU_CONFIG)
    assert cfg.model.backbone == "tiny_cnn" and cfg.data.dataset == "synthetic"
    # a fixed number of steps, not a time budget: the same model on any machine
    assert cfg.optim.schedule_by == "steps" and cfg.train.max_steps == 1800 and cfg.train.max_train_minutes is None
    assert cfg.train.reference_step_seconds and "2-core" in (cfg.train.reference_machine or "")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch'.*epochs"):
        load_run_config(CPU_CONFIG, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="precision"):
        load_run_config(CPU_CONFIG, ["train.precision=fp8"])


@pytest.mark.parametrize("name", ["refcoco_unc_resnet101", "refcocoplus_unc_resnet101", "refcocog_umd_resnet101",
                                  "referit_resnet101", "refcoco_unc_swin"])  # fmt: skip
def test_paper_recipe_configs(name: str) -> None:
    cfg = load_run_config(CPU_CONFIG.parent / f"{name}.yaml")
    assert (cfg.optim.lr_backbone, cfg.optim.lr_rest) == (1.82e-5, 1.82e-4)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.data.image_size, cfg.train.dice_weight) == (15, 6, 480, 0.0)
    assert cfg.model.igf_layers == 5 and cfg.model.backbone in ("resnet101", "swin_base")


def test_schedule_warmup_and_decay() -> None:
    schedule = LearningRateSchedule(OptimConfig(schedule="poly", warmup_steps=4, poly_power=1.0), total_steps=10)
    assert [round(schedule(s), 3) for s in (0, 3, 5, 10)] == [0.25, 0.7, 0.5, 0.0]
    timed = LearningRateSchedule(OptimConfig(schedule="cosine", schedule_by="time"), total_steps=10)
    timed.time_fraction = 0.5
    assert timed(1) == pytest.approx(0.5)


def test_training_run_writes_everything(tmp_path: Path) -> None:
    result = train(tiny_config("train.grad_accum_steps=2"), tmp_path)
    assert result["stopped"] == "done" and result["epoch"] == 2 and result["step"] == 6  # 24/4/2 x 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0.0 <= r["val_overall_iou"] <= 1.0 and r["val_num_samples"] == 8 for r in records)
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "curves.png", "gallery.png"):
        assert (tmp_path / name).is_file(), name
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["config"]["train"]["grad_accum_steps"] == 2 and state["step"] == 6
    # the same command again resumes a finished run: nothing more to do
    again = train(tiny_config("train.grad_accum_steps=2"), tmp_path)
    assert again["step"] == 6


def test_eval_every_steps_validates_inside_epochs_and_resumes_the_same(tmp_path: Path) -> None:
    """Validation every 2 steps inside 6-step epochs logs a learning curve; the epochs' own records stay."""
    result = train(tiny_config("train.eval_every_steps=2"), tmp_path)
    assert result["stopped"] == "done" and result["step"] == 12
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]
    assert [r["epoch"] for r in records] == [0, 0, 1, 1, 1, 2]
    assert all("val_overall_iou" in r for r in records)
    # the curve's steps need not divide an epoch: the run still ends at its epochs' end
    other = train(tiny_config("train.eval_every_steps=4"), tmp_path / "four")
    steps = [json.loads(line)["step"] for line in (tmp_path / "four" / "metrics.jsonl").read_text().splitlines()]
    assert other["step"] == 12 and steps == [4, 6, 8, 12]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step(tmp_path: Path, precision: str) -> None:
    result = train(tiny_config(f"train.precision={precision}", "train.max_steps=1", "train.epochs=1"), tmp_path)
    assert result["stopped"] == "max_steps" and result["step"] == 1
    state = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["scaler"] == {} or "scale" in state["scaler"]


def test_sigterm_then_resume_matches_an_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config("model.head_dropout=0.2")  # dropout: the RNG state must be restored too
    reference = train(cfg, tmp_path / "reference")
    expected = load_checkpoint(tmp_path / "reference" / "last.pt")

    calls = {"n": 0}
    collate = train_module.collate_referring

    def collate_then_sigterm(items: list[dict[str, Any]]) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th training batch: in the middle of epoch 1 (6 batches per epoch)
            signal.raise_signal(signal.SIGTERM)
        return collate(items)

    monkeypatch.setattr(train_module, "collate_referring", collate_then_sigterm)
    stopped = train(cfg, tmp_path / "resumed")
    assert stopped["stopped"] == "signal" and stopped["step"] == 4
    interrupted = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert (interrupted["epoch"], interrupted["step"], interrupted["epoch_batches"]) == (0, 4, 4)
    monkeypatch.setattr(train_module, "collate_referring", collate)
    resumed = train(cfg, tmp_path / "resumed")
    assert resumed["step"] == reference["step"] == 12
    final = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert final["step"] == expected["step"] and final["epoch"] == expected["epoch"]
    for key, value in expected["model"].items():
        torch.testing.assert_close(final["model"][key], value, msg=key)
    for group_expected, group_final in zip(
        expected["optimizer"]["state"].values(), final["optimizer"]["state"].values(), strict=True
    ):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(group_final[key], group_expected[key])
    assert final["scheduler"] == expected["scheduler"]


def test_resume_reads_a_setting_added_after_the_checkpoint_at_its_default(tmp_path: Path) -> None:
    """A checkpoint written before a model setting existed was trained with that setting's default."""
    train(tiny_config("train.epochs=1"), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    del state["config"]["model"]["pwam_identity_init"]  # as written before the setting existed
    save_checkpoint(tmp_path / "last.pt", state)
    with pytest.raises(CheckpointError, match=r"another config[\s\S]*model.pwam_identity_init: False != True"):
        train(tiny_config("train.epochs=2", "model.pwam_identity_init=false"), tmp_path)
    assert train(tiny_config("train.epochs=2"), tmp_path)["step"] == 12


def test_resume_refuses_another_config_and_truncated_file(tmp_path: Path) -> None:
    train(tiny_config("train.epochs=1"), tmp_path)
    with pytest.raises(CheckpointError, match=r"another config[\s\S]*model.igf_layers: 3 != 2"):
        train(tiny_config("train.epochs=1", "model.igf_layers=3"), tmp_path)
    # the optimizer and schedule config must match too (the checkpoint's lrs and schedule would win silently)
    with pytest.raises(CheckpointError, match=r"another config[\s\S]*optim.lr_rest: 0.001 != 0.002"):
        train(tiny_config("train.epochs=1", "optim.lr_rest=1e-3"), tmp_path)
    with pytest.raises(CheckpointError, match=r"optim.schedule: 'cosine' != 'poly'"):
        train(tiny_config("train.epochs=1", "optim.schedule=cosine"), tmp_path)
    assert train(tiny_config("train.epochs=1", "optim.grad_clip_norm=1.0"), tmp_path)["step"] == 6  # may change
    with pytest.raises(CheckpointError, match="exists"):
        train(tiny_config("train.epochs=1"), tmp_path, resume="never")
    path = tmp_path / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        train(tiny_config("train.epochs=1"), tmp_path)


def test_the_loss_goes_down(tmp_path: Path) -> None:
    cfg = tiny_config(
        "train.epochs=6", "data.synthetic.train_samples=16", "optim.lr_rest=3e-3", "optim.lr_backbone=3e-3",
        "train.dice_weight=0",  # the paper's BCE alone
    )  # fmt: skip
    train(cfg, tmp_path)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.8 * losses[0]


def test_atomic_checkpoint_is_what_resume_reads(tmp_path: Path) -> None:
    train(tiny_config("train.epochs=1"), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    save_checkpoint(tmp_path / "copy.pt", {k: v for k, v in state.items() if k != "format"})
    result = train(tiny_config("train.epochs=2"), tmp_path / "other", resume=str(tmp_path / "copy.pt"))
    assert result["step"] == 12 and result["epoch"] == 2


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"n": 0}
    collate = train_module.collate_referring

    def counting_collate(items: list[dict[str, Any]]) -> Any:
        calls["n"] += 1
        return collate(items)

    monkeypatch.setattr(train_module, "collate_referring", counting_collate)
    return calls


def test_accumulation_leaves_no_gradient_behind_across_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 28 samples / batch 4 = 7 batches, accumulation 2: 3 steps per epoch; the 7th batch must not be trained on,
    # else its gradient leaks into the next epoch's first step (and is lost when resuming at the epoch's end)
    options = ("data.synthetic.train_samples=28", "train.grad_accum_steps=2", "optim.schedule=constant",
               "optim.warmup_steps=0")  # fmt: skip
    calls = _count_batches(monkeypatch)
    reference = train(tiny_config(*options, "train.epochs=2"), tmp_path / "reference")
    assert reference["step"] == 6 and calls["n"] == 12
    train(tiny_config(*options, "train.epochs=1"), tmp_path / "resumed")
    resumed = train(tiny_config(*options, "train.epochs=2"), tmp_path / "resumed")  # a fresh first step in epoch 2
    assert resumed["step"] == 6 and calls["n"] == 24
    expected, final = (load_checkpoint(tmp_path / name / "last.pt") for name in ("reference", "resumed"))
    for key, value in expected["model"].items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=0, msg=key)


def test_sigterm_on_the_last_batch_of_an_epoch_validates_it_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config("model.head_dropout=0.2")
    train(cfg, tmp_path / "reference")
    expected = load_checkpoint(tmp_path / "reference" / "last.pt")
    calls = _count_batches(monkeypatch)
    collate = train_module.collate_referring

    def collate_then_sigterm(items: list[dict[str, Any]]) -> Any:
        if calls["n"] == 5:  # the 6th and last batch of epoch 1
            signal.raise_signal(signal.SIGTERM)
        return collate(items)

    monkeypatch.setattr(train_module, "collate_referring", collate_then_sigterm)
    stopped = train(cfg, tmp_path / "resumed")
    assert stopped["stopped"] == "signal" and stopped["step"] == 6
    interrupted = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert (interrupted["epoch"], interrupted["step"], interrupted["epoch_batches"]) == (0, 6, 6)
    monkeypatch.setattr(train_module, "collate_referring", collate)
    train(cfg, tmp_path / "resumed")
    records, reference = (
        [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("resumed", "reference")
    )
    assert [r["epoch"] for r in records] == [1, 2] and all("val_overall_iou" in r for r in records)
    for record, wanted in zip(records, reference, strict=True):
        assert record["train_loss"] == pytest.approx(wanted["train_loss"], rel=1e-12)
        assert record["val_overall_iou"] == wanted["val_overall_iou"]
    final = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for key, value in expected["model"].items():
        torch.testing.assert_close(final["model"][key], value, msg=key)


def test_resume_refuses_another_world_size_mid_epoch(tmp_path: Path) -> None:
    cfg = tiny_config("train.epochs=1")
    train(cfg, tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["world_size"] == 1 and len(state["rng"]) == 1
    state = {key: value for key, value in state.items() if key != "format"}
    # faked: saved 3 batches into epoch 1 by 2 processes; resumed by 1
    save_checkpoint(tmp_path / "ddp.pt", {**state, "world_size": 2, "epoch": 0, "epoch_batches": 3})
    with pytest.raises(CheckpointError, match=r"3 batches into an epoch by 2 process\(es\); resume it with 2, not 1"):
        train(cfg, tmp_path / "other", resume=str(tmp_path / "ddp.pt"))
    # at an epoch boundary fewer processes may resume; more cannot (no RNG state for the extra ranks)
    save_checkpoint(tmp_path / "boundary.pt", {**state, "world_size": 2})
    assert _resume_state(tmp_path, str(tmp_path / "boundary.pt"), cfg, world_size=1) is not None
    with pytest.raises(CheckpointError, match="RNG states of 1 process"):
        _resume_state(tmp_path, str(tmp_path / "last.pt"), cfg, world_size=2)


def test_no_loss_item_per_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = {"n": 0}
    losses: list[float] = []

    class CountingLoss(torch.Tensor):
        def item(self) -> Any:  # type: ignore[override]
            items["n"] += 1
            return super().item()

    loss_fn = train_module.segmentation_loss

    def recording_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = loss_fn(*args, **kwargs)
        losses.append(float(loss.detach()))
        return loss.as_subclass(CountingLoss)

    monkeypatch.setattr(train_module, "segmentation_loss", recording_loss)
    train(tiny_config(), tmp_path)
    assert len(losses) == 12 and items["n"] <= 2 * 3  # per epoch at most: the log record and two checkpoints
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for record, epoch_losses in zip(records, (losses[:6], losses[6:]), strict=True):
        assert record["train_loss"] == pytest.approx(sum(epoch_losses) / 6, rel=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr_rest=nan", "optim.lr_rest must be a finite number >= 0, got nan"),
        ("optim.lr_backbone=-1e-4", "optim.lr_backbone must be a finite number >= 0, got -0.0001"),
        ("optim.weight_decay=inf", "optim.weight_decay must be a finite number >= 0, got inf"),
        ("train.max_train_minutes=-5", "train.max_train_minutes must be a finite number > 0, got -5.0"),
        ("train.max_steps=0", "train.max_steps must be a finite number >= 1, got 0"),
        ("train.eval_every_steps=0", "train.eval_every_steps must be a finite number >= 1, got 0"),
    ],
)
def test_learning_rates_and_budgets_must_be_finite_and_in_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_run_config(CPU_CONFIG, [override])


def _loss_turns_nan_on(batch: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """From now on the ``batch``-th training loss (counting from 1) is NaN; returns that batch's sample indices."""
    seen: dict[str, Any] = {"n": 0, "indices": None}
    collate, loss_fn = train_module.collate_referring, train_module.segmentation_loss

    def recording_collate(items: list[dict[str, Any]]) -> Any:
        collated = collate(items)
        if seen["n"] == batch - 1:
            seen["indices"] = collated.indices.tolist()
        return collated

    def sometimes_nan(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen["n"] += 1
        loss = loss_fn(*args, **kwargs)
        return loss * float("nan") if seen["n"] == batch else loss

    monkeypatch.setattr(train_module, "collate_referring", recording_collate)
    monkeypatch.setattr(train_module, "segmentation_loss", sometimes_nan)
    return seen


def test_a_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _loss_turns_nan_on(9, monkeypatch)  # the 3rd batch of epoch 2 (6 batches per epoch)
    command = ["--config", str(CPU_CONFIG), "--output-dir", str(tmp_path), *TINY]
    assert train_command.main(command) == 1
    error = capsys.readouterr().err
    where = "non-finite loss at optimizer step 9 (epoch 2, batch 3 of the epoch)"
    assert f"{where}, training samples {seen['indices']}" in error
    assert "lower learning rate" in error and "train.precision=fp32" in error and "Traceback" not in error
    for name in ("last.pt", "best.pt"):  # written after epoch 1; nothing after the NaN
        state = load_checkpoint(tmp_path / name)
        assert (state["epoch"], state["step"]) == (1, 6), name
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


def test_skip_nonfinite_skips_the_batch_and_counts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _loss_turns_nan_on(9, monkeypatch)
    result = train(tiny_config("train.skip_nonfinite=true"), tmp_path)
    assert result["stopped"] == "done" and result["step"] == 11 and result["skipped_batches"] == 1
    assert math.isfinite(result["train_loss"])
    state = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_run_of_known_length_shows_its_eta_and_the_reference_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a time budget the bar counts the run's steps (its ETA is the end of training), and the run says
    up front how long its steps took on the reference machine."""
    overrides = ["train.progress_bar=true", "train.reference_step_seconds=0.5", "train.reference_machine=a test box"]
    train(tiny_config(*overrides), tmp_path / "run")
    out, err = capsys.readouterr()
    assert "on a test box one step took 0.50 s: 12 steps in about 0.1 min of training" in out
    assert "12/12 [" in err and "6/6 [" not in err  # two epochs of 6 steps on one bar of the run's 12 steps
