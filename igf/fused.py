r"""Memory-lean autograd functions for one IGF step: the fusion unit (Eq. 2) and ASGate (Eq. 3).

Plain autograd keeps, at every fusion step, tensors ``h`` times as wide as the
state (:math:`h \cdot C'_v` channels: :math:`W_2 G`, both ``tanh`` outputs and
their product), although they are cheap to recompute from the step's inputs.
The functions here keep only the step's inputs and outputs -- tensors that the
next step keeps anyway -- and recompute the wide ones inside ``backward``:

- :class:`FusedFusion`: :math:`F = \tanh(\sum_i \tanh(W_{1,i} x) \odot \tanh(W_{2,i} G))`,
  keeps ``x``, ``G`` and ``F``.
- :class:`FusedASGate`: :math:`G_t` of Eq. 3, keeps ``F``, ``G_{t-1}``, ``z`` and ``G_t``
  (recomputes ``F + G_{t-1}`` and ``[F; F \odot z]``, no convolution).
- :class:`CheckpointedASGateStep`: fusion, ASGate and the step's share of the
  output convolution (Eq. 4) in one function that keeps only ``x``, ``G_{t-1}``
  and ``G_t``; ``backward`` recomputes ``F_t`` and ``z_t`` (a 1x1 and one 3x3
  convolution), not the whole step.

Every function runs with autocast off on inputs already in the compute dtype:
:func:`autocast_cast` gives them the dtype autocast would give a convolution.
Forward values are computed by the same operations as the plain modules, so
outputs equal theirs; gradients agree to rounding.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from igf.spatial import conv_same, same_padding

__all__ = [
    "EAGER_CPU_TANH_VIA_SIGMOID",
    "CheckpointedASGateStep",
    "FusedASGate",
    "FusedFusion",
    "TanhViaSigmoid",
    "autocast_cast",
    "autocast_off",
    "concat_with_product",
    "fused_path_applies",
    "records_autograd",
    "sigmoid_of_temporary",
    "sum_heads",
    "tanh",
    "tanh_of_temporary",
]

_AUTOCAST_ELIGIBLE = (torch.float32, torch.float16, torch.bfloat16)


def fused_path_applies(enabled: bool) -> bool:
    """Whether a module with ``fused=enabled`` takes the fused path now.

    Only when autograd records (nothing is saved otherwise), and never while
    ``torch.export`` / ONNX export or TorchScript tracing trace the module: they take
    the plain path, which computes the same values with standard operators.
    """
    return (
        enabled and torch.is_grad_enabled() and not torch.compiler.is_exporting() and not torch._C._get_tracing_state()
    )


def records_autograd(*tensors: Tensor | None) -> bool:
    """Whether autograd records an operation on ``tensors`` now.

    Where it does not (``no_grad``, inference mode, no input requiring grad, or
    inside an autograd Function's ``forward``), the IGF steps compute their
    elementwise operations in place: the same kernels and values, without
    allocating a fresh ``h * C'_v``-wide tensor for every ``tanh`` and product.
    """
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


#: Whether eager code on a CPU computes ``tanh`` of float32/float64 tensors as :math:`2\sigma(2x) - 1`.
#: Where ATen's CPU kernels are AVX2, its vectorized ``tanh`` is the slow transcendental: on an AMD
#: EPYC it took 2.4 times as long as the four passes of the sigmoid form (1.15M float32 values, one
#: thread; ``python -m benchmarks.tanh_forms``), so there the sigmoid form is the default. Elsewhere
#: ``torch.tanh`` stays (on the Intel Xeon of earlier benchmark runs, eager ``torch.tanh`` was the
#: fast one). Set it to ``True`` or ``False`` to choose; the values differ by float rounding only.
EAGER_CPU_TANH_VIA_SIGMOID: bool = torch.backends.cpu.get_cpu_capability() == "AVX2"

_SIGMOID_FORM_DTYPES = (torch.float32, torch.float64)  # in bfloat16/float16, 2*sigmoid(2x) - 1 loses small x


def tanh(tensor: Tensor) -> Tensor:
    r"""``tanh``; on a CPU, where that is faster, as :math:`2\sigma(2x) - 1`, the same function.

    - Traced by ``torch.compile`` for a CPU (not by ``torch.export``): the sigmoid form,
      which Inductor fuses into one kernel (its CPU code for ``tanh`` is several times
      slower than its ``sigmoid`` and than eager ``torch.tanh``).
    - Eager on a CPU, float32/float64, with :data:`EAGER_CPU_TANH_VIA_SIGMOID`: the sigmoid
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
        EAGER_CPU_TANH_VIA_SIGMOID
        and tensor.device.type == "cpu"
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


def sigmoid_of_temporary(tensor: Tensor) -> Tensor:
    """``sigmoid`` of a tensor that only the caller holds: in place where autograd does not record it."""
    return torch.sigmoid(tensor) if records_autograd(tensor) else tensor.sigmoid_()


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


def _conv_backward(
    grad: Tensor, inputs: Tensor, weight: Tensor, needs: tuple[bool, bool, bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of :func:`~igf.spatial.conv_same` ``(inputs, weight, bias)`` w.r.t. input, weight and bias.

    Any rank: ``aten.convolution_backward`` takes the rank from ``weight``.
    """
    if not any(needs):
        return None, None, None
    rank = weight.dim() - 2
    grads = torch.ops.aten.convolution_backward(
        grad, inputs, weight, [weight.shape[0]], [1] * rank, same_padding(weight), [1] * rank, False, [0] * rank, 1,
        list(needs),
    )  # fmt: skip
    return grads[0], grads[1], grads[2]


def broadcast_vector(vector: Tensor, spatial_dims: int) -> Tensor:
    """A ``(B, C)`` vector as ``(B, C, 1, ..., 1)`` with ``spatial_dims`` ones, ready to broadcast over a map."""
    return vector.view(*vector.shape, *(1,) * spatial_dims)


# --------------------------------------------------------------------------- fusion unit (Eq. 2)


def _fusion_branches(
    x: Tensor, guided: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, *, guided_tanh: bool = True
) -> tuple[Tensor, Tensor]:
    """``tanh(W1 x)`` (``(B, hC, 1, ..., 1)`` for a vector ``x``) and ``tanh(W2 G)`` ``(B, hC, *spatial)``.

    With ``guided_tanh=False`` the second is ``W2 G`` before its ``tanh``.
    """
    if x.dim() == 2:
        branch = broadcast_vector(tanh_of_temporary(F.linear(x, w1.flatten(1), b1)), guided.dim() - 2)
    else:
        branch = tanh_of_temporary(conv_same(x, w1, b1))
    guided_pre = conv_same(guided, w2, b2)
    return branch, tanh_of_temporary(guided_pre) if guided_tanh else guided_pre


def fusion_value(x: Tensor, guided: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, heads: int) -> Tensor:
    """Eq. 2 for all heads: ``tanh(sum_i tanh(W1_i x) * tanh(W2_i G))`` -> ``(B, C, *spatial)``."""
    return sum_heads(*_fusion_branches(x, guided, w1, b1, w2, b2, guided_tanh=False), heads)


def sum_heads(from_guidance: Tensor, guided_pre: Tensor, heads: int) -> Tensor:
    """``tanh(sum_i from_guidance_i * tanh(guided_pre_i))``: Eq. 2 from its two projections.

    Where autograd does not record, ``guided_pre`` (a temporary of the caller) is
    overwritten: the same kernels and values, no new ``h * C``-wide tensor.

    Args:
        from_guidance: ``tanh(W1 x)``, ``(B, h C, 1, ..., 1)`` or ``(B, h C, *spatial)``.
        guided_pre: ``W2 G``, ``(B, h C, *spatial)``.
        heads: ``h``.

    Returns:
        ``F``, ``(B, C, *spatial)``.
    """
    # The head sum "b (h c) ... -> b c ..." as unflatten + sum: a view for any strides.
    if records_autograd(from_guidance, guided_pre) or from_guidance.dtype != guided_pre.dtype:
        return tanh(torch.unflatten(from_guidance * tanh(guided_pre), 1, (heads, -1)).sum(1))
    products = tanh_of_temporary(guided_pre).mul_(from_guidance)
    return tanh_of_temporary(torch.unflatten(products, 1, (heads, -1)).sum(1))


def _fusion_parts(
    x: Tensor, guided: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, heads: int
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``F`` of Eq. 2 and the two branches it was computed from (for a backward that recomputes them)."""
    branches = _fusion_branches(x, guided, w1, b1, w2, b2)
    # the head sum of sum_heads, out of place: the backward reads both branches
    return tanh(torch.unflatten(branches[0] * branches[1], 1, (heads, -1)).sum(1)), branches


def fusion_grads(
    saved: tuple[Tensor, ...],
    heads: int,
    fused: Tensor,
    grad: Tensor,
    needs: tuple[bool, ...],
    branches: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor | None, ...]:
    """Gradients of :func:`fusion_value` w.r.t. ``(x, G, W1, b1, W2, b2)``, recomputing the wide branches.

    Args:
        saved: ``(x, G, W1, b1, W2, b2)`` as given to :func:`fusion_value`.
        heads: ``h``.
        fused: the forward's output ``F``.
        grad: ``dL/dF``, ``(B, C, *spatial)``.
        needs: which of the six gradients are wanted.
        branches: the two branches if the caller has just recomputed them, else they are recomputed here.
    """
    x, guided, w1, b1, w2, b2 = saved
    if branches is None:
        branches = _fusion_branches(x, guided, w1, b1, w2, b2)
    from_guidance, from_guided = (torch.unflatten(branch, 1, (heads, -1)) for branch in branches)
    grad_sum = torch.ops.aten.tanh_backward(grad, fused)[:, None]  # d/d(sum over heads), broadcast over heads
    # the branches are temporaries of this function: where autograd does not record, the products and
    # tanh derivatives below overwrite them (one h-wide allocation instead of four)
    in_place = not records_autograd(grad, *branches)
    grad_guided_pre = _tanh_backward(grad_sum * from_guidance, from_guided, in_place).flatten(1, 2)
    dguided, dw2, db2 = _conv_backward(grad_guided_pre, guided, w2, (needs[1], needs[4], needs[5]))
    del grad_guided_pre
    if x.dim() == 2:  # the vector branch is constant over the map: reduce while multiplying
        grad_guidance = torch.einsum("bcn,bhcn->bhc", grad_sum[:, 0].flatten(2), from_guided.flatten(3))
        from_guidance = from_guidance.flatten(3)[..., 0]
    else:
        grad_guidance = from_guided.mul_(grad_sum) if in_place else grad_sum * from_guided
    grad_guidance_pre = _tanh_backward(grad_guidance, from_guidance, in_place).flatten(1, 2)
    if x.dim() == 2:
        dx = grad_guidance_pre @ w1.flatten(1) if needs[0] else None
        dw1 = (grad_guidance_pre.t() @ x).view_as(w1) if needs[2] else None
        db1 = grad_guidance_pre.sum(0) if needs[3] else None
    else:
        dx, dw1, db1 = _conv_backward(grad_guidance_pre, x, w1, (needs[0], needs[2], needs[3]))
    return dx, dguided, dw1, db1, dw2, db2


def _tanh_backward(grad: Tensor, output: Tensor, in_place: bool) -> Tensor:
    """``grad * (1 - output**2)``, written into ``grad`` (a temporary of the caller) when ``in_place``."""
    result: Tensor
    if in_place:
        result = torch.ops.aten.tanh_backward.grad_input(grad, output, grad_input=grad)
    else:
        result = torch.ops.aten.tanh_backward(grad, output)
    return result


class FusedFusion(torch.autograd.Function):
    """Eq. 2 keeping only ``x``, ``G`` and ``F`` for backward (see the module docstring).

    ``apply(x, G, W1, b1, W2, b2, heads)`` with ``x`` ``(B, C'_l)`` or ``(B, C'_l, *spatial)``,
    ``G`` ``(B, C'_v, *spatial)`` (one, two or three spatial dimensions), 1x1 conv weights
    ``W1`` ``(h C'_v, C'_l, 1, ...)`` and ``W2`` ``(h C'_v, C'_v, 1, ...)``; returns ``F`` ``(B, C'_v, *spatial)``.
    """

    @staticmethod
    def forward(x: Tensor, guided: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, heads: int) -> Tensor:
        return fusion_value(x, guided, w1, b1, w2, b2, heads)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(*inputs[:6], output)
        ctx.heads = inputs[6]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        *saved, fused = ctx.saved_tensors
        return (*fusion_grads(tuple(saved), ctx.heads, fused, grad, ctx.needs_input_grad[:6]), None)


# --------------------------------------------------------------------------- ASGate (Eq. 3)


def asgate_value(
    fused: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor, wg: Tensor, bg: Tensor
) -> tuple[Tensor, Tensor]:
    """Eq. 3: ``(G_t, z_t)`` with ``z_t = sigmoid(W_z * (F + G) + b_z)``, ``G_t = tanh(W_g * [F; F z_t] + b_g)``."""
    selection = _selection(fused, hidden, wz, bz)
    gate_pre = conv_same(concat_with_product(fused, selection), wg, bg)
    return tanh_of_temporary(gate_pre), selection


def concat_with_product(fused: Tensor, selection: Tensor) -> Tensor:
    """``[F; F * z]`` of Eq. 3 along channels: ``(B, 2C, *spatial)``.

    Where autograd does not record, the product is written straight into its half
    of the result (no separate product tensor and no copy of it).
    """
    if records_autograd(fused, selection) or fused.dtype != selection.dtype or torch.compiler.is_compiling():
        # (a compiler fuses the concatenation itself, and Dynamo refuses an ``out=`` that is a slice)
        return torch.cat([fused, fused * selection], dim=1)
    channels = fused.shape[1]
    stacked = torch.empty(
        (fused.shape[0], 2 * channels, *fused.shape[2:]),
        dtype=fused.dtype,
        device=fused.device,
        memory_format=_memory_format(fused),
    )
    stacked[:, :channels].copy_(fused)
    torch.mul(fused, selection, out=stacked[:, channels:])
    return stacked


def _memory_format(tensor: Tensor) -> torch.memory_format:
    """The memory format ``torch.cat`` would give: channels-last for a channels-last 2-D or 3-D map."""
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(tensor.dim())
    if channels_last is not None and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=channels_last):
        return channels_last
    return torch.contiguous_format


def _selection(fused: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor) -> Tensor:
    """``z_t = sigmoid(W_z * (F + G) + b_z)`` of Eq. 3."""
    selection_pre = conv_same(fused + hidden, wz, bz)
    return sigmoid_of_temporary(selection_pre)


def asgate_grads(saved: tuple[Tensor, ...], grad: Tensor, needs: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
    """Gradients of :func:`asgate_value`'s ``G_t`` w.r.t. ``(F, G, W_z, b_z, W_g, b_g)``.

    Args:
        saved: ``(F, G_{t-1}, z_t, G_t, W_z, b_z, W_g, b_g)``.
        grad: ``dL/dG_t``.
        needs: which of the six gradients are wanted.
    """
    fused, hidden, selection, new_hidden, wz, _, wg, _ = saved
    channels = fused.shape[1]
    grad_pre = torch.ops.aten.tanh_backward(grad, new_hidden)
    stacked = concat_with_product(fused, selection)
    need_inputs = needs[0] or needs[1] or needs[2] or needs[3]
    dstacked, dwg, dbg = _conv_backward(grad_pre, stacked, wg, (need_inputs, needs[4], needs[5]))
    del stacked
    if not need_inputs:
        return None, None, None, None, dwg, dbg
    assert dstacked is not None
    dfused_direct, dselected = dstacked[:, :channels], dstacked[:, channels:]
    grad_z_pre = torch.ops.aten.sigmoid_backward(dselected * fused, selection)
    need_sum = needs[0] or needs[1]
    dsum, dwz, dbz = _conv_backward(grad_z_pre, fused + hidden, wz, (need_sum, needs[2], needs[3]))
    dfused = dhidden = None
    if need_sum:
        assert dsum is not None
        dfused = torch.addcmul(dfused_direct, dselected, selection).add_(dsum)
        dhidden = dsum
    return dfused, dhidden, dwz, dbz, dwg, dbg


class FusedASGate(torch.autograd.Function):
    """Eq. 3 keeping ``F``, ``G_{t-1}``, ``z_t`` and ``G_t`` for backward (see the module docstring).

    ``apply(F, G, W_z, b_z, W_g, b_g)`` -> ``G_t`` ``(B, C, *spatial)``.
    """

    @staticmethod
    def forward(fused: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor, wg: Tensor, bg: Tensor) -> tuple[Tensor, Tensor]:
        return asgate_value(fused, hidden, wz, bz, wg, bg)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        fused, hidden, wz, bz, wg, bg = inputs
        new_hidden, selection = output
        ctx.mark_non_differentiable(selection)
        ctx.save_for_backward(fused, hidden, selection, new_hidden, wz, bz, wg, bg)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_selection: Tensor | None) -> tuple[Tensor | None, ...]:
        fused, hidden, selection, new_hidden, wz, bz, wg, bg = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: z_t must carry its dependence on F, G_{t-1}, W_z, b_z
            selection = _selection(fused, hidden, wz, bz)
        return asgate_grads((fused, hidden, selection, new_hidden, wz, bz, wg, bg), grad, ctx.needs_input_grad)


# --------------------------------------------------------------------------- checkpointed step


class CheckpointedASGateStep(torch.autograd.Function):
    """One fusion + ASGate step and its share of the output conv, keeping only ``x``, ``G_{t-1}``, ``G_t``.

    ``apply(x, G, W1, b1, W2, b2, heads, W_z, b_z, W_g, b_g, W_out)`` with ``W_out``
    the slice of the output convolution's weight that reads ``F_t`` (no bias), or
    ``None``; ``W_z, b_z, W_g, b_g`` are ``None`` for a step without a gate. Returns
    ``(F_t, G_t, partial)`` where ``partial = conv(F_t, W_out)``; ``G_t`` and
    ``partial`` are zero-size tensors where there is no gate or no ``W_out``.
    ``backward`` recomputes ``F_t`` and ``z_t``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> tuple[Tensor, Tensor, Tensor]:
        x, hidden, w1, b1, w2, b2, heads, wz, bz, wg, bg, w_out = args
        ctx.set_materialize_grads(False)
        fused = fusion_value(x, hidden, w1, b1, w2, b2, heads)
        new_hidden = fused.new_empty(0) if wz is None else asgate_value(fused, hidden, wz, bz, wg, bg)[0]
        partial = fused.new_empty(0) if w_out is None else conv_same(fused, w_out)
        ctx.save_for_backward(x, hidden, w1, b1, w2, b2, wz, bz, wg, bg, w_out, new_hidden)
        ctx.heads = heads  # type: ignore[attr-defined]
        return fused, new_hidden, partial

    @staticmethod
    def backward(ctx: Any, dfused: Tensor | None, dnew: Tensor | None, dpartial: Tensor | None) -> tuple[Any, ...]:
        x, hidden, w1, b1, w2, b2, wz, bz, wg, bg, w_out, new_hidden = ctx.saved_tensors
        needs = ctx.needs_input_grad
        fusion_saved = (x, hidden, w1, b1, w2, b2)
        fused, branches = _fusion_parts(*fusion_saved, ctx.heads)
        grad_fused = torch.zeros_like(fused) if dfused is None else dfused
        dw_out = None
        if w_out is not None and dpartial is not None:
            dfused_out, dw_out, _ = _conv_backward(dpartial, fused, w_out, (True, needs[11], False))
            assert dfused_out is not None
            grad_fused = grad_fused + dfused_out
        gate_grads: tuple[Tensor | None, ...] = (None,) * 6
        if dnew is not None and wz is not None:
            selection = _selection(fused, hidden, wz, bz)
            gate_needs = (True, needs[1], needs[7], needs[8], needs[9], needs[10])
            gate_grads = asgate_grads((fused, hidden, selection, new_hidden, wz, bz, wg, bg), dnew, gate_needs)
            assert gate_grads[0] is not None
            grad_fused = grad_fused + gate_grads[0]
        dx, dhidden, dw1, db1, dw2, db2 = fusion_grads(fusion_saved, ctx.heads, fused, grad_fused, needs[:6], branches)
        if gate_grads[1] is not None:
            dhidden = gate_grads[1] if dhidden is None else dhidden + gate_grads[1]
        return dx, dhidden, dw1, db1, dw2, db2, None, *gate_grads[2:], dw_out
