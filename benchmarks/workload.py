"""What a built benchmark case hands to the runner, and the autocast context its precision names."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import torch

__all__ = ["Precision", "Workload", "autocast_context"]

Precision = Literal["fp32", "bf16", "fp16"]


@dataclasses.dataclass
class Workload:
    """A built case.

    Attributes:
        step: the callable that is timed (compiled where the case says so).
        reference_step: the same work in eager mode, used for FLOPs and the conv floor.
        shapes: input shapes by name.
        parameters: number of parameters of the module.
        items: samples per call (for samples/s).
        compile_seconds: wall time of the first call(s) of a compiled step, else ``None``.
        notes: anything a reader of the record should know.
        saved_bytes: bytes saved for backward by one training forward (docs/guides/reproducing.rst, see
            :mod:`igf.saved_activations`), where the case measures it.
        map_bytes: bytes of one ``(B, C'_v, H, W)`` float32 map, the unit of ``saved_bytes`` for an IGF.
        forward: one training-mode forward returning the output, for comparing two builds of a case.
    """

    step: Callable[[], Any]
    reference_step: Callable[[], Any]
    shapes: dict[str, list[int]]
    parameters: int
    items: int
    compile_seconds: float | None = None
    notes: str = ""
    saved_bytes: int | None = None
    map_bytes: int | None = None
    forward: Callable[[], Any] | None = None


def autocast_context(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for bf16/fp16, a null context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
