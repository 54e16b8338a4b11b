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


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # a flipped protocol byte
def test_a_flipped_byte_is_refused_or_harmless(tmp_path: Path) -> None:
    weights = torch.arange(512, dtype=torch.float32)
    state = {"config": {"lr": 1e-3}, "model": {"w": weights, "n": torch.tensor(3)}, "rng": [(3, (1, 2), None)]}
    path = ckpt.save_checkpoint(tmp_path / "last.pt", state)
    data = path.read_bytes()
    # a byte inside the weights' data: loads without error, so only the digest can tell
    inside = data.index(weights.numpy().tobytes()) + 4 * 300 + 1
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(data[:inside] + bytes([data[inside] ^ 0x10]) + data[inside + 1 :])
    with pytest.raises(ckpt.CheckpointError, match=r"flipped\.pt is corrupt.*SHA-256"):
        ckpt.load_checkpoint(flipped)
    # anywhere else: refused with the file's name, or the content read is exactly what was saved
    for position in range(0, len(data), 5):
        flipped.write_bytes(data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :])
        try:
            loaded = ckpt.load_checkpoint(flipped)
        except ckpt.CheckpointError as error:
            assert "flipped.pt" in str(error)
            continue
        assert torch.equal(loaded["model"]["w"], weights) and loaded["config"] == state["config"], position


def test_a_checkpoint_without_digest_is_refused(tmp_path: Path) -> None:
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "config": {}, "model": {}}, tmp_path / "old.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"old\.pt carries no content digest"):
        ckpt.load_checkpoint(tmp_path / "old.pt")


def test_orphaned_temporaries_are_removed(tmp_path: Path) -> None:
    ckpt.save_checkpoint(tmp_path / "last.pt", {"config": {}, "model": {}})
    orphans = [tmp_path / ".last.pt.k2j3h4.tmp", tmp_path / ".best.pt.abc.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert ckpt.remove_orphaned_temporaries(tmp_path) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
