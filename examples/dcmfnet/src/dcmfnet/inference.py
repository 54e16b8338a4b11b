"""Segment from Python: load a model once, then segment many images and expressions.

Example::

    from dcmfnet.inference import Segmenter

    segmenter = Segmenter.from_pretrained("model", device="cpu")  # a folder written by `dcmfnet export`
    result = segmenter.segment("photo.jpg", "the red circle")
    result.mask  # (H, W) bool at the photo's size, in the orientation a viewer shows
    results = segmenter.segment("photo.jpg", ["the red circle", "the blue square"])  # one batched forward

Images are read by :mod:`dcmfnet.images` (EXIF orientation applied, 16/32-bit greyscale
scaled, transparency composited over white, a pixel cap). The image is resized to the model's
input size, and the logits are resized back to the image's size and thresholded at
probability 0.5. :func:`predict_logits` and :func:`predict_masks` are the one prediction path:
:meth:`Segmenter.segment` and :mod:`dcmfnet.evaluation` both go through them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn

from dcmfnet.blocks import resize_to
from dcmfnet.data.build import max_tokens_for
from dcmfnet.data.transforms import ReferringTransform
from dcmfnet.devices import resolve_device
from dcmfnet.errors import InputError
from dcmfnet.images import BACKGROUND, DEFAULT_MAX_PIXELS, image_from_array, image_from_pil, read_image
from dcmfnet.loading import load_model_from_checkpoint
from dcmfnet.metrics import masks_from_logits
from dcmfnet.model import DCMFNet, DCMFNetOutput
from dcmfnet.precision import autocast
from dcmfnet.pretrained import load_pretrained

__all__ = [
    "ImageInput",
    "Segmentation",
    "Segmenter",
    "check_expressions",
    "predict_logits",
    "predict_masks",
    "resolve_device",
]

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray
"""What :meth:`Segmenter.segment` accepts as an image: a file path, a PIL image, or an ``(H, W)``,
``(H, W, 3)`` or ``(H, W, 4)`` array."""


@dataclass(frozen=True)
class Segmentation:
    """The result of segmenting one expression in one image.

    Attributes:
        expression: The expression as given.
        mask: ``(H, W)`` bool at the image's original size, in the orientation a viewer shows.
        probabilities: ``(H, W)`` float32 in [0, 1] (with ``return_probabilities=True``), else ``None``.
        stage_maps: Fig. 6: ``{"LGVE-1": E4, "LGVE-2": E_enc, "MLFF": E_dec}``, each ``(1, C, h, w)`` on
            the CPU (with ``return_maps=True``), else ``None``.
        fusion_maps: Fig. 7: IGF site (``e3``, ``e4``, ``enc``, ``dec`` …) -> its per-layer fusions
            ``[F_1, …, F_L]``, each ``(1, C'_v, h, w)`` on the CPU (with ``return_maps=True``), else ``None``.
        warnings: What the model could not read of the expression (words cut by the token budget,
            words the text encoder does not know).
    """

    expression: str
    mask: np.ndarray
    probabilities: np.ndarray | None = None
    stage_maps: dict[str, torch.Tensor] | None = None
    fusion_maps: dict[str, list[torch.Tensor]] | None = None
    warnings: tuple[str, ...] = ()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    expressions: Sequence[str],
    *,
    max_tokens: int,
    precision: str = "fp32",
    return_intermediates: bool = False,
) -> tuple[torch.Tensor, DCMFNetOutput | None]:
    """One forward of ``model`` (in eval mode) on model-size images and their expressions.

    Args:
        model: A :class:`~dcmfnet.model.DCMFNet` (or its ``DistributedDataParallel`` wrapper).
        images: ``(B, 3, H, W)`` normalised, at the model's input size.
        expressions: ``B`` non-empty expressions.
        max_tokens: Tokens per expression.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        return_intermediates: Also return the :class:`~dcmfnet.model.DCMFNetOutput` (Fig. 6/7 maps).

    Returns:
        ``(logits, output)``: float32 logits ``(B, 1, H, W)``; the output, or ``None``.

    Raises:
        InputError: An empty expression.
    """
    texts = check_expressions(list(expressions))
    device = next(model.parameters()).device
    text = {key: value.to(device) for key, value in _unwrap(model).tokenize(texts, max_tokens).items()}
    with autocast(device, precision):
        result = model(images.to(device), text, return_intermediates=return_intermediates)
    output = result if return_intermediates else None
    logits = result.logits if return_intermediates else result
    return logits.float(), output


def predict_masks(
    model: nn.Module,
    images: torch.Tensor,
    expressions: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    *,
    max_tokens: int,
    precision: str = "fp32",
) -> list[torch.Tensor]:
    """Boolean masks at the given original sizes, on the CPU (see :func:`predict_logits`)."""
    logits, _ = predict_logits(model, images, expressions, max_tokens=max_tokens, precision=precision)
    return [mask.cpu() for mask in masks_from_logits(logits, sizes)]


class Segmenter:
    """A DCMFNet ready to segment: the model in eval mode on a device, with its input size and token budget.

    Args:
        model: The network.
        image_size: The square input size the model was trained at (the run's ``data.image_size``).
        max_tokens: Tokens per expression (the run's ``data.max_tokens`` or the dataset's).
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a :class:`torch.device`.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).
        max_pixels: Largest image accepted (see :mod:`dcmfnet.images`); ``None``: no cap.
        background: RGB colour under transparent pixels.

    Use :meth:`from_pretrained` (a folder written by ``dcmfnet export``) or :meth:`from_checkpoint`.
    """

    def __init__(
        self,
        model: DCMFNet,
        *,
        image_size: int,
        max_tokens: int,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        background: tuple[int, int, int] = BACKGROUND,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.transform = ReferringTransform(size=image_size)
        self.max_tokens = int(max_tokens)
        self.precision = precision
        self.max_pixels = max_pixels
        self.background = background

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike[str], *, device: str | torch.device = "cpu", **options: Any
    ) -> Segmenter:
        """Load a model folder written by ``dcmfnet export`` / :meth:`DCMFNet.save_pretrained`.

        ``options`` go to the constructor (``precision``, ``max_pixels``, ``background``).
        """
        model, config = load_pretrained(name_or_path)
        settings = {"image_size": config.image_size, "max_tokens": config.max_tokens, "precision": config.precision}
        return cls(model, device=device, **{**settings, **options})

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu", **options: Any
    ) -> Segmenter:
        """Load a training checkpoint (``best.pt``, ``last.pt``); ``options`` go to the constructor."""
        model, cfg, _ = load_model_from_checkpoint(Path(path))
        settings = {
            "image_size": cfg.data.image_size,
            "max_tokens": max_tokens_for(cfg.data),
            "precision": cfg.train.precision,
        }
        return cls(model, device=device, **{**settings, **options})  # type: ignore[arg-type]

    def load_image(self, image: ImageInput) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB array the model sees, in the viewer's orientation.

        Raises:
            dcmfnet.images.ImageReadError: A file that does not exist or cannot be decoded (named).
            dcmfnet.errors.InputError: An image over the pixel cap, an array of a bad shape.
            TypeError: Another type of input.
        """
        options = {"max_pixels": self.max_pixels, "background": self.background}
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, **options)  # type: ignore[arg-type]
        if isinstance(image, Image.Image):
            return image_from_pil(image, **options)  # type: ignore[arg-type]
        if isinstance(image, np.ndarray):
            return image_from_array(image, **options)  # type: ignore[arg-type]
        raise TypeError(f"image must be a path, a PIL image or a numpy array, got {type(image).__name__}")

    @overload
    def segment(
        self, image: ImageInput, expressions: str, return_probabilities: bool = ..., return_maps: bool = ...
    ) -> Segmentation: ...

    @overload
    def segment(
        self,
        image: ImageInput,
        expressions: Sequence[str],
        return_probabilities: bool = ...,
        return_maps: bool = ...,
    ) -> list[Segmentation]: ...

    @torch.no_grad()
    def segment(
        self,
        image: ImageInput,
        expressions: str | Sequence[str],
        return_probabilities: bool = False,
        return_maps: bool = False,
    ) -> Segmentation | list[Segmentation]:
        """Segment what each expression refers to in ``image`` (several expressions: one batched forward).

        Args:
            image: A path, a PIL image or an ``(H, W)``, ``(H, W, 3)``, ``(H, W, 4)`` array.
            expressions: One expression, or a list of them.
            return_probabilities: Also return the ``(H, W)`` probability map.
            return_maps: Also return the Fig. 6 stage maps and Fig. 7 per-layer IGF fusions.

        Returns:
            A :class:`Segmentation` for one expression, a list of them for a list.

        Raises:
            dcmfnet.errors.InputError: An empty expression or list, an image over the pixel cap.
            dcmfnet.images.ImageReadError: An image file that does not exist or cannot be decoded.
        """
        texts = check_expressions(expressions)
        rgb = self.load_image(image)
        size = rgb.shape[:2]
        pixels, _, _ = self.transform(rgb, np.zeros(size, dtype=bool), "")
        images = pixels[None].expand(len(texts), -1, -1, -1)
        logits, output = predict_logits(
            self.model, images, texts, max_tokens=self.max_tokens, precision=self.precision,
            return_intermediates=return_maps,
        )  # fmt: skip
        masks = masks_from_logits(logits, [size] * len(texts))
        probabilities = torch.sigmoid(resize_to(logits, size))[:, 0].cpu().numpy() if return_probabilities else None
        warnings = self.model.text_encoder.token_warnings(texts, self.max_tokens)
        results = []
        for i, expression in enumerate(texts):
            stages, fusions = _sample_maps(output, i) if output is not None else (None, None)
            results.append(
                Segmentation(
                    expression=expression,
                    mask=masks[i].cpu().numpy(),
                    probabilities=probabilities[i] if probabilities is not None else None,
                    stage_maps=stages,
                    fusion_maps=fusions,
                    warnings=warnings[i],
                )
            )
        return results[0] if isinstance(expressions, str) else results


def check_expressions(expressions: str | Sequence[str]) -> list[str]:
    """The expressions as a list; an empty list or an empty expression is an :class:`InputError`."""
    texts = [expressions] if isinstance(expressions, str) else list(expressions)
    if not texts:
        raise InputError("no expression given; pass a string or a non-empty list of strings")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"expressions must be strings, got {type(text).__name__} at position {index}")
        if not text.strip():
            where = "" if isinstance(expressions, str) else f" (position {index})"
            raise InputError(f"the expression is empty{where}; say which object to segment")
    return texts


def _sample_maps(output: Any, index: int) -> tuple[dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Sample ``index``'s Fig. 6 stage maps and Fig. 7 per-layer fusions, each ``(1, C, h, w)`` on the CPU."""
    stages = {name: feature[index : index + 1].float().cpu() for name, feature in output.stage_maps().items()}
    fusions = {
        site: [fusion[index : index + 1].float().cpu() for fusion in record.fusions]
        for site, record in output.igf.items()
    }
    return stages, fusions
