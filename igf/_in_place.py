"""Elementwise steps of IGF that run in place where autograd does not record them.

Where autograd records nothing (``no_grad``, inference mode, no input requiring grad, or inside an
autograd Function's ``forward``), the IGF steps overwrite temporaries that only they hold: the same
kernels and values, without a fresh ``h * C'_v``-wide tensor for every operation.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["concat_with_product", "records_autograd", "sigmoid_of_temporary"]


def records_autograd(*tensors: Tensor | None) -> bool:
    """Whether autograd records an operation on ``tensors`` now.

    Where it does not (``no_grad``, inference mode, no input requiring grad, or
    inside an autograd Function's ``forward``), the IGF steps compute their
    elementwise operations in place: the same kernels and values, without
    allocating a fresh ``h * C'_v``-wide tensor for every ``tanh`` and product.
    """
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def sigmoid_of_temporary(tensor: Tensor) -> Tensor:
    """``sigmoid`` of a tensor that only the caller holds: in place where autograd does not record it."""
    return torch.sigmoid(tensor) if records_autograd(tensor) else tensor.sigmoid_()


def concat_with_product(fusion: Tensor, selection: Tensor) -> Tensor:
    """``[F; F * z]`` of Eq. 3 along channels: ``(B, 2C, *spatial)``.

    Where autograd does not record, the product is written straight into its half
    of the result (no separate product tensor and no copy of it).
    """
    if records_autograd(fusion, selection) or fusion.dtype != selection.dtype or torch.compiler.is_compiling():
        # (a compiler fuses the concatenation itself, and Dynamo refuses an ``out=`` that is a slice)
        return torch.cat([fusion, fusion * selection], dim=1)
    channels = fusion.shape[1]
    stacked = torch.empty(
        (fusion.shape[0], 2 * channels, *fusion.shape[2:]),
        dtype=fusion.dtype,
        device=fusion.device,
        memory_format=_memory_format(fusion),
    )
    stacked[:, :channels].copy_(fusion)
    torch.mul(fusion, selection, out=stacked[:, channels:])
    return stacked


def _memory_format(tensor: Tensor) -> torch.memory_format:
    """The memory format ``torch.cat`` would give: channels-last for a channels-last 2-D or 3-D map."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(tensor.dim())
    if channels_last is not None and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=channels_last):
        return channels_last
    return torch.contiguous_format
