"""SIGKILL at random moments, mid-save included: last/best stay loadable, the next run resumes and finishes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from dcmfnet.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]

#: A training run whose every save pauses 0.4 s after writing its temporary file (before the rename), and
#: says so by touching the marker file: a kill then lands in the middle of the save.
_DRIVER = """
import os, sys, time
from pathlib import Path
import dcmfnet.checkpoint
from dcmfnet.training import train
from tests.dcmfnet.tiny_run import tiny_config

marker, output = Path(sys.argv[1]), sys.argv[2]
real_fsync = os.fsync

def fsync_then_pause(fd):
    real_fsync(fd)
    marker.touch()
    time.sleep(0.4)

dcmfnet.checkpoint.os.fsync = fsync_then_pause
train(tiny_config("train.epochs=3"), output)
"""


def _start(marker: Path, output: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", _DRIVER, str(marker), str(output)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_when(process: subprocess.Popen[bytes], ready: object) -> bool:
    """SIGKILL ``process`` once ``ready()`` is true; False if it ended first."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return True
        time.sleep(0.02)
    output, _ = process.communicate()
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    return False


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    output, marker = tmp_path / "run", tmp_path / "saving"
    chooser = random.Random(0)
    orphans_seen = 0
    for attempt in range(4):
        marker.unlink(missing_ok=True)
        process = _start(marker, output)
        if attempt % 2 == 0:  # in the middle of a save
            killed = _kill_when(process, marker.exists)
        else:  # anywhere: at startup, between steps, in validation, in a save
            moment = time.monotonic() + chooser.uniform(1.0, 6.0)
            killed = _kill_when(process, lambda: time.monotonic() > moment)  # noqa: B023
        orphans_seen += len(list(output.glob(".*.tmp")))
        for name in ("last.pt", "best.pt"):
            if (output / name).exists():
                load_checkpoint(output / name)  # refused with CheckpointError if damaged
        if not killed:
            break
    assert orphans_seen > 0  # the kills mid-save did leave temporary files behind
    final = _start(marker, output)
    text, _ = final.communicate(timeout=300)
    assert final.returncode == 0, text.decode(errors="replace")[-3000:]
    state = load_checkpoint(output / "last.pt")
    assert (state["epoch"], state["step"]) == (3, 18)  # 3 epochs of 24 samples / batch 4
    load_checkpoint(output / "best.pt")
    assert list(output.glob(".*.tmp")) == []  # what the killed saves left was removed
