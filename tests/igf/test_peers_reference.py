"""IGF's peers against plain references written from their papers' equations, in float64; gradcheck.

- FiLM: Perez et al., AAAI 2018, Eq. 1-2, residual form ``(1 + gamma) * Y + beta``.
- PixelWordAttention: LAVT (Yang et al., CVPR 2022) §3.2 PWAM and §3.3's language gate.
- ConcatFusion: ``Conv1x1(ReLU(BN(Conv([Y; tile(x) or resize(X)]))))``.

The references read the weights from ``state_dict`` by their documented keys and compute each equation
as literally as they can: explicit tiling, explicit loops over the batch and over the real tokens only,
instance and batch norm written out, GELU from ``erf``, guidance maps resized before any projection.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.testing import assert_close

from igf import ConcatFusion, FiLM, PixelWordAttention

StateDict = dict[str, Tensor]
MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
C_X, C_Y, C_OUT = 5, 4, 3


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the zero initialisations would make the references trivial)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * 0.5)
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator, dtype=buffer.dtype))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator, dtype=buffer.dtype) + 0.5)
    return module


def _pointwise(state: StateDict, prefix: str, feature: Tensor, *, bias: bool = True) -> Tensor:
    """A 1x1 convolution of any rank as a sum over input channels at every position."""
    weight = state[f"{prefix}.weight"].flatten(1)  # (C_out, C_in)
    out = torch.einsum("oc,bc...->bo...", weight, feature)
    if bias:
        out = out + state[f"{prefix}.bias"].view(-1, *(1,) * (feature.dim() - 2))
    return out


def _tile(vector: Tensor, size: tuple[int, ...]) -> Tensor:
    """A ``(B, C)`` vector copied to every position: ``(B, C, *size)``."""
    return vector.reshape(*vector.shape, *(1,) * len(size)).repeat(1, 1, *size)


def _resize(feature: Tensor, size: tuple[int, ...]) -> Tensor:
    if tuple(feature.shape[2:]) == size:
        return feature
    return F.interpolate(feature, size=size, mode=MODES[len(size)], align_corners=False)


def _mean_of_real_tokens(tokens: Tensor, mask: Tensor | None) -> Tensor:
    rows = []
    for b in range(tokens.shape[0]):
        real = tokens[b] if mask is None else tokens[b][mask[b].bool()]
        rows.append(real.mean(0) if real.shape[0] else torch.zeros_like(tokens[b, 0]))
    return torch.stack(rows)


def _guidance_map(guidance: Tensor, mask: Tensor | None, size: tuple[int, ...], guidance_1d: str) -> Tensor:
    """Vector: tiled; tokens: mean of the real ones, tiled; map: resized to ``size``."""
    if guidance.dim() == 3 and guidance_1d == "tokens":
        guidance = _mean_of_real_tokens(guidance, mask)
    if guidance.dim() == 2:
        return _tile(guidance, size)
    return _resize(guidance, size)


def film_reference(
    state: StateDict, guidance: Tensor, guided: Tensor, mask: Tensor | None = None, *, guidance_1d: str = "tokens"
) -> Tensor:
    """Perez et al. Eq. 1-2 per position of the (tiled or resized) guidance, then the residual form."""
    size = tuple(guided.shape[2:])
    x = _guidance_map(guidance, mask, size, guidance_1d)
    weight, bias = state["film.weight"].flatten(1), state["film.bias"]
    gamma = torch.einsum("oc,bc...->bo...", weight[:C_Y], x) + bias[:C_Y].view(-1, *(1,) * len(size))
    beta = torch.einsum("oc,bc...->bo...", weight[C_Y:], x) + bias[C_Y:].view(-1, *(1,) * len(size))
    out = (1 + gamma) * guided + beta
    return _pointwise(state, "out_proj", out) if "out_proj.weight" in state else out


def _gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _instance_norm(feature: Tensor) -> Tensor:
    """Normalise every channel of every sample over its positions (biased variance, eps 1e-5, no affine)."""
    flat = feature.flatten(2)
    mean = flat.mean(-1, keepdim=True)
    var = ((flat - mean) ** 2).mean(-1, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + 1e-5)).view_as(feature)


def pwam_reference(
    state: StateDict, guidance: Tensor, guided: Tensor, mask: Tensor | None = None, *, guidance_1d: str = "tokens"
) -> Tensor:
    """LAVT §3.2: attention of every position over the real words only, then the gated residual (§3.3)."""
    size = tuple(guided.shape[2:])
    if guidance.dim() == 2:
        words = guidance[:, None, :]
    elif guidance.dim() == 3 and guidance_1d == "tokens":
        words = guidance
    else:
        words = guidance.flatten(2).transpose(1, 2)
    visual = _gelu(_pointwise(state, "visual_proj", guided))
    query = _instance_norm(_pointwise(state, "query_proj", guided))
    key_channels = query.shape[1]
    attended = []
    for b in range(guided.shape[0]):
        real = words[b] if mask is None else words[b][mask[b].bool()]  # (T_b, C_x)
        q = query[b].flatten(1).T  # (N, C_k)
        k = real @ state["key_proj.weight"].T + state["key_proj.bias"]  # (T_b, C_k)
        v = real @ state["value_proj.weight"].T + state["value_proj.bias"]  # (T_b, C_y)
        if real.shape[0] == 0:
            attended.append(torch.zeros(C_Y, q.shape[0], dtype=guided.dtype))
            continue
        weights = torch.softmax(q @ k.T / math.sqrt(key_channels), dim=-1)  # (N, T_b)
        attended.append((weights @ v).T)  # (C_y, N)
    a = torch.stack(attended).view(guided.shape[0], C_Y, *size)
    language = _instance_norm(_pointwise(state, "attended_proj", a))
    fused = _gelu(_pointwise(state, "mm_proj", visual * language))
    hidden = torch.relu(_pointwise(state, "gate_hidden", fused, bias=False))
    gate = torch.tanh(_pointwise(state, "gate_out", hidden, bias=False))
    out = guided + gate * fused
    return _pointwise(state, "out_proj", out) if "out_proj.weight" in state else out


def concat_reference(
    state: StateDict,
    guidance: Tensor,
    guided: Tensor,
    mask: Tensor | None = None,
    *,
    guidance_1d: str = "tokens",
    training: bool = False,
) -> Tensor:
    """Tile or resize, concatenate ``[Y; X]``, convolve, batch norm (running or batch statistics), ReLU, 1x1."""
    size = tuple(guided.shape[2:])
    stacked = torch.cat([guided, _guidance_map(guidance, mask, size, guidance_1d)], dim=1)
    weight = state["conv.weight"]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(size)]
    pre = conv(stacked, weight, padding=[k // 2 for k in weight.shape[2:]])
    shape = (1, -1, *(1,) * len(size))
    if training:
        dims = [0, *range(2, pre.dim())]
        mean, var = pre.mean(dims), pre.var(dims, unbiased=False)
    else:
        mean, var = state["norm.running_mean"], state["norm.running_var"]
    normed = (pre - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-5)
    normed = normed * state["norm.weight"].view(shape) + state["norm.bias"].view(shape)
    return _pointwise(state, "out_proj", torch.relu(normed))


PEERS = {
    "film": (FiLM, film_reference),
    "pwam": (PixelWordAttention, pwam_reference),
    "concat": (ConcatFusion, concat_reference),
}


def _guidances(spatial_dims: int, batch: int = 2) -> dict[str, tuple[Tensor, Tensor | None]]:
    generator = torch.Generator().manual_seed(spatial_dims)
    tokens = torch.randn(batch, 4, C_X, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0]][:batch])
    smaller = (3,) * spatial_dims
    larger = (7, 6, 5)[:spatial_dims]
    cases: dict[str, tuple[Tensor, Tensor | None]] = {
        "vector": (torch.randn(batch, C_X, generator=generator, dtype=torch.float64), None),
        "tokens": (tokens, None),
        "tokens-masked": (tokens, mask),
    }
    if spatial_dims > 1:
        cases["map-smaller"] = (torch.randn(batch, C_X, *smaller, generator=generator, dtype=torch.float64), None)
        cases["map-larger"] = (torch.randn(batch, C_X, *larger, generator=generator, dtype=torch.float64), None)
    return cases


def _guided(spatial_dims: int, batch: int = 2) -> Tensor:
    size = (5, 4, 3)[:spatial_dims] if spatial_dims > 1 else (6,)
    return torch.randn(batch, C_Y, *size, generator=torch.Generator().manual_seed(9), dtype=torch.float64)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("out_channels", [None, C_OUT])
@pytest.mark.parametrize("peer", sorted(PEERS))
def test_matches_reference(peer: str, out_channels: int | None, spatial_dims: int) -> None:
    cls, reference = PEERS[peer]
    module = _randomise(cls(C_X, C_Y, out_channels=out_channels, spatial_dims=spatial_dims, dtype=torch.float64))
    module.eval()
    state = module.state_dict()
    guided = _guided(spatial_dims)
    for kind, (guidance, mask) in _guidances(spatial_dims).items():
        expected = reference(state, guidance, guided, mask)
        got = module(guidance, guided, guidance_mask=mask)
        assert got.shape == (2, out_channels or C_Y, *guided.shape[2:])
        assert_close(got, expected, msg=f"{peer} with {kind} guidance")


def test_concat_training_mode_uses_batch_statistics() -> None:
    module = _randomise(ConcatFusion(C_X, C_Y, out_channels=C_OUT, dtype=torch.float64)).train()
    guidance, guided = torch.randn(3, C_X, dtype=torch.float64), _guided(2, batch=3)
    expected = concat_reference(module.state_dict(), guidance, guided, training=True)
    assert_close(module(guidance, guided), expected)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_one_dimensional_guidance_map(peer: str) -> None:
    """``guidance_1d="map"``: a ``(B, C_x, t)`` guidance is a map (resized, or the tokens of PWAM)."""
    cls, reference = PEERS[peer]
    module = _randomise(cls(C_X, C_Y, spatial_dims=1, guidance_1d="map", dtype=torch.float64)).eval()
    guided = _guided(1)
    guidance = torch.randn(2, C_X, 3, dtype=torch.float64)
    expected = reference(module.state_dict(), guidance, guided, guidance_1d="map")
    assert_close(module(guidance, guided), expected)


def test_film_map_guidance_is_per_position() -> None:
    module = _randomise(FiLM(C_X, C_Y, dtype=torch.float64))
    guidance = torch.randn(1, C_X, 5, 4, dtype=torch.float64)
    guided = torch.randn(1, C_Y, 5, 4, dtype=torch.float64)
    out = module(guidance, guided)
    changed = guidance.clone()
    changed[:, :, 0, 0] += 1
    difference = (module(changed, guided) - out).abs().sum(1)[0]
    assert difference[0, 0] > 0 and difference.flatten()[1:].abs().max() == 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["vector", "tokens-masked", "map-smaller"])
@pytest.mark.parametrize("peer", sorted(PEERS))
def test_gradcheck(peer: str, kind: str, seed: int) -> None:
    """Float64 gradcheck of the inputs and of every parameter (random weights, so no gate is zero)."""
    cls, _ = PEERS[peer]
    module = _randomise(cls(C_X, C_Y, out_channels=C_OUT, dtype=torch.float64), seed=seed).eval()
    guidance, mask = _guidances(2)[kind]
    guidance = guidance.clone().requires_grad_()
    guided = _guided(2)[..., :3, :3].clone().requires_grad_()
    names, params = zip(*module.named_parameters(), strict=True)

    def run(guidance: Tensor, guided: Tensor, *weights: Tensor) -> Tensor:
        state = dict(zip(names, weights, strict=True))
        return torch.func.functional_call(module, state, (guidance, guided), {"guidance_mask": mask})

    weights = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(run, (guidance, guided, *weights), fast_mode=True)
