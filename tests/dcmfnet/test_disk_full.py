"""A full disk while a checkpoint is written: one line naming the path, the last good files kept, then resume.

The disk fills for real: the checkpoint's temporary file is created in the run folder as usual, but
its descriptor is replaced by one on ``/dev/full``, where every write fails with ``ENOSPC`` from the
kernel (the same error a full disk gives). Only writes into the chosen folder are redirected.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import dcmfnet.checkpoint
from dcmfnet.checkpoint import load_checkpoint, save_checkpoint
from dcmfnet.errors import CheckpointError
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY, dcmfnet_command

FULL = Path("/dev/full")
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux) to fail writes with ENOSPC")


def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """From now on, every checkpoint written into ``folder`` fails with ENOSPC at its first write."""
    real_mkstemp: Callable[..., tuple[int, str]] = tempfile.mkstemp

    def mkstemp_on_a_full_disk(*args: object, **kwargs: object) -> tuple[int, str]:
        handle, name = real_mkstemp(*args, **kwargs)  # type: ignore[arg-type]
        if Path(name).parent.resolve() == folder.resolve():
            os.close(handle)
            handle = os.open(FULL, os.O_WRONLY)
        return handle, name

    monkeypatch.setattr(dcmfnet.checkpoint.tempfile, "mkstemp", mkstemp_on_a_full_disk)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_on_a_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"config": {}, "model": {"w": torch.ones(3)}, "epoch": 1})
    before = digest(path)
    fill_disk(monkeypatch, tmp_path)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(path, {"config": {}, "model": {"w": torch.zeros(1000)}, "epoch": 2})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write checkpoint {path}: No space left on device (ENOSPC)")
    assert re.search(r"; [0-9.]+ (B|KiB|MiB|GiB) free there, the checkpoint needs about 3.9 KiB;", message), message
    assert "last.pt keeps its last good content" in message and "run the same command again to resume" in message
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert digest(path) == before and load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temporary file is gone
    with pytest.raises(CheckpointError, match=r"best\.pt was not written"):
        save_checkpoint(tmp_path / "best.pt", {"config": {}, "model": {}})
    assert not (tmp_path / "best.pt").exists()


@pytest.mark.slow
def test_training_on_a_full_disk_stops_in_one_line_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    command = ["train", "--config", str(CPU_CONFIG), "--output-dir", str(run), *TINY]
    code, _, err = dcmfnet_command([*command, "train.epochs=1"], capsys)
    assert code == 0, err
    kept = {name: digest(run / name) for name in ("last.pt", "best.pt")}

    with monkeypatch.context() as patch:
        fill_disk(patch, run)
        code, out, err = dcmfnet_command([*command, "train.epochs=2"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("dcmfnet train: error: cannot write checkpoint ")
    assert "No space left on device" in lines[0]
    assert any(f"{run / name}:" in lines[0] for name in kept), lines[0]
    assert {name: digest(run / name) for name in kept} == kept  # still the last good ones
    assert not list(run.glob(".*.tmp"))
    assert load_checkpoint(run / "last.pt")["epoch"] == 1

    code, out, err = dcmfnet_command([*command, "train.epochs=2"], capsys)  # room again: the same command
    assert code == 0, err
    assert "resuming at epoch 1" in out
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
