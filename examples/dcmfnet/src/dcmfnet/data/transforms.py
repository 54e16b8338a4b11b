"""Image/mask/expression transforms that never change what the expression refers to.

The image is resized to the training size (bilinear, antialiased) and the mask with nearest
neighbour; both keep their alignment. The only geometric augmentation offered is a horizontal
flip, and it swaps the words "left" and "right" in the expression so that the flipped expression
still names the flipped object.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ReferringTransform", "swap_left_right"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_LEFT_RIGHT = re.compile(r"\b(left|right|leftmost|rightmost)\b", flags=re.IGNORECASE)
_SWAP = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}


def swap_left_right(expression: str) -> str:
    """Swap the words left/right (and leftmost/rightmost), keeping their capitalisation.

    >>> swap_left_right("the Left cup, right of the plate")
    'the Right cup, left of the plate'
    """

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        swapped = _SWAP[word.lower()]
        return swapped.capitalize() if word[0].isupper() else swapped

    return _LEFT_RIGHT.sub(replace, expression)


class ReferringTransform:
    """Resize to ``(size, size)``, normalise, and optionally flip with the words swapped.

    Args:
        size: the square training size (the paper uses 480).
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation.
        hflip_probability: probability of a horizontal flip (0 disables it); a flip swaps
            "left" and "right" in the expression.
        generator: random generator for the flip (``None``: torch's global generator).

    Call: ``(image (H, W, 3) uint8, mask (H, W) bool, expression)`` ->
    ``(image (3, size, size) float, mask (1, size, size) float in {0, 1}, expression)``.
    """

    def __init__(
        self,
        *,
        size: int,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        hflip_probability: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if not 0.0 <= hflip_probability <= 1.0:
            raise ValueError(f"hflip_probability must be in [0, 1], got {hflip_probability}")
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.hflip_probability = hflip_probability
        self.generator = generator

    def __call__(self, image: np.ndarray, mask: np.ndarray, expression: str) -> tuple[torch.Tensor, torch.Tensor, str]:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(image.shape)}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match image shape {tuple(image.shape[:2])}")
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        target = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        if pixels.shape[-2:] != (self.size, self.size):
            pixels = F.interpolate(
                pixels[None], size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )[0]
            target = F.interpolate(target[None], size=(self.size, self.size), mode="nearest")[0]
        if self.hflip_probability > 0 and torch.rand((), generator=self.generator) < self.hflip_probability:
            pixels = pixels.flip(-1)
            target = target.flip(-1)
            expression = swap_left_right(expression)
        pixels = (pixels - self.mean) / self.std
        return pixels, target, expression

    def unnormalize(self, image: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: ``(…, 3, H, W)`` -> values in [0, 1]."""
        return (image * self.std.to(image) + self.mean.to(image)).clamp(0.0, 1.0)
