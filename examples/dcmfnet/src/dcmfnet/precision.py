"""Numeric precision of a run: the autocast context for ``fp32``, ``bf16`` or ``fp16``."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

__all__ = ["PRECISIONS", "autocast"]

#: Precisions a run config may name.
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast context for ``precision`` on ``device`` (``fp32``: none).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision == "fp32":
        return nullcontext()
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])
