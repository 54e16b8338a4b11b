"""A trained model with its run config: from a training checkpoint or from an exported folder.

Beside the builder (:func:`~dcmfnet.config.build_model`) and the exported-folder loader
(:mod:`dcmfnet.pretrained`): evaluation, export and :class:`~dcmfnet.inference.Segmenter` load
models here, and the model class knows no files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dcmfnet.checkpoint import load_checkpoint
from dcmfnet.config import build_model
from dcmfnet.errors import InputError
from dcmfnet.model import DCMFNet
from dcmfnet.pretrained import load_pretrained
from dcmfnet.train_config import RunConfig, run_config_from_dict

__all__ = ["TrainedModel", "load_model_from_checkpoint", "load_model_from_folder"]


class TrainedModel(NamedTuple):
    """A model with the run that trained it.

    Attributes:
        model: The network, in eval mode.
        config: The training run's config (model, data, optim, train sections).
        state: The checkpoint dict (epoch, step …), empty for an exported folder.
    """

    model: DCMFNet
    config: RunConfig
    state: dict[str, Any]


def load_model_from_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the model from the config stored in a checkpoint and load its weights (eval mode).

    The backbone is built without the run's pretrained weights file (``backbone_weights``): the
    checkpoint's weights replace them anyway, so that file need not exist where evaluation runs.
    (A ``bert`` text encoder is still loaded from ``text_encoder_path``, as its architecture and
    tokenizer come from there.)

    Raises:
        dcmfnet.errors.CheckpointError: A missing, damaged or foreign checkpoint.
        dcmfnet.errors.ConfigError: The stored config is invalid.
    """
    state = load_checkpoint(path, map_location="cpu")
    cfg = run_config_from_dict(state["config"], source=f"checkpoint {path}")
    model = build_model(dataclasses.replace(cfg.model, backbone_weights=None))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return TrainedModel(model, cfg, state)


def load_model_from_folder(path: str | Path, *, device: torch.device | str = "cpu") -> TrainedModel:
    """Load an exported model folder with the training run's config kept in its ``config.json``.

    Raises:
        InputError: The folder keeps no run config (saved without one): evaluate its checkpoint instead.
        dcmfnet.errors.PretrainedError: A damaged, edited or missing file.
    """
    model, config = load_pretrained(path, map_location=device)
    if config.run is None:
        raise InputError(f"{path} keeps no training run config, so its dataset is unknown; evaluate its checkpoint")
    cfg = run_config_from_dict({**config.run, "model": config.model.to_dict()}, source=f"{path}/config.json")
    return TrainedModel(model, cfg, {})
