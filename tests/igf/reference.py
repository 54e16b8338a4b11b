"""Plain reference implementations of IGF, written from the paper's equations.

They read weights from a module's ``state_dict`` by its documented key names and
compute each equation as literally as possible: loops over heads and layers,
explicit tiling of a vector guidance, explicit zero cell state, the paper's
resize-then-project order. The library is compared against these in float64.

Every function works in any spatial rank: maps ``(B, C, T)``, ``(B, C, H, W)`` or
``(B, C, D, H, W)``; the rank is read from the tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

StateDict = dict[str, Tensor]


CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


def per_channel(bias: Tensor, feature: Tensor) -> Tensor:
    """``(C,)`` as ``(1, C, 1, ...)`` for a map of ``feature``'s rank."""
    return bias.view(1, -1, *(1,) * (feature.dim() - 2))


def conv1x1(state: StateDict, prefix: str, feature: Tensor) -> Tensor:
    weight = state[f"{prefix}.weight"].flatten(1)
    bias = state[f"{prefix}.bias"]
    return torch.einsum("oc,bc...->bo...", weight, feature) + per_channel(bias, feature)


def conv3x3(state: StateDict, prefix: str, feature: Tensor, *, out: slice | None = None) -> Tensor:
    """The same-size convolution (any odd kernel, per dimension) of the feature's rank."""
    weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    if out is not None:
        weight, bias = weight[out], bias[out]
    padding = [size // 2 for size in weight.shape[2:]]
    return CONVOLUTIONS[feature.dim() - 2](feature, weight, bias, padding=padding)


def fusion_unit(state: StateDict, prefix: str, guidance_map: Tensor, guided: Tensor, heads: int) -> Tensor:
    """Eq. 2 with one explicit matrix per head and a map (tiled if need be) guidance."""
    channels = guided.shape[1]
    w1, b1 = state[f"{prefix}.proj_guidance.weight"].flatten(1), state[f"{prefix}.proj_guidance.bias"]
    w2, b2 = state[f"{prefix}.proj_guided.weight"].flatten(1), state[f"{prefix}.proj_guided.bias"]
    total = torch.zeros_like(guided)
    for head in range(heads):
        rows = slice(head * channels, (head + 1) * channels)
        from_guidance = torch.einsum("oc,bc...->bo...", w1[rows], guidance_map) + per_channel(b1[rows], guided)
        from_guided = torch.einsum("oc,bc...->bo...", w2[rows], guided) + per_channel(b2[rows], guided)
        total = total + torch.tanh(from_guidance) * torch.tanh(from_guided)
    return torch.tanh(total)


def asgate(state: StateDict, prefix: str, fused: Tensor, hidden: Tensor) -> Tensor:
    """Eq. 3."""
    z = torch.sigmoid(conv3x3(state, f"{prefix}.conv_z", fused + hidden))
    f = fused * z
    return torch.tanh(conv3x3(state, f"{prefix}.conv_g", torch.cat([fused, f], dim=1)))


def convgru(state: StateDict, prefix: str, fused: Tensor, hidden: Tensor) -> Tensor:
    c = hidden.shape[1]
    stacked = torch.cat([fused, hidden], dim=1)
    reset = torch.sigmoid(conv3x3(state, f"{prefix}.conv_gates", stacked, out=slice(0, c)))
    update = torch.sigmoid(conv3x3(state, f"{prefix}.conv_gates", stacked, out=slice(c, 2 * c)))
    candidate = torch.tanh(conv3x3(state, f"{prefix}.conv_candidate", torch.cat([fused, reset * hidden], dim=1)))
    return (1 - update) * hidden + update * candidate


def convlstm(state: StateDict, prefix: str, fused: Tensor, hidden: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    c = hidden.shape[1]
    stacked = torch.cat([fused, hidden], dim=1)
    i = torch.sigmoid(conv3x3(state, f"{prefix}.conv", stacked, out=slice(0, c)))
    f = torch.sigmoid(conv3x3(state, f"{prefix}.conv", stacked, out=slice(c, 2 * c)))
    o = torch.sigmoid(conv3x3(state, f"{prefix}.conv", stacked, out=slice(2 * c, 3 * c)))
    g = torch.tanh(conv3x3(state, f"{prefix}.conv", stacked, out=slice(3 * c, 4 * c)))
    cell = f * cell + i * g
    return o * torch.tanh(cell), cell


def gate_step(
    kind: str, state: StateDict, prefix: str, fused: Tensor, hidden: Tensor, cell: Tensor
) -> tuple[Tensor, Tensor]:
    if kind == "asgate":
        return asgate(state, prefix, fused, hidden), cell
    if kind == "convgru":
        return convgru(state, prefix, fused, hidden), cell
    return convlstm(state, prefix, fused, hidden, cell)


def masked_mean_tokens(tokens: Tensor, mask: Tensor) -> Tensor:
    """Token-sequence guidance (B, T, C) -> (B, C): the mean over real tokens, one sample at a time."""
    rows = []
    for sample, keep in zip(tokens, mask.bool(), strict=True):
        rows.append(sample[keep].mean(dim=0) if keep.any() else torch.zeros_like(sample[0]))
    return torch.stack(rows)


def iterative_gated_fusion(
    state: StateDict,
    guidance: Tensor,
    guided: Tensor,
    *,
    num_layers: int,
    heads: int,
    gate: str,
    output_mode: str,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Eq. 1-4 with the paper's order: tile/resize the guidance, then project; loop over L layers."""
    size = guided.shape[2:]
    if guidance.dim() == 2:
        guidance = guidance.view(*guidance.shape, *(1,) * len(size)).expand(-1, -1, *size)  # explicit tiling
    elif guidance.shape[2:] != size:
        guidance = F.interpolate(guidance, size=size, mode=INTERPOLATION[len(size)], align_corners=False)
    x = conv1x1(state, "guidance_proj", guidance)
    hidden = conv1x1(state, "guided_proj", guided)
    cell = torch.zeros_like(hidden)
    # The paper computes G_t at every layer; the modes that never read G_L have no L-th gate.
    num_gates = num_layers if output_mode in ("last_gate", "fusions_and_last_gate") else num_layers - 1
    fusions, gates = [], []
    for t in range(num_layers):
        fused = fusion_unit(state, f"fusions.{t}", x, hidden, heads)
        fusions.append(fused)
        if t < num_gates:
            hidden, cell = gate_step(gate, state, f"gates.{t}", fused, hidden, cell)
            gates.append(hidden)
    if output_mode == "all_fusions":
        read = torch.cat(fusions, dim=1)
    elif output_mode == "last_fusion":
        read = fusions[-1]
    elif output_mode == "last_gate":
        read = hidden
    else:
        read = torch.cat([*fusions[:-1], hidden], dim=1)
    return conv3x3(state, "out_proj", read), fusions, gates
