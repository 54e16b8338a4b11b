"""Exported models: save_pretrained/load_pretrained round trip, sha256 integrity, export and evaluate --model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dcmfnet import DCMFNet
from dcmfnet.commands import evaluate, predict
from dcmfnet.config import build_model
from dcmfnet.export import export_checkpoint
from dcmfnet.pretrained import PretrainedConfig, PretrainedError, load_pretrained, save_pretrained
from dcmfnet.text_encoders import HFTextEncoder
from dcmfnet.training import train
from tests.dcmfnet.tiny_run import tiny_config


def outputs(model: DCMFNet, expressions: list[str]) -> torch.Tensor:
    torch.manual_seed(1)
    images = torch.randn(len(expressions), 3, 32, 32)
    with torch.no_grad():
        return model.eval()(images, model.tokenize(expressions, 8))


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[DCMFNet, Path]:
    torch.manual_seed(0)
    cfg = tiny_config().model
    model = build_model(cfg).eval()
    save_pretrained(model, tmp_path / "model", PretrainedConfig(model=cfg, image_size=32, max_tokens=8))
    return model, tmp_path / "model"


def test_round_trip_rebuilds_the_same_model_without_pickle(saved: tuple[DCMFNet, Path]) -> None:
    model, directory = saved
    assert {p.name for p in directory.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    config = json.loads((directory / "config.json").read_text())
    assert config["format"] == "dcmfnet-pretrained/1" and config["max_tokens"] == 8
    assert config["model"]["text_vocabulary"] == tiny_config().model.text_vocabulary  # the word encoder's
    loaded, loaded_config = load_pretrained(directory)
    assert not loaded.training and loaded_config == PretrainedConfig(
        model=tiny_config().model, image_size=32, max_tokens=8
    )
    expressions = ["the red circle", "small blue square on the left"]
    assert torch.equal(outputs(loaded, expressions), outputs(model, expressions))
    save_pretrained(loaded, directory.parent / "again", loaded_config)
    assert load_pretrained(directory.parent / "again").config == loaded_config


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_flipped_byte_is_refused_naming_the_file(saved: tuple[DCMFNet, Path], name: str, capsys) -> None:
    _, directory = saved
    path = directory / name
    data = bytearray(path.read_bytes())
    position = len(data) - 20 if name == "model.safetensors" else data.index(b'"max_tokens": 8') + 14
    data[position] ^= 0x01  # a weight's last bytes / max_tokens 8 -> 9: both still parse
    path.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match=rf"{name}.*(sha256|content hash)"):
        load_pretrained(directory)
    command = ["--model", str(directory), "--image", "x.png", "--expression", "a", "--output", "o.png"]
    assert predict.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err


def test_missing_folders_files_and_configs_are_clear_errors(saved: tuple[DCMFNet, Path]) -> None:
    _, directory = saved
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(directory.parent / "nowhere")
    with pytest.raises(NotADirectoryError, match="--checkpoint"):
        load_pretrained(directory / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a reachable"):
        load_pretrained("nobody/no-such-dcmfnet", local_files_only=True)
    (directory / "model.safetensors").unlink()
    with pytest.raises(PretrainedError, match=r"model\.safetensors is missing"):
        load_pretrained(directory)


def test_a_hugging_face_text_encoder_travels_with_its_tokenizer(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "red", "circle", "blue", "square", "left"]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)})
    bert = BertModel(
        BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=16),
        add_pooling_layer=False,
    )  # fmt: skip
    cfg = tiny_config("model.text_encoder=bert", f"model.text_encoder_path={tmp_path / 'absent'}").model
    torch.manual_seed(0)
    model = build_model(cfg, text_encoder=HFTextEncoder(bert, tokenizer)).eval()
    save_pretrained(model, tmp_path / "model", PretrainedConfig(model=cfg, image_size=32, max_tokens=8))
    assert (tmp_path / "model" / "text_encoder" / "tokenizer.json").is_file()
    loaded, _ = load_pretrained(tmp_path / "model")  # the original text_encoder_path does not exist
    expressions = ["the red circle", "blue square left"]
    torch.testing.assert_close(outputs(loaded, expressions), outputs(model, expressions))  # kernels may differ
    warnings = loaded.text_encoder.token_warnings(["the red circle left of the blue square", "zebra"], 6)
    assert 'dropped: "[UNK] the blue square"' in warnings[0][0] and "all tokens unknown" in warnings[1][0]
    tokenizer_file = tmp_path / "model" / "text_encoder" / "tokenizer.json"
    tokenizer_file.write_text(tokenizer_file.read_text().replace('"circle"', '"circlf"'))
    with pytest.raises(PretrainedError, match=r"tokenizer\.json does not match the sha256"):
        load_pretrained(tmp_path / "model")


def test_export_and_evaluate_with_model_or_checkpoint(tmp_path: Path) -> None:
    train(tiny_config("train.epochs=1", "data.synthetic.val_samples=6"), tmp_path / "run")
    export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "model")
    results = {}
    for option, source in (("--checkpoint", "run/last.pt"), ("--model", "model")):
        out = tmp_path / f"{option[2:]}.json"
        command = [option, str(tmp_path / source), "--output-json", str(out), "--gallery", "none"]
        assert evaluate.main(command) == 0
        results[option] = json.loads(out.read_text())
    for key in ("overall_iou", "mean_iou", "num_samples", "split"):
        assert results["--model"][key] == results["--checkpoint"][key]
    with pytest.raises(SystemExit) as exit_info:  # exactly one of the two
        evaluate.main(["--model", "m", "--checkpoint", "c", "--output-json", str(tmp_path / "x.json")])
    assert exit_info.value.code == 2


def test_exported_files_are_readable_like_checkpoints(tmp_path: Path) -> None:
    """The safetensors writer creates its file 0600; the export leaves every file as the umask allows (0644)."""
    cfg = tiny_config().model
    previous = os.umask(0o022)
    try:
        save_pretrained(build_model(cfg), tmp_path / "m", PretrainedConfig(model=cfg, image_size=32, max_tokens=8))
    finally:
        os.umask(previous)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (tmp_path / "m").iterdir()}
    assert modes == {"model.safetensors": "0o644", "config.json": "0o644", "README.md": "0o644"}
