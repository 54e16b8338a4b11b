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
``igf._autocast.autocast_cast`` gives them the dtype autocast would give a convolution.
The ``tanh`` they compute is :func:`igf.cpu_tanh.tanh`; where autograd does not record (inside
``forward`` and a ``backward`` without ``create_graph``) the elementwise steps run in place
(``igf._in_place``).
Forward values are computed by the same operations as the plain modules, so
outputs equal theirs; gradients agree to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from igf._in_place import concat_with_product, records_autograd, sigmoid_of_temporary
from igf.cpu_tanh import tanh, tanh_of_temporary
from igf.spatial import conv_same, same_padding

__all__ = [
    "CheckpointedASGateStep",
    "FusedASGate",
    "FusedFusion",
    "broadcast_vector",
    "fused_path_applies",
    "sum_heads",
]


def fused_path_applies(enabled: bool) -> bool:
    """Whether a module with ``fused=enabled`` takes the fused path now.

    Only when autograd records (nothing is saved otherwise), and never while
    ``torch.export`` / ONNX export or TorchScript tracing trace the module: they take
    the plain path, which computes the same values with standard operators.
    """
    return (
        enabled and torch.is_grad_enabled() and not torch.compiler.is_exporting() and not torch._C._get_tracing_state()
    )


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
    fusion: Tensor,
    grad: Tensor,
    needs: tuple[bool, ...],
    branches: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor | None, ...]:
    """Gradients of :func:`fusion_value` w.r.t. ``(x, G, W1, b1, W2, b2)``, recomputing the wide branches.

    Args:
        saved: ``(x, G, W1, b1, W2, b2)`` as given to :func:`fusion_value`.
        heads: ``h``.
        fusion: the forward's output ``F``.
        grad: ``dL/dF``, ``(B, C, *spatial)``.
        needs: which of the six gradients are wanted.
        branches: the two branches if the caller has just recomputed them, else they are recomputed here.
    """
    x, guided, w1, b1, w2, b2 = saved
    if branches is None:
        branches = _fusion_branches(x, guided, w1, b1, w2, b2)
    from_guidance, from_guided = (torch.unflatten(branch, 1, (heads, -1)) for branch in branches)
    grad_sum = torch.ops.aten.tanh_backward(grad, fusion)[:, None]  # d/d(sum over heads), broadcast over heads
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
        *saved, fusion = ctx.saved_tensors
        return (*fusion_grads(tuple(saved), ctx.heads, fusion, grad, ctx.needs_input_grad[:6]), None)


# --------------------------------------------------------------------------- ASGate (Eq. 3)


def asgate_value(
    fusion: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor, wg: Tensor, bg: Tensor
) -> tuple[Tensor, Tensor]:
    """Eq. 3: ``(G_t, z_t)`` with ``z_t = sigmoid(W_z * (F + G) + b_z)``, ``G_t = tanh(W_g * [F; F z_t] + b_g)``."""
    selection = _selection(fusion, hidden, wz, bz)
    gate_pre = conv_same(concat_with_product(fusion, selection), wg, bg)
    return tanh_of_temporary(gate_pre), selection


def _selection(fusion: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor) -> Tensor:
    """``z_t = sigmoid(W_z * (F + G) + b_z)`` of Eq. 3."""
    selection_pre = conv_same(fusion + hidden, wz, bz)
    return sigmoid_of_temporary(selection_pre)


def asgate_grads(saved: tuple[Tensor, ...], grad: Tensor, needs: tuple[bool, ...]) -> tuple[Tensor | None, ...]:
    """Gradients of :func:`asgate_value`'s ``G_t`` w.r.t. ``(F, G, W_z, b_z, W_g, b_g)``.

    Args:
        saved: ``(F, G_{t-1}, z_t, G_t, W_z, b_z, W_g, b_g)``.
        grad: ``dL/dG_t``.
        needs: which of the six gradients are wanted.
    """
    fusion, hidden, selection, new_hidden, wz, _, wg, _ = saved
    channels = fusion.shape[1]
    grad_pre = torch.ops.aten.tanh_backward(grad, new_hidden)
    stacked = concat_with_product(fusion, selection)
    need_inputs = needs[0] or needs[1] or needs[2] or needs[3]
    dstacked, dwg, dbg = _conv_backward(grad_pre, stacked, wg, (need_inputs, needs[4], needs[5]))
    del stacked
    if not need_inputs:
        return None, None, None, None, dwg, dbg
    assert dstacked is not None
    dfusion_direct, dselected = dstacked[:, :channels], dstacked[:, channels:]
    grad_z_pre = torch.ops.aten.sigmoid_backward(dselected * fusion, selection)
    need_sum = needs[0] or needs[1]
    dsum, dwz, dbz = _conv_backward(grad_z_pre, fusion + hidden, wz, (need_sum, needs[2], needs[3]))
    dfusion = dhidden = None
    if need_sum:
        assert dsum is not None
        dfusion = torch.addcmul(dfusion_direct, dselected, selection).add_(dsum)
        dhidden = dsum
    return dfusion, dhidden, dwz, dbz, dwg, dbg


class FusedASGate(torch.autograd.Function):
    """Eq. 3 keeping ``F``, ``G_{t-1}``, ``z_t`` and ``G_t`` for backward (see the module docstring).

    ``apply(F, G, W_z, b_z, W_g, b_g)`` -> ``G_t`` ``(B, C, *spatial)``.
    """

    @staticmethod
    def forward(
        fusion: Tensor, hidden: Tensor, wz: Tensor, bz: Tensor, wg: Tensor, bg: Tensor
    ) -> tuple[Tensor, Tensor]:
        return asgate_value(fusion, hidden, wz, bz, wg, bg)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        fusion, hidden, wz, bz, wg, bg = inputs
        new_hidden, selection = output
        ctx.mark_non_differentiable(selection)
        ctx.save_for_backward(fusion, hidden, selection, new_hidden, wz, bz, wg, bg)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_selection: Tensor | None) -> tuple[Tensor | None, ...]:
        fusion, hidden, selection, new_hidden, wz, bz, wg, bg = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: z_t must carry its dependence on F, G_{t-1}, W_z, b_z
            selection = _selection(fusion, hidden, wz, bz)
        return asgate_grads((fusion, hidden, selection, new_hidden, wz, bz, wg, bg), grad, ctx.needs_input_grad)


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
        fusion = fusion_value(x, hidden, w1, b1, w2, b2, heads)
        new_hidden = fusion.new_empty(0) if wz is None else asgate_value(fusion, hidden, wz, bz, wg, bg)[0]
        partial = fusion.new_empty(0) if w_out is None else conv_same(fusion, w_out)
        ctx.save_for_backward(x, hidden, w1, b1, w2, b2, wz, bz, wg, bg, w_out, new_hidden)
        ctx.heads = heads  # type: ignore[attr-defined]
        return fusion, new_hidden, partial

    @staticmethod
    def backward(ctx: Any, dfusion: Tensor | None, dnew: Tensor | None, dpartial: Tensor | None) -> tuple[Any, ...]:
        x, hidden, w1, b1, w2, b2, wz, bz, wg, bg, w_out, new_hidden = ctx.saved_tensors
        needs = ctx.needs_input_grad
        fusion_saved = (x, hidden, w1, b1, w2, b2)
        fusion, branches = _fusion_parts(*fusion_saved, ctx.heads)
        grad_fusion = torch.zeros_like(fusion) if dfusion is None else dfusion
        dw_out = None
        if w_out is not None and dpartial is not None:
            dfusion_out, dw_out, _ = _conv_backward(dpartial, fusion, w_out, (True, needs[11], False))
            assert dfusion_out is not None
            grad_fusion = grad_fusion + dfusion_out
        gate_grads: tuple[Tensor | None, ...] = (None,) * 6
        if dnew is not None and wz is not None:
            selection = _selection(fusion, hidden, wz, bz)
            gate_needs = (True, needs[1], needs[7], needs[8], needs[9], needs[10])
            gate_grads = asgate_grads((fusion, hidden, selection, new_hidden, wz, bz, wg, bg), dnew, gate_needs)
            assert gate_grads[0] is not None
            grad_fusion = grad_fusion + gate_grads[0]
        dx, dhidden, dw1, db1, dw2, db2 = fusion_grads(
            fusion_saved, ctx.heads, fusion, grad_fusion, needs[:6], branches
        )
        if gate_grads[1] is not None:
            dhidden = gate_grads[1] if dhidden is None else dhidden + gate_grads[1]
        return dx, dhidden, dw1, db1, dw2, db2, None, *gate_grads[2:], dw_out
