"""Text encoders from the three sources: a local Hugging Face BERT, the packaged MiniLM (offline), the built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcmfnet import ModelConfig, build_model
from dcmfnet.text_encoders import (
    HFTextEncoder,
    WordTextEncoder,
    build_text_encoder,
    minilm_encoder,
    minilm_path,
)

WORDS = ["the", "a", "man", "woman", "left", "right", "red", "shirt", "on", "in", "dog", "##s"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with a WordPiece vocabulary, saved like a hub checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizer

    directory = tmp_path_factory.mktemp("tiny_bert")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(directory)
    BertTokenizer(str(vocab)).save_pretrained(directory)
    return directory


def test_bert_from_local_directory(tiny_bert_dir: Path) -> None:
    encoder = HFTextEncoder.from_pretrained(tiny_bert_dir, local_files_only=True)
    assert encoder.out_channels == 16
    text = encoder.tokenize(["the man on the left", "a red dogs"], 8)
    assert text["input_ids"].dtype == torch.long and text["input_ids"].shape == (2, 8)
    assert text["input_ids"][0, 0].item() == 2  # [CLS]
    assert text["attention_mask"].tolist() == [[1] * 7 + [0], [1] * 6 + [0, 0]]  # "dogs" -> dog ##s
    encoder.eval()
    cls = encoder(**text)
    assert cls.shape == (2, 16)
    tokens = encoder.encode_tokens(**text)
    torch.testing.assert_close(cls, tokens[:, 0])
    mean = HFTextEncoder(encoder.model, encoder.tokenizer, pooling="mean")(**text)
    torch.testing.assert_close(mean[1], tokens[1, :6].mean(dim=0))


def test_bert_in_the_model(tiny_bert_dir: Path) -> None:
    cfg = ModelConfig(
        backbone="tiny_cnn",
        backbone_options={"widths": [8, 8, 8, 8]},
        text_encoder="bert",
        text_encoder_path=str(tiny_bert_dir),
        text_pooling="mean",
        text_channels=8,
        lgve1_guidance_channels=8,
        multi_level_channels=8,
        aspp_channels=8,
        decoder_channels=8,
        igf_layers=1,
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    text = model.tokenize(["the woman in the red shirt", "a dog"], 10)
    model(torch.randn(2, 3, 32, 32), text).mean().backward()
    assert all(p.grad is not None for p in model.text_encoder.parameters())
    assert not hasattr(model.text_encoder.model, "pooler") or model.text_encoder.model.pooler is None


def test_frozen_encoder(tiny_bert_dir: Path) -> None:
    encoder = HFTextEncoder.from_pretrained(tiny_bert_dir, frozen=True, local_files_only=True)
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.model.training
    out = encoder(**encoder.tokenize(["the dog"], 4))
    assert not out.requires_grad


def test_minilm_loads_its_packaged_weights_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = minilm_encoder()  # mean pooling, local_files_only
    assert encoder.out_channels == 384 and encoder.pooling == "mean"
    with safe_open(str(minilm_path() / "model.safetensors"), "pt") as weights:
        key = next(k for k in weights.keys() if k.endswith("word_embeddings.weight"))  # noqa: SIM118
        torch.testing.assert_close(encoder.model.embeddings.word_embeddings.weight, weights.get_tensor(key))
    encoder.eval()
    sentences = ["a man riding a horse", "a person on a horse", "a red triangle in the corner"]
    with torch.no_grad():
        short = encoder(**encoder.tokenize(sentences, 12))
        long = encoder(**encoder.tokenize(sentences, 20))
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-4)  # the mean ignores padding
    similarity = torch.nn.functional.normalize(short, dim=-1) @ torch.nn.functional.normalize(short, dim=-1).T
    assert similarity[0, 1] > similarity[0, 2] + 0.3  # pretrained: paraphrases are close


def test_word_encoder_tokenizer() -> None:
    encoder = WordTextEncoder(vocabulary=["Red", "circle", "left", "red"], channels=8, heads=2)
    assert encoder.vocabulary == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "red": 3, "circle": 4, "left": 5}
    text = encoder.tokenize(["The RED circle, left!", "red"], 5)
    assert text["input_ids"].tolist() == [[2, 1, 3, 4, 5], [2, 3, 0, 0, 0]]
    assert text["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    with pytest.raises(TypeError, match="list of strings"):
        encoder.tokenize("red circle", 5)
    with pytest.raises(ValueError, match="max_positions"):
        encoder.tokenize(["red"], 100)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_word_encoder_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    encoder = WordTextEncoder(channels=16, heads=2, num_layers=2, pooling=pooling).eval()
    texts = ["the small red circle on the left", "blue square"]
    short, long = encoder(**encoder.tokenize(texts, 8)), encoder(**encoder.tokenize(texts, 16))
    assert short.shape == (2, 16)
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-4)


def test_unknown_encoder_and_pooling() -> None:
    with pytest.raises(ValueError, match=r"unknown text encoder 'gpt2'.*bert.*minilm.*word"):
        build_text_encoder("gpt2")
    with pytest.raises(ValueError, match=r"unknown text pooling 'max'.*cls.*mean"):
        build_text_encoder("word", pooling="max")


def test_shipped_vocabularies_hold_the_words_the_data_uses() -> None:
    """YAML 1.1 reads a bare ``on`` as ``True``; the shipped vocabularies must hold the word itself."""
    from dcmfnet.configs import available_configs
    from dcmfnet.train_config import load_run_config

    for name in available_configs():
        if name in ("cpu_synthetic",) or name.startswith("ablation_"):
            vocabulary = load_run_config(name).model.text_vocabulary or []
            assert "on" in vocabulary and "True" not in vocabulary, name
