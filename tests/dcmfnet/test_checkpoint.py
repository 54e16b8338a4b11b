"""Checkpoint I/O: atomic writes, clear errors, RNG round trip, config differences."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dcmfnet import checkpoint as ckpt


def test_round_trip_and_rng(tmp_path: Path) -> None:
    state = ckpt.capture_rng_state()
    before = (random.random(), float(np.random.rand()), float(torch.rand(())))
    path = ckpt.save_checkpoint(
        tmp_path / "a" / "last.pt", {"config": {"x": 1}, "model": {"w": torch.arange(3)}, "rng": [state]}
    )
    loaded = ckpt.load_checkpoint(path)
    assert loaded["config"] == {"x": 1} and torch.equal(loaded["model"]["w"], torch.arange(3))
    ckpt.restore_rng_state(loaded["rng"][0])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == before
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_crash_while_saving_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ckpt.save_checkpoint(tmp_path / "last.pt", {"config": {}, "model": {"step": torch.tensor(1)}})

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, {"config": {}, "model": {"step": torch.tensor(2)}})
    assert int(ckpt.load_checkpoint(path)["model"]["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_missing_and_foreign_files(tmp_path: Path) -> None:
    path = ckpt.save_checkpoint(tmp_path / "c.pt", {"config": {}, "model": {"w": torch.zeros(100)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated"):
        ckpt.load_checkpoint(truncated)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "none.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a DCMFNet checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.pt")


def test_config_differences() -> None:
    a = {"model": {"backbone": "tiny", "layers": 5}, "train": {"epochs": 2}}
    b = {"model": {"backbone": "resnet101", "layers": 5}, "train": {"epochs": 2}, "extra": 1}
    assert ckpt.config_differences(a, b) == ["extra: only in found", "model.backbone: 'tiny' != 'resnet101'"]
    assert ckpt.config_differences(a, a) == []
