r"""Which ``tanh`` igf computes: ``torch.tanh``, or on a CPU, where that is faster, :math:`2\sigma(2x) - 1`.

Where ATen's CPU kernels are AVX2, its vectorized ``tanh`` is the slow transcendental: on an AMD
EPYC it took 2.4 times as long as the four passes of the sigmoid form (1.15M float32 values, one
thread; ``python -m benchmarks.tanh_forms``), so there eager code uses the sigmoid form by default.
Elsewhere ``torch.tanh`` stays (on the Intel Xeon of earlier benchmark runs, eager ``torch.tanh`` was
the fast one). :func:`set_eager_cpu_tanh_via_sigmoid` (or the :func:`eager_cpu_tanh_form` context)
chooses; the values differ by float rounding only.

Example:
    >>> import torch
    >>> from igf.cpu_tanh import eager_cpu_tanh_form, tanh
    >>> x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    >>> with eager_cpu_tanh_form(via_sigmoid=True):
    ...     via_sigmoid = tanh(x)
    >>> torch.allclose(via_sigmoid, torch.tanh(x))
    True
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from igf._in_place import records_autograd

__all__ = [
    "TanhViaSigmoid",
    "default_eager_cpu_tanh_via_sigmoid",
    "eager_cpu_tanh_form",
    "eager_cpu_tanh_via_sigmoid",
    "set_eager_cpu_tanh_via_sigmoid",
    "tanh",
    "tanh_of_temporary",
]

_chosen: bool | None = None  # None: this CPU's default; set only by set_eager_cpu_tanh_via_sigmoid


@functools.cache
def default_eager_cpu_tanh_via_sigmoid() -> bool:
    """This CPU's default: the sigmoid form where ATen's CPU kernels are AVX2 (see the module docstring)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def eager_cpu_tanh_via_sigmoid() -> bool:
    r"""Whether eager code on a CPU now computes ``tanh`` of float32/float64 as :math:`2\sigma(2x) - 1`."""
    return default_eager_cpu_tanh_via_sigmoid() if _chosen is None else _chosen


def set_eager_cpu_tanh_via_sigmoid(enabled: bool | None) -> bool | None:
    """Choose the eager CPU ``tanh`` form: ``True`` the sigmoid form, ``False`` ``torch.tanh``, ``None`` the default.

    Returns:
        The previous choice (``None`` where it was the default), to restore it.
    """
    global _chosen
    previous, _chosen = _chosen, None if enabled is None else bool(enabled)
    return previous


@contextlib.contextmanager
def eager_cpu_tanh_form(*, via_sigmoid: bool | None) -> Iterator[None]:
    """Within the block, eager CPU ``tanh`` takes the form chosen (see :func:`set_eager_cpu_tanh_via_sigmoid`)."""
    previous = set_eager_cpu_tanh_via_sigmoid(via_sigmoid)
    try:
        yield
    finally:
        set_eager_cpu_tanh_via_sigmoid(previous)


_SIGMOID_FORM_DTYPES = (torch.float32, torch.float64)  # in bfloat16/float16, 2*sigmoid(2x) - 1 loses small x


def tanh(tensor: Tensor) -> Tensor:
    r"""``tanh``; on a CPU, where that is faster, as :math:`2\sigma(2x) - 1`, the same function.

    - Traced by ``torch.compile`` for a CPU (not by ``torch.export``): the sigmoid form,
      which Inductor fuses into one kernel (its CPU code for ``tanh`` is several times
      slower than its ``sigmoid`` and than eager ``torch.tanh``).
    - Eager on a CPU, float32/float64, where :func:`eager_cpu_tanh_via_sigmoid` is true: the sigmoid
      form (:class:`TanhViaSigmoid` where autograd records: it saves the output only, as
      ``torch.tanh`` does).
    - Otherwise (other devices and dtypes, ``torch.export``, TorchScript tracing): ``torch.tanh``.

    Both forms are equal up to float rounding (within two units in the last place of 1).
    """
    if torch.compiler.is_compiling():
        if tensor.device.type == "cpu" and not torch.compiler.is_exporting():
            return torch.sigmoid(tensor * 2) * 2 - 1
        return torch.tanh(tensor)
    if not _eager_sigmoid_form_applies(tensor):
        return torch.tanh(tensor)
    if records_autograd(tensor):
        result: Tensor = TanhViaSigmoid.apply(tensor)
        return result
    return _sigmoid_form_of_doubled_(tensor * 2)


def tanh_of_temporary(tensor: Tensor) -> Tensor:
    """``tanh`` of a tensor that only the caller holds: in place where autograd does not record it."""
    if records_autograd(tensor) or torch.compiler.is_compiling():
        return tanh(tensor)
    if _eager_sigmoid_form_applies(tensor):
        return _sigmoid_form_of_doubled_(tensor.mul_(2))
    return tensor.tanh_()


def _eager_sigmoid_form_applies(tensor: Tensor) -> bool:
    """Whether eager code computes ``tanh(tensor)`` as ``2 sigmoid(2x) - 1`` (see :func:`tanh`)."""
    return (
        tensor.device.type == "cpu"
        and eager_cpu_tanh_via_sigmoid()
        and tensor.dtype in _SIGMOID_FORM_DTYPES
        and not torch.compiler.is_exporting()
        and not torch._C._get_tracing_state()
    )


def _sigmoid_form_of_doubled_(doubled: Tensor) -> Tensor:
    """``tanh(x)`` as ``2 sigmoid(2x) - 1`` from ``doubled = 2x``, which it overwrites."""
    return doubled.sigmoid_().mul_(2).sub_(1)


class TanhViaSigmoid(torch.autograd.Function):
    r"""``tanh`` computed as :math:`2\sigma(2x) - 1`, differentiated as ``tanh``: it saves its output only.

    Its backward is :math:`g (1 - y^2)` (``aten.tanh_backward``), differentiable again.
    """

    @staticmethod
    def forward(tensor: Tensor) -> Tensor:
        return _sigmoid_form_of_doubled_(tensor * 2)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (output,) = ctx.saved_tensors
        result: Tensor = torch.ops.aten.tanh_backward(grad, output)
        return result
