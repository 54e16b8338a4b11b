"""Exported models: a folder with ``config.json`` and ``model.safetensors`` that rebuilds DCMFNet offline.

This module is the loader beside the builder (timm's way): :func:`save_pretrained` writes a model
and :func:`load_pretrained` rebuilds it with :func:`~dcmfnet.config.build_model`; the model class
knows no files.

Layout (what :func:`save_pretrained` writes)::

    config.json          format, the ModelConfig, input size, token budget, precision, the training
                         run's data/optim/train sections, and the sha256 of every other file
    model.safetensors    the weights (safetensors: tensors only, nothing to execute)
    text_encoder/        a Hugging Face text encoder's tokenizer files and architecture config
                         (the built-in word encoder's vocabulary is in config.json instead)
    README.md            a model card (Hugging Face Hub metadata)

What is trusted: nothing in the folder runs code. ``config.json`` is plain JSON; its own content
hash (``config_sha256``, over the sorted JSON without that key) and the sha256 of every listed
file are checked before anything is built, so a flipped byte anywhere is refused with an error
that names the file. A hub repository id (``owner/name``) is fetched with
:func:`huggingface_hub.snapshot_download` and checked the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_model, save_model

from dcmfnet.config import ModelConfig, build_model
from dcmfnet.errors import PretrainedError
from dcmfnet.model import DCMFNet
from dcmfnet.text_encoders import HFTextEncoder, TextEncoder

__all__ = [
    "CONFIG_NAME",
    "PRETRAINED_FORMAT",
    "TEXT_ENCODER_DIR",
    "WEIGHTS_NAME",
    "PretrainedConfig",
    "PretrainedError",
    "PretrainedModel",
    "load_pretrained",
    "pretrained_directory",
    "save_pretrained",
    "write_pretrained",
]

PRETRAINED_FORMAT = "dcmfnet-pretrained/1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TEXT_ENCODER_DIR = "text_encoder"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class PretrainedConfig:
    """What an exported model needs besides its weights.

    Attributes:
        model: The architecture.
        image_size: Square input size the model was trained at.
        max_tokens: Tokens per expression.
        precision: ``fp32``, ``bf16`` or ``fp16`` (the training run's; inference may choose another).
        run: The training run's ``data``, ``optim`` and ``train`` sections (for ``dcmfnet evaluate
            --model``), or ``None``.
    """

    model: ModelConfig
    image_size: int
    max_tokens: int
    precision: str = "fp32"
    run: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {**dataclasses.asdict(self), "model": self.model.to_dict()}


class PretrainedModel(NamedTuple):
    """What :func:`load_pretrained` returns.

    Attributes:
        model: The network, in eval mode.
        config: Its architecture, input size, token budget and training run (from ``config.json``).
    """

    model: DCMFNet
    config: PretrainedConfig


#: The model card's Hugging Face Hub metadata.
_MODEL_CARD = """---
library_name: dcmfnet
pipeline_tag: image-segmentation
tags:
- referring-image-segmentation
- igf
---

# DCMFNet

A DCMFNet referring image segmentation model ({backbone} backbone, {text_encoder} text encoder,
{image_size}x{image_size} input, {max_tokens} tokens per expression), written by `dcmfnet export`.
Load it with `dcmfnet.pretrained.load_pretrained` or `dcmfnet.inference.Segmenter.from_pretrained`.
"""


def save_pretrained(model: DCMFNet, directory: str | Path, config: PretrainedConfig) -> Path:
    """Write ``model`` into ``directory`` (created): :func:`write_pretrained`'s files and a model card ``README.md``.

    Returns:
        The folder written.
    """
    directory = write_pretrained(model, directory, config)
    card = _MODEL_CARD.format(
        backbone=config.model.backbone,
        text_encoder=config.model.text_encoder,
        image_size=config.image_size,
        max_tokens=config.max_tokens,
    )
    (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


def write_pretrained(model: DCMFNet, directory: str | Path, config: PretrainedConfig) -> Path:
    """Write ``model`` and ``config`` into ``directory`` (created): weights, tokenizer files, ``config.json``.

    Use :func:`save_pretrained`, which also writes a model card.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    os.chmod(directory / WEIGHTS_NAME, 0o666 & ~_umask())  # the safetensors writer creates 0600; config.json is 0644
    written = [WEIGHTS_NAME]
    encoder = model.text_encoder
    if isinstance(encoder, HFTextEncoder):
        if encoder.tokenizer is None:
            raise ValueError("the text encoder has no tokenizer to save with the model")
        target = directory / TEXT_ENCODER_DIR
        encoder.tokenizer.save_pretrained(target)
        encoder.model.config.save_pretrained(target)  # the architecture; its weights are in model.safetensors
        written += sorted(str(p.relative_to(directory)) for p in target.rglob("*") if p.is_file())
    values = config.to_dict()
    values["model"]["backbone_weights"] = None  # the weights file is model.safetensors
    payload = {
        "format": PRETRAINED_FORMAT,
        **values,
        "sha256": {name: _file_sha256(directory / name) for name in written},
    }
    payload["config_sha256"] = _config_sha256(payload)
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return directory


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then put back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_pretrained(
    name_or_path: str | Path, *, map_location: str | torch.device = "cpu", **hub_options: Any
) -> PretrainedModel:
    """Rebuild the model of an exported folder, after checking every file's hash (eval mode), offline.

    Args:
        name_or_path: A folder written by :func:`save_pretrained` (or ``dcmfnet export``), or a Hugging
            Face Hub repository id ``owner/name``, downloaded where the network allows.
        map_location: The device of the returned model.
        hub_options: Passed to :func:`pretrained_directory` (``revision``, ``token``, ``local_files_only`` …).

    Returns:
        The model in eval mode and its :class:`PretrainedConfig`.

    Raises:
        FileNotFoundError: No such folder or repository, or no ``config.json`` in it.
        NotADirectoryError: A file was given (a training checkpoint).
        PretrainedError: A damaged, edited or missing file, or another format (the message names the file).
    """
    directory = pretrained_directory(name_or_path, **hub_options)
    values = _read_config(directory / CONFIG_NAME)
    for name, expected in values["sha256"].items():
        path = directory / name
        if not path.is_file():
            raise PretrainedError(f"{path} is missing: config.json lists it as part of the model")
        if _file_sha256(path) != expected:
            raise PretrainedError(
                f"{path} does not match the sha256 recorded in config.json: the file is damaged or was "
                "replaced; export or download the model again"
            )
    config = _config_from_dict(values, directory / CONFIG_NAME)
    cfg = dataclasses.replace(config.model, backbone_weights=None)
    text_encoder = _hf_text_encoder(directory / TEXT_ENCODER_DIR, cfg) if cfg.text_encoder != "word" else None
    model = build_model(cfg, text_encoder=text_encoder)
    _load_weights(model, directory / WEIGHTS_NAME)
    return PretrainedModel(model.to(map_location).eval(), config)


def pretrained_directory(name_or_path: str | Path, **hub_options: Any) -> Path:
    """The local folder of an exported model: ``name_or_path`` itself, or a hub repository's snapshot.

    Args:
        name_or_path: A local folder, or a Hugging Face Hub repository id ``owner/name``.
        hub_options: Passed to :func:`huggingface_hub.snapshot_download` (``revision``, ``token``,
            ``cache_dir``, ``local_files_only``, ``force_download``).

    Raises:
        FileNotFoundError: Neither an existing folder nor a reachable repository.
        NotADirectoryError: A file was given (a checkpoint takes ``--checkpoint`` / ``from_checkpoint``).
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(
            f"{path} is a file, not an exported model folder (for a training checkpoint use --checkpoint)"
        )
    if not _REPO_ID.match(str(name_or_path)):
        raise FileNotFoundError(f"model folder {path} does not exist (make one with `dcmfnet export`)")
    try:
        return Path(snapshot_download(repo_id=str(name_or_path), **hub_options))
    except Exception as error:  # the hub raises many types: offline, not found, HTTP, validation
        raise FileNotFoundError(
            f"model {name_or_path} is neither a local folder nor a reachable Hugging Face Hub repository "
            f"({type(error).__name__}: {error})"
        ) from error


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json`` as a dict, with its format and content hash checked."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"model folder {path.parent} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} has no {CONFIG_NAME}: not an exported DCMFNet model")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PretrainedError(f"{path} is not valid JSON ({error}): the file is damaged") from error
    if not isinstance(values, dict) or values.get("format") != PRETRAINED_FORMAT:
        found = values.get("format") if isinstance(values, dict) else type(values).__name__
        raise PretrainedError(f"{path} is not a DCMFNet model of format {PRETRAINED_FORMAT!r} (found {found!r})")
    if values.get("config_sha256") != _config_sha256(values) or not isinstance(values.get("sha256"), dict):
        raise PretrainedError(
            f"{path} does not match its recorded content hash: the file is damaged or was edited after export"
        )
    return values


def _config_from_dict(values: Mapping[str, Any], path: Path) -> PretrainedConfig:
    try:
        return PretrainedConfig(
            model=ModelConfig(**values["model"]),
            image_size=int(values["image_size"]),
            max_tokens=int(values["max_tokens"]),
            precision=str(values["precision"]),
            run=values.get("run"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PretrainedError(f"{path} holds an invalid model config: {error}") from error


def _hf_text_encoder(directory: Path, cfg: ModelConfig) -> TextEncoder:
    """A Hugging Face encoder rebuilt from the saved architecture and tokenizer (weights loaded later)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # deferred: seconds to import, BERT models only

    if not directory.is_dir():
        raise PretrainedError(f"{directory} is missing: a {cfg.text_encoder!r} text encoder needs its tokenizer")
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}  # as HFTextEncoder.from_pretrained
    model = AutoModel.from_config(config, **extra)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    return HFTextEncoder(model, tokenizer, pooling=cfg.text_pooling, frozen=cfg.freeze_text_encoder)


def _load_weights(model: DCMFNet, path: Path) -> None:
    try:
        load_model(model, str(path), strict=True)
    except Exception as error:  # safetensors and load_state_dict raise several types for bad files
        raise PretrainedError(f"cannot load the weights {path}: {type(error).__name__}: {error}") from error


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _config_sha256(values: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys) without the hash itself."""
    content = {key: value for key, value in values.items() if key != "config_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
