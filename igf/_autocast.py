"""Autocast for the fused autograd Functions, which run with autocast off on inputs already cast."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

__all__ = ["autocast_cast", "autocast_off"]

_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def autocast_cast(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Cast to autocast's dtype what autocast would cast for a convolution (float64 is left alone)."""
    first = next(t for t in tensors if t is not None)
    device_type = first.device.type
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t is not None and t.dtype in _AUTOCAST_ELIGIBLE else t for t in tensors)


def autocast_off(tensor: Tensor) -> contextlib.AbstractContextManager[object]:
    """Autocast disabled on ``tensor``'s device (a null context where autocast does not exist, e.g. meta)."""
    device_type = tensor.device.type
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)
