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


def test_stats_reports_the_config_a_user_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--config`` takes a run config or a model config, as ``dcmfnet train`` does, with ``model.*`` overrides."""
    assert main(["stats", "--config", "cpu_synthetic", "--steps", "0"]) == 0
    run_line = capsys.readouterr().out
    assert run_line.startswith("cpu_synthetic: 0.39M params (backbone ") and "fusion+decoder" in run_line
    model_file = tmp_path / "model.yaml"
    model_file.write_text("backbone: tiny_cnn\nimage_size: 64\ntext_encoder: word\nigf_layers: 2\n")
    assert main(["stats", "--config", str(model_file), "--steps", "0", "model.igf_layers=3"]) == 0
    three = capsys.readouterr().out
    assert main(["stats", "--config", str(model_file), "--steps", "0"]) == 0
    two = capsys.readouterr().out
    assert three.startswith(f"{model_file}: ") and three != two  # the override reached the model
    _one_line_error(["stats", "--config", "cpu_synthetic", "model.igf_layers=abc"], capsys)
    err = _one_line_error(["stats", "--batch", "0"], capsys)
    assert "--batch must be at least 1, got 0" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_is_plain_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The descriptions come from the modules' docstrings; --help shows them without reST markup."""
    for argv in ([command, "--help"], ["--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        for markup in ("::", ":mod:", ":class:", ":func:", "``"):
            assert markup not in out, (argv, markup, out)
