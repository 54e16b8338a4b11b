"""Small tensor helpers of IGF that other code may reuse: masked token mean and attention, smooth resize in any rank."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from igf.spatial import interpolation_mode

__all__ = ["masked_attention", "masked_mean", "resize_to"]


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``(B, T, C)`` token features over the real tokens -> ``(B, C)`` (all tokens without a mask).

    Padding tokens are *selected away* (``torch.where``), not multiplied by zero, so
    whatever they hold -- NaN and inf included -- never reaches the result. A row
    whose mask is all zero gives a zero vector. Pooling before a 1x1 projection
    equals projecting every token and pooling after (the weights sum to one).

    Args:
        tokens: ``(B, T, C)`` floating point.
        mask: ``(B, T)`` bool or integer, nonzero = real token; ``None`` = every token is real.

    Returns:
        ``(B, C)`` in ``tokens``' dtype.
    """
    if mask is None:
        return tokens.mean(dim=1)
    keep = mask.bool().unsqueeze(-1)
    total = torch.where(keep, tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device)).sum(dim=1)
    return total / keep.sum(dim=1).clamp_min(1).to(tokens.dtype)


def masked_attention(queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
    r"""Scaled dot-product attention of every query over the real tokens: :math:`\mathrm{softmax}(QK^\top/\sqrt{C_k})V`.

    Padding tokens are *selected away*: their logits become :math:`-\infty` (``torch.where``), so
    their weight is exactly zero. A row whose mask is all zero attends to nothing and gives a zero
    vector (its logits are kept finite for the softmax, then its weights are set to zero: no NaN in
    the forward or the backward pass). Keys and values of padding tokens must be finite (select them
    to zero before projecting, as :class:`~igf.IterativeGatedFusion` does).

    Args:
        queries: ``(B, N, C_k)``.
        keys: ``(B, T, C_k)``.
        values: ``(B, T, C)``.
        mask: ``(B, T)`` bool or integer, nonzero = real token; ``None`` = every token is real.

    Returns:
        ``(B, N, C)``: for each query, the weighted mean of the real tokens' values.
    """
    logits = torch.matmul(queries, keys.transpose(1, 2)) * keys.shape[-1] ** -0.5
    if mask is None:
        return torch.matmul(torch.softmax(logits, dim=-1), values)
    keep = mask.bool()[:, None, :]  # (B, 1, T)
    has_token = keep.any(dim=-1, keepdim=True)  # (B, 1, 1)
    # a row without a real token keeps its finite logits (no softmax of all -inf), then weighs nothing
    logits = torch.where(
        keep | ~has_token, logits, torch.full((), float("-inf"), dtype=logits.dtype, device=logits.device)
    )
    weights = torch.where(
        has_token, torch.softmax(logits, dim=-1), torch.zeros((), dtype=logits.dtype, device=logits.device)
    )
    return torch.matmul(weights, values)


def resize_to(feature: Tensor, size: Sequence[int]) -> Tensor:
    """Resize ``feature`` ``(B, C, *spatial)`` to ``size`` (``align_corners=False``).

    The mode follows the rank (``len(size)``, 1 to 3): linear for ``(B, C, T)``, bilinear for
    ``(B, C, H, W)``, trilinear for ``(B, C, D, H, W)``.

    Returns ``feature`` itself when it already has that size.
    """
    target = tuple(int(s) for s in size)
    if tuple(feature.shape[2:]) == target:
        return feature
    return F.interpolate(feature, size=target, mode=interpolation_mode(len(target)), align_corners=False)
