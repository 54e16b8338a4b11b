"""Every error a user can fix ends in one line on stderr and exit code 2; ``--debug`` keeps the traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcmfnet.commands import evaluate, predict
from dcmfnet.commands import train as train_command
from dcmfnet.commands.main import main as dcmfnet_main
from dcmfnet.devices import resolve_device
from dcmfnet.errors import DeviceError, SplitError, UserError
from dcmfnet.training import train
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run")
    train(tiny_config("train.epochs=1", "data.synthetic.val_samples=4"), output)
    return output / "last.pt"


@pytest.fixture()
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_an_unknown_split_is_one_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["--checkpoint", str(checkpoint), "--split", "tset", "--output-json", str(tmp_path / "e.json")]
    assert evaluate.main(command) == 2
    one_line_error(capsys, "dcmfnet evaluate: error:", "'tset'", "val")
    with pytest.raises(SplitError, match="tset"):
        evaluate.main([*command, "--debug"])


def test_max_samples_zero_is_one_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["evaluate", "--checkpoint", str(checkpoint), "--max-samples", "0", "--output-json", str(tmp_path / "e")]
    assert dcmfnet_main(command) == 2
    one_line_error(capsys, "dcmfnet evaluate: error: --max-samples must be at least 1, got 0")


def test_cuda_without_cuda_is_one_line_in_every_command(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_cuda: None
) -> None:
    output = ["--output-json", str(tmp_path / "e.json")]
    assert evaluate.main(["--checkpoint", str(checkpoint), "--device", "cuda", *output]) == 2
    one_line_error(capsys, "dcmfnet evaluate: error:", "CUDA is not available")

    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    image = ["--image", str(tmp_path / "black.png"), "--expression", "the red circle", "--output", str(tmp_path / "o")]
    assert predict.main(["--checkpoint", str(checkpoint), *image, "--device", "cuda"]) == 2
    one_line_error(capsys, "dcmfnet predict: error:", "CUDA is not available")

    run = ["--config", str(CPU_CONFIG), "--output-dir", str(tmp_path / "run"), *TINY]
    assert train_command.main([*run, "--device", "cuda"]) == 2
    one_line_error(capsys, "dcmfnet train: error:", "CUDA is not available")
    assert train_command.main([*run, "train.device=cuda"]) == 2
    one_line_error(capsys, "dcmfnet train: error:", "CUDA is not available")
    with pytest.raises(DeviceError):
        train_command.main([*run, "--device", "cuda", "--debug"])


def test_resolve_device(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device(name)
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    assert issubclass(DeviceError, UserError) and issubclass(DeviceError, RuntimeError)


def test_a_defect_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a defect")

    monkeypatch.setattr(train_command, "train", broken)
    with pytest.raises(KeyError, match="a defect"):
        train_command.main(["--config", str(CPU_CONFIG), "--output-dir", str(tmp_path / "run"), *TINY])


def test_a_folder_is_named_a_folder(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    words = ["--expression", "the red circle", "--output", str(tmp_path / "o.png")]
    assert predict.main(["--checkpoint", str(tmp_path), "--image", str(tmp_path / "black.png"), *words]) == 2
    one_line_error(capsys, f"checkpoint {tmp_path} is a folder", "expected a checkpoint file", "best.pt")
    assert predict.main(["--checkpoint", str(checkpoint), "--image", str(tmp_path), *words]) == 2
    one_line_error(capsys, f"image {tmp_path} is a folder", "expected an image file")


def test_an_image_given_as_checkpoint_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    png = str(tmp_path / "black.png")
    words = ["--expression", "the red circle", "--output", str(tmp_path / "o.png")]
    assert predict.main(["--checkpoint", png, "--image", png, *words]) == 2
    err = one_line_error(capsys, "black.png is not a checkpoint", "expected a checkpoint file", "PNG")
    assert "weights_only" not in err


def test_a_value_of_the_wrong_type_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["--config", str(CPU_CONFIG), "--output-dir", str(tmp_path / "run"), *TINY]
    assert train_command.main([*run, "optim.lr_rest=abc"]) == 2
    one_line_error(capsys, "invalid value for optim.lr_rest", "expected a number, got 'abc'")
    assert train_command.main([*run, "train.max_steps=1.5"]) == 2
    one_line_error(capsys, "invalid value for train.max_steps", "expected an integer or null, got 1.5")


def test_batch_size_zero_is_refused(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["--checkpoint", str(checkpoint), "--batch-size", "0", "--output-json", str(tmp_path / "e.json")]
    assert evaluate.main(command) == 2
    one_line_error(capsys, "--batch-size must be at least 1, got 0")
    assert not (tmp_path / "e.json").exists()


def test_an_output_in_a_missing_folder_is_refused(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    model = ["--checkpoint", str(checkpoint), "--image", str(tmp_path / "black.png"), "--expression", "the red circle"]
    missing = tmp_path / "missing" / "dir"
    assert predict.main([*model, "--output", str(missing / "o.png")]) == 2
    one_line_error(capsys, f"--output {missing / 'o.png'}: its folder {missing} does not exist")
    assert predict.main([*model, "--output", str(tmp_path / "o.png"), "--mask-output", str(missing / "m.png")]) == 2
    one_line_error(capsys, f"--mask-output {missing / 'm.png'}: its folder {missing} does not exist")
    assert evaluate.main(["--checkpoint", str(checkpoint), "--output-json", str(missing / "e.json")]) == 2
    one_line_error(capsys, f"--output-json {missing / 'e.json'}: its folder {missing} does not exist")
    assert not (tmp_path / "missing").exists()
