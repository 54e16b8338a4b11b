"""The new user's sequence, as separate processes from a folder outside the repository:
train -> evaluate -> export -> load_pretrained -> predict on an EXIF-rotated photo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dcmfnet.data import SyntheticReferring
from dcmfnet.inference import Segmenter
from tests.dcmfnet.tiny_run import TINY

REPO = Path(__file__).resolve().parents[2]


def dcmfnet(*args: str, cwd: Path) -> str:
    """Run the ``dcmfnet`` console script (``python -m dcmfnet`` where it is not on PATH); returns stdout."""
    script = shutil.which("dcmfnet", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "dcmfnet"]
    return run([*command, *args], cwd=cwd)


def run(command: list[str], *, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout's path
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_train_evaluate_export_load_predict_from_an_empty_folder(tmp_path: Path) -> None:
    assert REPO not in tmp_path.parents
    dcmfnet("train", "--config", "cpu_synthetic", "--output-dir", "run", *TINY, "train.epochs=1", cwd=tmp_path)
    assert (tmp_path / "run" / "best.pt").is_file()
    dcmfnet("evaluate", "--checkpoint", "run/best.pt", "--output-json", "e.json", cwd=tmp_path)
    assert 0.0 <= json.loads((tmp_path / "e.json").read_text())["overall_iou"] <= 1.0
    dcmfnet("export", "--checkpoint", "run/best.pt", "--output-dir", "model", cwd=tmp_path)
    load = 'from dcmfnet.pretrained import load_pretrained; print(load_pretrained("model").config.image_size)'
    loaded = run([sys.executable, "-c", load], cwd=tmp_path)
    assert loaded.strip() == "32"

    # a photo stored sideways (EXIF orientation 6): the mask comes out as a viewer shows the photo
    raw = SyntheticReferring(split="test", num_samples=1, image_size=48).raw(0)
    upright = raw.image[:, :40]
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: store it rotated 90° counter-clockwise
    Image.fromarray(np.rot90(upright, k=1)).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    dcmfnet("predict", "--model", "model", "--image", "photo.jpg", "--expression", raw.expression,
            "--output", "out.png", "--mask-output", "mask.png", cwd=tmp_path)  # fmt: skip
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 0
    assert mask.shape == upright.shape[:2] and Image.open(tmp_path / "out.png").size == (40, 48)
    expected = Segmenter.from_pretrained(tmp_path / "model").segment(tmp_path / "photo.jpg", raw.expression)
    assert np.array_equal(mask, expected.mask)
