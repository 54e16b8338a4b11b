# ruff: noqa: E501  (the table of expected error messages keeps one case a line)
"""IGF's peers behave like IGF: errors, B = 0, ranks, autocast, compile, export, state dicts, gradients, registry.

The float64 references and gradcheck are in ``test_peers_reference.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from igf import (
    FUSION_LAYERS,
    ConcatFusion,
    FiLM,
    FusionLayer,
    IterativeGatedFusion,
    PixelWordAttention,
    build_fusion_layer,
)

PEERS: dict[str, type[FiLM] | type[PixelWordAttention] | type[ConcatFusion]] = {
    "film": FiLM,
    "pwam": PixelWordAttention,
    "concat": ConcatFusion,
}


def _randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5)
    return module


def _peer(name: str, seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return _randomise(PEERS[name](8, 6, **kwargs), seed)  # type: ignore[arg-type]


def _inputs(batch: int = 2, guidance_size: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 8, *guidance_size, generator=generator), torch.randn(batch, 6, 5, 4, generator=generator)


def _tokens(batch: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(10 + batch)
    tokens, guided = torch.randn(batch, 4, 8, generator=generator), torch.randn(batch, 6, 5, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]] * batch)[:batch]
    return tokens, guided, mask


# ----------------------------------------------------------------------------- identity at initialisation


@pytest.mark.parametrize("name", ["film", "pwam"])
def test_residual_peers_start_as_the_identity(name: str) -> None:
    layer = PEERS[name](8, 6)
    tokens, guided, mask = _tokens()
    assert torch.equal(layer(tokens, guided, guidance_mask=mask), guided)
    assert torch.equal(layer(torch.randn(2, 8, 3, 3), guided), guided)


def test_pixel_word_attention_without_identity_init_uses_the_guidance_from_the_start() -> None:
    """``identity_init=False`` (LAVT's released code): the gate is open at initialisation, so the output
    depends on the words and the first backward reaches every weight."""
    torch.manual_seed(0)
    layer = PixelWordAttention(8, 6, identity_init=False)
    tokens, guided, mask = _tokens()
    tokens.requires_grad_(True)
    out = layer(tokens, guided, guidance_mask=mask)
    assert not torch.allclose(out, guided)
    out.square().sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    assert "identity_init=False" in repr(layer) and "identity_init" not in repr(PixelWordAttention(8, 6))
    with pytest.raises(TypeError, match="identity_init must be a bool, got str 'no'"):
        PixelWordAttention(8, 6, identity_init="no")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- masks, padding, guidance kinds


@pytest.mark.parametrize("name", sorted(PEERS))
def test_padding_is_selected_away(name: str) -> None:
    """Whatever padded tokens hold (NaN, inf) reaches neither the output nor any gradient."""
    layer = _peer(name).eval()
    tokens, guided, mask = _tokens()
    clean = layer(tokens, guided, guidance_mask=mask)
    poisoned = tokens.clone()
    poisoned[1, 2] = float("nan")
    poisoned[1, 3] = float("inf")
    poisoned.requires_grad_()
    out = layer(poisoned, guided, guidance_mask=mask)
    assert_close(out, clean)
    out.sum().backward()
    assert torch.isfinite(poisoned.grad).all() and (poisoned.grad[1, 2:] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    # padding = the same sequence without it (float32 rounding differs in the batched softmax)
    assert_close(layer(tokens[1:, :2], guided[1:]), clean[1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_fully_masked_row_gives_finite_values_and_gradients(name: str) -> None:
    layer = _peer(name).eval()
    tokens, guided, _ = _tokens()
    tokens.requires_grad_()
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    out = layer(tokens, guided, guidance_mask=mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(tokens.grad).all() and (tokens.grad[1] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_pwam_fully_masked_row_attends_to_nothing() -> None:
    """No real word: the attended language feature G is zero, so F = GELU(W_o 0 + b_o) whatever the words."""
    layer = _peer("pwam").eval()
    tokens, guided, _ = _tokens()
    mask = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]])
    assert_close(layer(tokens, guided, guidance_mask=mask), layer(tokens * 3 + 1, guided, guidance_mask=mask))


def test_pwam_map_guidance_is_its_positions_as_tokens() -> None:
    layer = _peer("pwam").eval()
    guidance_map, guided = torch.randn(2, 8, 3, 2), torch.randn(2, 6, 5, 4)
    assert_close(layer(guidance_map, guided), layer(guidance_map.flatten(2).transpose(1, 2), guided))


def test_pwam_ignores_a_vector_guidance() -> None:
    """One token: every position attends to it with weight 1, and the instance norm maps the constant to zero."""
    layer = _peer("pwam").double().eval()
    guided = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    vector = torch.randn(2, 8, dtype=torch.float64)
    assert_close(layer(vector, guided), layer(vector * 10 + 1, guided), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["film", "concat"])
def test_tokens_are_pooled_like_igf(name: str) -> None:
    """FiLM and concatenation read a token sequence as the mean of its real tokens, as IGF does."""
    layer = _peer(name).eval()
    tokens, guided, mask = _tokens()
    pooled = torch.stack([tokens[0].mean(0), tokens[1, :2].mean(0)])
    assert_close(layer(tokens, guided, guidance_mask=mask), layer(pooled, guided))


@pytest.mark.parametrize("name", ["film", "concat"])
def test_one_by_one_map_is_a_vector(name: str) -> None:
    layer = _peer(name).eval()
    vector, guided = _inputs()
    assert_close(layer(vector[:, :, None, None], guided), layer(vector, guided))


# ----------------------------------------------------------------------------- batch size 0, ranks


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_batch_size_zero(name: str, spatial_dims: int) -> None:
    layer = _peer(name, spatial_dims=spatial_dims, out_channels=5).train()
    size = (4, 3, 2)[:spatial_dims]
    guided = torch.randn(0, 6, *size, requires_grad=True)
    guidances = [torch.randn(0, 8), torch.randn(0, 3, 8)]
    if spatial_dims > 1:
        guidances.append(torch.randn(0, 8, *(2,) * spatial_dims))
    for guidance in guidances:
        guidance.requires_grad_()
        out = layer(guidance, guided)
        assert out.shape == (0, 5, *size)
        out.sum().backward()
        assert guidance.grad is not None and guidance.grad.shape == guidance.shape


@pytest.mark.parametrize("spatial_dims", [1, 3])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_other_ranks_build_their_rank_and_match_2d_on_a_flat_volume(name: str, spatial_dims: int) -> None:
    """A 3-D layer on a (B, C, 1, H, W) volume with 1x1(x1) kernels equals the 2-D layer with the same weights."""
    kwargs = {"kernel_size": 1} if name == "concat" else {}
    layer = _peer(name, spatial_dims=spatial_dims, **kwargs).eval()
    convs = [m for m in layer.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(conv.weight.dim() == 2 + spatial_dims for conv in convs)
    flat = _peer(name, spatial_dims=2, **kwargs).eval()
    state = {
        key: value.reshape(flat.state_dict()[key].shape) if value.dim() > 1 else value
        for key, value in layer.state_dict().items()
    }
    flat.load_state_dict(state)
    tokens, guided, mask = _tokens()
    if spatial_dims == 3:
        out = layer(tokens, guided[:, :, None], guidance_mask=mask)[:, :, 0]
    else:
        out = layer(tokens, guided.flatten(2), guidance_mask=mask).view_as(guided)
    expected = flat(tokens, guided if spatial_dims == 3 else guided.flatten(2)[..., None], guidance_mask=mask)
    assert_close(out, expected if spatial_dims == 3 else expected.view_as(guided))


# ----------------------------------------------------------------------------- dtypes, autocast, devices


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_factory_dtype(name: str, dtype: torch.dtype) -> None:
    layer = PEERS[name](8, 6, out_channels=5, dtype=dtype)
    assert all(t.dtype == dtype for t in layer.parameters())
    assert all(t.dtype == dtype for t in layer.buffers() if t.is_floating_point())
    guidance, guided = _inputs()
    assert layer(guidance.to(dtype), guided.to(dtype)).dtype == dtype


@pytest.mark.parametrize("name", sorted(PEERS))
def test_meta_device_construction(name: str) -> None:
    layer = PEERS[name](768, 256, device="meta")
    assert all(p.is_meta for p in layer.parameters())
    tokens, guided = torch.empty(2, 7, 768, device="meta"), torch.empty(2, 256, 30, 30, device="meta")
    assert layer(tokens, guided).shape == (2, 256, 30, 30)


@pytest.mark.parametrize("kind", ["vector", "tokens", "map"])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_bf16_autocast_output_dtype_and_closeness(name: str, kind: str) -> None:
    """As IGF: under autocast the output is in the autocast dtype, close to the float32 output.

    The layers keep their default initialisation (PWAM's gate made nonzero so that it adds something):
    PWAM's instance norm of the attended words divides by their spread over the positions, which is
    small where the attention barely varies, and then magnifies bfloat16 rounding (see its docstring).
    """
    torch.manual_seed(0)
    layer = PEERS[name](8, 6).eval()
    if name == "pwam":
        nn.init.normal_(layer.gate_out.weight, std=0.5)
    elif name == "film":
        _randomise(layer)
    tokens, guided, mask = _tokens()
    guidance = {"vector": tokens[:, 0], "tokens": tokens, "map": torch.randn(2, 8, 3, 2)}[kind]
    mask_or_none = mask if kind == "tokens" else None
    expected = layer(guidance, guided, guidance_mask=mask_or_none)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(guidance, guided, guidance_mask=mask_or_none)
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected).abs().max() <= 0.05 * expected.abs().max()


@pytest.mark.parametrize("name", sorted(PEERS))
def test_dtype_mismatch_outside_autocast(name: str) -> None:
    layer = PEERS[name](8, 6)
    guidance, guided = _inputs()
    with pytest.raises(TypeError, match=re.escape("guided has dtype torch.float64 but the module's parameters are")):
        layer(guidance, guided.double())


# ----------------------------------------------------------------------------- compile, export


@pytest.mark.parametrize("guidance_size", [(), (3, 2)])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_compile_fullgraph_has_no_graph_break(name: str, guidance_size: tuple[int, ...]) -> None:
    torch._dynamo.reset()
    layer = _peer(name).eval()
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    inputs = _inputs(guidance_size=guidance_size)
    assert_close(compiled(*inputs), layer(*inputs))
    tokens, guided, mask = _tokens()
    assert_close(compiled(tokens, guided, guidance_mask=mask), layer(tokens, guided, guidance_mask=mask))


@pytest.mark.parametrize("name", sorted(PEERS))
def test_compile_fullgraph_training_step(name: str) -> None:
    torch._dynamo.reset()
    layer = _peer(name).train()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    tokens, guided, mask = _tokens()
    compiled(tokens, guided, guidance_mask=mask).square().sum().backward()
    expected = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer(tokens, guided, guidance_mask=mask).square().sum().backward()
    for got, want in zip(expected, (p.grad for p in layer.parameters()), strict=True):
        assert_close(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
def test_compile_inductor_matches_eager(name: str) -> None:
    """Inductor reorders float32 sums; PWAM's instance norms magnify that a little (hence atol 1e-4)."""
    torch._dynamo.reset()
    layer = _peer(name).eval()
    compiled = torch.compile(layer, fullgraph=True)
    tokens, guided, mask = _tokens()
    with torch.no_grad():
        assert_close(
            compiled(tokens, guided, guidance_mask=mask),
            layer(tokens, guided, guidance_mask=mask),
            rtol=1e-4,
            atol=1e-4,
        )


@pytest.mark.parametrize("guidance_size", [(), (3, 2)])
@pytest.mark.parametrize("name", sorted(PEERS))
def test_export_with_dynamic_batch(name: str, guidance_size: tuple[int, ...]) -> None:
    layer = _peer(name).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(
        layer, _inputs(guidance_size=guidance_size), dynamic_shapes={"guidance": {0: batch}, "guided": {0: batch}}
    )
    for size in (1, 3):
        inputs = _inputs(size, guidance_size)
        assert_close(exported.module()(*inputs), layer(*inputs))


@pytest.mark.parametrize("name", sorted(PEERS))
def test_export_token_sequence_with_mask(name: str) -> None:
    layer = _peer(name).eval()
    tokens, guided, mask = _tokens()
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(
        layer,
        (tokens, guided),
        {"guidance_mask": mask},
        dynamic_shapes={"guidance": {0: batch}, "guided": {0: batch}, "guidance_mask": {0: batch}},
    )
    assert_close(exported.module()(tokens, guided, guidance_mask=mask), layer(tokens, guided, guidance_mask=mask))
    tokens3, guided3, mask3 = _tokens(3)
    assert_close(exported.module()(tokens3, guided3, guidance_mask=mask3), layer(tokens3, guided3, guidance_mask=mask3))


# ----------------------------------------------------------------------------- state dicts, gradients


STATE_KEYS = {
    "film": {"film.weight", "film.bias"},
    "pwam": {
        *(
            f"{name}.{kind}"
            for name in ("visual_proj", "query_proj", "attended_proj", "mm_proj")
            for kind in ("weight", "bias")
        ),
        *(f"{name}.{kind}" for name in ("key_proj", "value_proj") for kind in ("weight", "bias")),
        "gate_hidden.weight",
        "gate_out.weight",
    },
    "concat": {
        "conv.weight",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
        "out_proj.weight",
        "out_proj.bias",
    },
}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_state_dict_keys_and_round_trip(name: str, tmp_path) -> None:
    source = _peer(name, seed=0)
    assert set(source.state_dict()) == STATE_KEYS[name]
    assert set(PEERS[name](8, 6, out_channels=5).state_dict()) == STATE_KEYS[name] | {
        "out_proj.weight",
        "out_proj.bias",
    }
    tokens, guided, mask = _tokens()
    source.train()(tokens, guided, guidance_mask=mask)  # moves batch-norm statistics, if any
    torch.save(source.state_dict(), tmp_path / "peer.pt")
    target = _peer(name, seed=1)
    target.load_state_dict(torch.load(tmp_path / "peer.pt", weights_only=True))
    source.eval(), target.eval()
    assert_close(target(tokens, guided, guidance_mask=mask), source(tokens, guided, guidance_mask=mask), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["film", "concat"])
def test_every_parameter_gets_a_gradient_from_initialisation(name: str) -> None:
    """FiLM's zero-initialised predictor still gets dL/dgamma = dL/dout * Y: nothing is stuck at its init."""
    torch.manual_seed(0)
    layer = PEERS[name](8, 6, out_channels=5)
    tokens, guided, mask = _tokens()
    layer(tokens, guided, guidance_mask=mask).square().sum().backward()
    for param_name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


def test_pwam_gradients_at_initialisation_and_after_one_step() -> None:
    """The zero-initialised W_s2 makes S = 0: at the first step only W_s2 (and out_proj) get a gradient.

    dS/dW_s2 reads ReLU(W_s1 F), which is not zero, so W_s2 moves; once it has, every parameter gets
    a gradient. (Were W_s1 zero too, every gradient would stay zero forever: see the next test.)
    """
    torch.manual_seed(0)
    layer = PixelWordAttention(8, 6, out_channels=5)
    tokens, guided, mask = _tokens()
    layer(tokens, guided, guidance_mask=mask).square().sum().backward()
    moving = {name for name, p in layer.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moving == {"gate_out.weight", "out_proj.weight", "out_proj.bias"}
    with torch.no_grad():
        for p in layer.parameters():
            p -= 0.1 * p.grad
    layer.zero_grad()
    layer(tokens, guided, guidance_mask=mask).square().sum().backward()
    for param_name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


def test_pwam_with_both_gate_matrices_zero_never_trains() -> None:
    """Why W_s1 keeps its default initialisation: with W_s1 = W_s2 = 0 every gradient is exactly zero."""
    torch.manual_seed(0)
    layer = PixelWordAttention(8, 6)
    nn.init.zeros_(layer.gate_hidden.weight)
    tokens, guided, mask = _tokens()
    layer(tokens, guided, guidance_mask=mask).square().sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in layer.parameters())


# ----------------------------------------------------------------------------- errors


CONSTRUCTOR_ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: FiLM(0, 6), ValueError, "guidance_channels must be a positive int, got 0"),
    (lambda: FiLM(8, 6, out_channels=0), ValueError, "out_channels must be a positive int, got 0"),
    (lambda: FiLM(8, 6, spatial_dims=4), ValueError, "spatial_dims must be one of [1, 2, 3], got 4"),
    (lambda: PixelWordAttention(8, -1), ValueError, "guided_channels must be a positive int, got -1"),
    (lambda: PixelWordAttention(8, 6, key_channels=2.0), TypeError, "key_channels must be a positive int, got float"),
    (lambda: ConcatFusion(8, 6, hidden_channels=0), ValueError, "hidden_channels must be a positive int, got 0"),
    (lambda: ConcatFusion(8, 6, kernel_size=2), ValueError, "kernel_size must be "),
    (lambda: ConcatFusion(8, 6, kernel_size=(1, 3), spatial_dims=3), ValueError, "for spatial_dims=3, got (1, 3)"),
    (
        lambda: ConcatFusion(8, 6, guidance_1d="map"),
        ValueError,
        "guidance_1d='map' is for spatial_dims=1 (a 1-D guidance map), got spatial_dims=2",
    ),
    (lambda: FiLM(8, 6, spatial_dims=1, guidance_1d="seq"), ValueError, "guidance_1d must be one of ['tokens', 'map']"),
    (
        lambda: build_fusion_layer("mlp", guidance_channels=8, guided_channels=6),
        ValueError,
        "name must be one of ['igf', 'film', 'pwam', 'concat'], got 'mlp'",
    ),
    (
        lambda: build_fusion_layer("film", guidance_channels=8, guided_channels=6, heads=2),
        TypeError,
        "unexpected keyword argument 'heads'",
    ),
]


@pytest.mark.parametrize(("build", "error", "message"), CONSTRUCTOR_ERRORS)
def test_constructor_errors(build: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        build()


GOOD_GUIDANCE, GOOD_GUIDED = torch.randn(2, 8), torch.randn(2, 6, 4, 4)
FORWARD_ERRORS: list[tuple[object, object, object, type[Exception], str]] = [
    (GOOD_GUIDANCE, torch.randn(6, 4, 4), None, ValueError, "guided must have shape (B, C_y, H, W) (4 dims)"),
    (GOOD_GUIDANCE, torch.randn(2, 5, 4, 4), None, ValueError, "guided must have 6 channels in dim 1 (as constructed), got 5 in shape (2, 5, 4, 4)"),
    (torch.randn(2, 7), GOOD_GUIDED, None, ValueError, "guidance must have 8 channels in dim 1 (as constructed), got 7"),
    (torch.randn(2, 5, 7), GOOD_GUIDED, None, ValueError, "guidance must have 8 channels in dim 2 (as constructed), got 7"),
    (torch.randn(2, 7, 3, 3), GOOD_GUIDED, None, ValueError, "guidance must have 8 channels in dim 1 (as constructed), got 7"),
    (torch.randn(3, 8), GOOD_GUIDED, None, ValueError, "guidance and guided must have the same batch size, got 3 (shape (3, 8)) and 2 (shape (2, 6, 4, 4))"),
    (torch.randn(8), GOOD_GUIDED, None, ValueError, "guidance must have shape (B, C_x), (B, T, C_x) or (B, C_x, h, w) (2 or 3 or 4 dims)"),
    (GOOD_GUIDANCE, torch.randn(2, 6, 0, 4), None, ValueError, "guided must not have a zero-size dimension, got shape (2, 6, 0, 4)"),
    (GOOD_GUIDANCE, GOOD_GUIDED.long(), None, TypeError, "guided must be a floating-point tensor, got dtype torch.int64"),
    (GOOD_GUIDANCE, GOOD_GUIDED.numpy(), None, TypeError, "guided must be a torch.Tensor of shape (B, C_y, H, W), got ndarray"),
    (GOOD_GUIDANCE, GOOD_GUIDED, torch.ones(2, 1), ValueError, "guidance_mask is only for a token-sequence guidance (B, T, C_x), got guidance of shape (2, 8)"),
    (torch.randn(2, 3, 8), GOOD_GUIDED, torch.ones(2, 4, dtype=torch.bool), ValueError, "guidance_mask must have shape (B, T) = (2, 3) to match the guidance, got (2, 4)"),
    (torch.randn(2, 3, 8), GOOD_GUIDED, torch.ones(2, 3), TypeError, "guidance_mask must be a bool or integer tensor (nonzero = real token), got torch.float32"),
    (torch.randn(2, 3, 8), GOOD_GUIDED, [[1, 1, 1]] * 2, TypeError, "guidance_mask must be a torch.Tensor of shape (B, T), got list"),
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(PEERS))
@pytest.mark.parametrize(("guidance", "guided", "mask", "error", "message"), FORWARD_ERRORS)
def test_forward_errors(
    name: str, guidance: object, guided: object, mask: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        PEERS[name](8, 6)(guidance, guided, guidance_mask=mask)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_rank_errors_name_the_rank(name: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape("guided must have shape (B, C_y, D, H, W) (5 dims) for spatial_dims=3, got 4 dims")
    ):
        PEERS[name](8, 6, spatial_dims=3)(GOOD_GUIDANCE, GOOD_GUIDED)
    with pytest.raises(ValueError, match=re.escape("guidance must have shape (B, C_x) or (B, T, C_x) (2 or 3 dims)")):
        PEERS[name](8, 6, spatial_dims=1)(torch.randn(2, 8, 3, 3), torch.randn(2, 6, 5))
    with pytest.raises(ValueError, match=re.escape("guidance_mask is only for a token-sequence guidance")):
        PEERS[name](8, 6, spatial_dims=1, guidance_1d="map")(
            torch.randn(2, 8, 3), torch.randn(2, 6, 5), guidance_mask=torch.ones(2, 8, dtype=torch.bool)
        )


def test_pwam_needs_more_than_one_position() -> None:
    with pytest.raises(ValueError, match=re.escape("guided must have more than one position (the instance norms")):
        PixelWordAttention(8, 6)(GOOD_GUIDANCE, torch.randn(2, 6, 1, 1))


# ----------------------------------------------------------------------------- protocol, registry, repr


@pytest.mark.parametrize("name", FUSION_LAYERS)
def test_registry_builds_each_layer_and_it_satisfies_the_protocol(name: str) -> None:
    layer = build_fusion_layer(name, guidance_channels=8, guided_channels=6, out_channels=5)
    assert isinstance(layer, FusionLayer) and isinstance(layer, nn.Module)
    assert (layer.guidance_channels, layer.guided_channels, layer.out_channels) == (8, 6, 5)
    tokens, guided, mask = _tokens()
    for guidance, guidance_mask in ((tokens[:, 0], None), (tokens, mask), (torch.randn(2, 8, 3, 2), None)):
        assert layer(guidance, guided, guidance_mask=guidance_mask).shape == (2, 5, 5, 4)


def test_registry_passes_options_rank_and_factory_arguments() -> None:
    igf = build_fusion_layer("igf", guidance_channels=8, guided_channels=6, num_layers=2, hidden_channels=4)
    assert isinstance(igf, IterativeGatedFusion) and igf.num_layers == 2 and igf.hidden_channels == 4
    concat = build_fusion_layer(
        "concat", guidance_channels=8, guided_channels=6, spatial_dims=3, kernel_size=(1, 3, 3), dtype=torch.float64
    )
    assert isinstance(concat, ConcatFusion) and concat.conv.weight.shape == (6, 14, 1, 3, 3)
    assert concat.conv.weight.dtype == torch.float64
    pwam = build_fusion_layer("pwam", guidance_channels=8, guided_channels=6, key_channels=3, spatial_dims=1)
    assert isinstance(pwam, PixelWordAttention) and pwam.key_proj.out_features == 3 and pwam.spatial_dims == 1


def test_protocol_rejects_what_is_not_a_fusion_layer() -> None:
    assert not isinstance(nn.Conv2d(8, 6, 1), FusionLayer)
    assert not isinstance(lambda guidance, guided: guided, FusionLayer)


def test_repr_shows_every_choice() -> None:
    assert "guidance_channels=8, guided_channels=6, out_channels=5, spatial_dims=3" in repr(
        FiLM(8, 6, out_channels=5, spatial_dims=3)
    )
    assert "key_channels=3, out_channels=6, spatial_dims=1, guidance_1d='map'" in repr(
        PixelWordAttention(8, 6, key_channels=3, spatial_dims=1, guidance_1d="map")
    )
    assert "out_channels=6, hidden_channels=4, kernel_size=(1, 3, 3), spatial_dims=3" in repr(
        ConcatFusion(8, 6, hidden_channels=4, kernel_size=(1, 3, 3), spatial_dims=3)
    )


@pytest.mark.parametrize("name", sorted(PEERS))
def test_forward_has_a_docstring_with_shapes(name: str) -> None:
    doc = PEERS[name].forward.__doc__ or ""
    assert "Args:" in doc and "Returns:" in doc and "(B, out_channels, *spatial)" in doc
