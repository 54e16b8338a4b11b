"""Export a training checkpoint as a model folder (``config.json`` + ``model.safetensors``), loadable offline.

The folder holds the architecture, the input size and token budget, the run's data/optim/train
sections (so ``dcmfnet evaluate --model`` finds the dataset), the weights as safetensors (no
pickle), a Hugging Face text encoder's tokenizer, a model card, and the sha256 of every file,
checked on every load (see :mod:`dcmfnet.pretrained`). The ``dcmfnet export`` command is
:mod:`dcmfnet.commands.export`.
"""

from __future__ import annotations

from pathlib import Path

from dcmfnet.data.build import max_tokens_for
from dcmfnet.loading import load_model_from_checkpoint
from dcmfnet.pretrained import PretrainedConfig, save_pretrained
from dcmfnet.train_config import config_to_dict

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path) -> Path:
    """Write the model of ``checkpoint`` into ``output_dir`` (created) with :func:`~dcmfnet.pretrained.save_pretrained`.

    Returns:
        The folder written.

    Raises:
        dcmfnet.errors.CheckpointError: A missing, damaged or foreign checkpoint.
    """
    model, cfg, _ = load_model_from_checkpoint(checkpoint)
    run = {key: value for key, value in config_to_dict(cfg).items() if key != "model"}
    config = PretrainedConfig(
        model=cfg.model,
        image_size=cfg.data.image_size,
        max_tokens=max_tokens_for(cfg.data),
        precision=cfg.train.precision,
        run=run,
    )
    return save_pretrained(model, output_dir, config)
