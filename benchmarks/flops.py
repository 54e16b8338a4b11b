"""FLOPs and the "conv floor".

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts the
matrix-multiply-like operators (convolution and its backward, mm, addmm, bmm,
attention); elementwise work (tanh, sigmoid, products, sums, concatenation) counts
as zero FLOPs. "Achieved FLOP/s" is that count divided by the median time.

The *conv floor* of a call is the time of the same FLOP-counted operators run
back to back and nothing else: :func:`capture_flop_ops` records every such aten
call (operator, argument shapes, strides and dtypes, in order) during one real
call, and :func:`replay` builds a function that calls exactly those operators on
random tensors of the same layout. ``time(call) / time(floor)`` then says how close
the elementwise work, the Python and the allocator come to free (1.0 is free).

The *all-op replay* does the same for every aten operator the call dispatches
(convolutions, elementwise operators, reductions, copies, allocations and views):
the call's kernels without its Python and autograd bookkeeping. ``time(all-op
replay) / time(conv floor)`` is then what eager PyTorch cannot go below while it
runs these operators, and ``time(call) / time(all-op replay)`` the share of the
Python and autograd around them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten

#: The operators replayed by the conv floor: every operator FlopCounterMode counts
#: that the modules benchmarked here can call.
FLOOR_OPS = frozenset(
    {
        aten.convolution.default,
        aten.convolution_backward.default,
        aten.mm.default,
        aten.addmm.default,
        aten.bmm.default,
        aten.baddbmm.default,
    }
)


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call.

    Attributes:
        total: all FLOPs counted by ``FlopCounterMode``.
        by_operator: FLOPs per aten operator name (e.g. ``"convolution"``).
    """

    total: int
    by_operator: dict[str, int]


def count_flops(fn: Callable[[], object]) -> FlopCount:
    """Count the FLOPs of one call of ``fn`` (forward and, if ``fn`` runs it, backward)."""
    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    by_op = {
        str(op).split(".")[-1] if "." in str(op) else str(op): int(n)
        for op, n in mode.get_flop_counts().get("Global", {}).items()
    }
    return FlopCount(int(mode.get_total_flops()), by_op)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Layout of a tensor argument: enough to allocate an equivalent tensor."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


@dataclasses.dataclass(frozen=True)
class RecordedCall:
    """One aten call with its tensor arguments replaced by :class:`TensorSpec`."""

    op: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    def __init__(self, every_op: bool) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.every_op = every_op
        self.calls: list[RecordedCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if self.every_op or func in FLOOR_OPS:

            def spec(a: Any) -> Any:
                if isinstance(a, torch.Tensor):
                    return TensorSpec(tuple(a.shape), tuple(a.stride()), a.dtype, a.device)
                return a

            self.calls.append(RecordedCall(func, tree_map(spec, args), tree_map(spec, kwargs)))
        return func(*args, **kwargs)


def capture_flop_ops(fn: Callable[[], object]) -> list[RecordedCall]:
    """Record the FLOP-counted aten calls (see :data:`FLOOR_OPS`) of one call of ``fn``."""
    recorder = _Recorder(every_op=False)
    with recorder:
        fn()
    return recorder.calls


def capture_all_ops(fn: Callable[[], object]) -> list[RecordedCall]:
    """Record every aten call of one call of ``fn`` (forward and, if ``fn`` runs it, backward)."""
    recorder = _Recorder(every_op=True)
    with recorder:
        fn()
    return recorder.calls


def replay(calls: list[RecordedCall], *, seed: int = 0) -> Callable[[], None]:
    """A function that runs ``calls`` back to back on preallocated random tensors.

    Tensors with the same layout are shared between calls (the floor measures the
    operators, not the memory for their inputs).
    """
    gen = torch.Generator().manual_seed(seed)
    pool: dict[TensorSpec, torch.Tensor] = {}

    def materialise(a: Any) -> Any:
        if isinstance(a, TensorSpec):
            if a not in pool:
                # One flat random buffer viewed with the recorded strides: this also covers
                # channels_last and broadcast (stride-0) layouts.
                span = 1 + sum((n - 1) * s for n, s in zip(a.shape, a.stride, strict=True) if n > 0)
                if a.dtype.is_floating_point:
                    flat = torch.randn(span, generator=gen).to(a.dtype)
                else:
                    flat = torch.zeros(span, dtype=a.dtype)
                pool[a] = flat.to(a.device).as_strided(a.shape, a.stride)
            return pool[a]
        return a

    prepared = [(c.op, tree_map(materialise, c.args), tree_map(materialise, c.kwargs)) for c in calls]

    def floor() -> None:
        # In-place operators (``mul_``, ``tanh_``) replayed again and again on the same buffers drive
        # their values toward zero and into denormal numbers, which are slow on x86 and which the real
        # call never meets: the replay runs with denormals flushed to zero.
        flushed = torch.set_flush_denormal(True)
        try:
            with torch.no_grad():
                for op, args, kwargs in prepared:
                    op(*args, **kwargs)
        finally:
            if flushed:
                torch.set_flush_denormal(False)

    return floor


def summarise_calls(calls: list[RecordedCall]) -> dict[str, int]:
    """Number of recorded calls per operator name."""
    out: dict[str, int] = {}
    for c in calls:
        name = c.op.__name__ if hasattr(c.op, "__name__") else str(c.op)
        out[name] = out.get(name, 0) + 1
    return out
