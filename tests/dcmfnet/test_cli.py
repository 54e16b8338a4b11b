"""The ``dcmfnet`` command line: every subcommand has --help, overrides stand anywhere, a user's
mistake is one line on stderr with exit code 2 (argparse's convention), --debug shows the traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcmfnet.commands.base import parse_with_overrides
from dcmfnet.commands.main import COMMANDS, build_parser, main
from dcmfnet.train_config import ConfigError
from tests.dcmfnet.tiny_run import TINY


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: dcmfnet " + command in capsys.readouterr().out


def test_overrides_stand_anywhere_on_the_line() -> None:
    argv = ["train", "train.epochs=2", "--config", "cpu_synthetic", "--output-dir", "run", "optim.lr_rest=1e-3"]
    args = parse_with_overrides(build_parser(), argv)
    assert args.config == "cpu_synthetic" and args.output_dir == "run"
    assert args.overrides == ["train.epochs=2", "optim.lr_rest=1e-3"]


def test_an_unknown_option_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", "cpu_synthetic", "--output-dir", "run", "--epochs", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --epochs 3" in capsys.readouterr().err


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_mistakes_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["train", "--config", "cpu_synthetic", *TINY]
    err = _one_line_error([*run, "--output-dir", str(tmp_path / "a"), "train.epoch=3"], capsys)
    assert err.startswith("dcmfnet train: error: unknown config key 'train.epoch'")
    err = _one_line_error(["train", "--config", "no_such_config", "--output-dir", str(tmp_path / "b")], capsys)
    assert "'no_such_config' is neither a file nor a shipped config" in err and "cpu_synthetic" in err
    (tmp_path / "file").write_text("not a folder")
    err = _one_line_error([*run, "--output-dir", str(tmp_path / "file")], capsys)
    assert str(tmp_path / "file") in err
    missing = tmp_path / "missing.pt"
    err = _one_line_error(["evaluate", "--checkpoint", str(missing), "--output-json", str(tmp_path / "v.json")], capsys)
    assert str(missing) in err


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epoch"):
        main(["train", "--config", "cpu_synthetic", "--output-dir", str(tmp_path), "train.epoch=3", "--debug"])
