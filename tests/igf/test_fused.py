"""The fused (memory-lean) path: reference parity of values and gradients, gradcheck, what it keeps, autocast,
compile, export, and inputs of any stride."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.testing import assert_close

from igf import GATES, OUTPUT_MODES, IterativeGatedFusion
from igf.fused import CheckpointedASGateStep, FusedASGate, FusedFusion
from tests.igf import reference

F64 = {"dtype": torch.float64}


def _module(gate: str = "asgate", **kwargs: object) -> IterativeGatedFusion:
    torch.manual_seed(0)
    options: dict = {"num_layers": 3, "heads": 2, "hidden_channels": 4, "guidance_hidden_channels": 3, **kwargs}
    return IterativeGatedFusion(6, 5, gate=gate, **options)


def _grads(output: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(7), dtype=output.dtype)
    return torch.autograd.grad((output * weights).sum(), inputs)


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
@pytest.mark.parametrize("guidance_shape", [(2, 6), (2, 6, 3, 2)])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_values_and_gradients_match_the_reference(
    gate: str, output_mode: str, guidance_shape: tuple[int, ...], checkpoint: bool
) -> None:
    """Float64: the fused path's output and every gradient equal autograd through the paper's plain equations."""
    module = _module(gate, output_mode=output_mode, checkpoint=checkpoint, **F64)
    guidance = torch.randn(*guidance_shape, **F64, requires_grad=True)
    guided = torch.randn(2, 5, 4, 3, **F64, requires_grad=True)
    params = dict(module.named_parameters())
    got = module(guidance, guided)
    expected, _, _ = reference.iterative_gated_fusion(
        params, guidance, guided, num_layers=3, heads=2, gate=gate, output_mode=output_mode
    )
    assert_close(got, expected, rtol=1e-10, atol=1e-10)
    inputs = [guidance, guided, *params.values()]
    for a, b in zip(_grads(got, inputs), _grads(expected, inputs), strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck], ids=["gradcheck", "gradgradcheck"])
@pytest.mark.parametrize("guidance_shape", [(1, 3), (1, 3, 3, 3)])
def test_fused_functions_gradcheck(guidance_shape: tuple[int, ...], check: Callable[..., bool]) -> None:
    """First and second derivatives (``create_graph=True``, e.g. a gradient penalty) of every fused function."""
    torch.manual_seed(0)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, **F64, requires_grad=True)

    x, hidden = leaf(*guidance_shape), leaf(1, 2, 3, 3)
    w1, b1, w2, b2 = leaf(4, 3, 1, 1), leaf(4), leaf(4, 2, 1, 1), leaf(4)
    wz, bz, wg, bg, w_out = leaf(2, 2, 3, 3), leaf(2), leaf(2, 4, 3, 3), leaf(2), leaf(3, 2, 3, 3)
    assert check(lambda *a: FusedFusion.apply(*a, 2), (x, hidden, w1, b1, w2, b2))
    assert check(
        lambda *a: FusedASGate.apply(*a)[0], (hidden, hidden.detach().flip(0).requires_grad_(), wz, bz, wg, bg)
    )
    assert check(
        lambda x, h, *w: CheckpointedASGateStep.apply(x, h, *w[:4], 2, *w[4:]),
        (x, hidden, w1, b1, w2, b2, wz, bz, wg, bg, w_out),
    )


@pytest.mark.parametrize("checkpoint", [False, True])
def test_igf_gradcheck_fused(checkpoint: bool) -> None:
    module = _module(num_layers=2, checkpoint=checkpoint, **F64)
    guidance = torch.randn(1, 6, 2, 2, **F64, requires_grad=True)
    guided = torch.randn(1, 5, 3, 3, **F64, requires_grad=True)
    assert gradcheck(lambda x, y: module(x, y), (guidance, guided), eps=1e-6, atol=1e-5)


def _saved_shapes(module: IterativeGatedFusion, *inputs: torch.Tensor) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*inputs)
    return shapes


@pytest.mark.parametrize("guidance_shape", [(2, 6), (2, 6, 3, 2)])
def test_no_heads_wide_tensor_is_kept_for_backward(guidance_shape: tuple[int, ...]) -> None:
    """Nothing of h * C'_v = 10 channels at the map's size is saved (plain autograd saves several per step)."""
    inputs = (torch.randn(*guidance_shape), torch.randn(2, 5, 4, 3))
    wide = (2, 10, 4, 3)
    assert wide not in _saved_shapes(_module(heads=2, hidden_channels=5, fused=True), *inputs)
    assert wide in _saved_shapes(_module(heads=2, hidden_channels=5, fused=False), *inputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_autocast_fused_matches_plain(dtype: torch.dtype, checkpoint: bool) -> None:
    plain = _module(fused=False, checkpoint=checkpoint)
    fused = _module(fused=True, checkpoint=checkpoint)
    guidance, guided = torch.randn(2, 6), torch.randn(2, 5, 4, 3)
    results = []
    for module in (plain, fused):
        inputs = [guidance.clone().requires_grad_(), guided.clone().requires_grad_()]
        with torch.autocast("cpu", dtype=dtype):
            out = module(*inputs)
        assert out.dtype == dtype
        results.append((out.float(), *_grads(out.float(), [*inputs, *module.parameters()])))
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype
        assert_close(a, b, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_compile_fullgraph_fused_training_step(checkpoint: bool) -> None:
    torch._dynamo.reset()
    module = _module(checkpoint=checkpoint)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    guidance, guided = torch.randn(2, 6), torch.randn(2, 5, 4, 3)
    compiled(guidance, guided).square().sum().backward()
    got = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    module(guidance, guided).square().sum().backward()
    for a, b in zip(got, (p.grad for p in module.parameters()), strict=True):
        assert_close(a, b)


def test_export_takes_the_plain_path() -> None:
    """torch.export traces standard operators only (no autograd.Function), with grad mode on."""
    module = _module()
    program = torch.export.export(module, (torch.randn(2, 6), torch.randn(2, 5, 4, 3)))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("autograd" in t or "Fused" in t for t in targets)
    inputs = (torch.randn(2, 6), torch.randn(2, 5, 4, 3))
    assert_close(program.module()(*inputs), module(*inputs))


def _layouts(tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values as contiguous, channels_last, non-contiguous (a strided slice) and expanded views."""
    wide = tensor.new_zeros(*tensor.shape[:3], 2 * tensor.shape[3])
    wide[..., ::2] = tensor
    return {
        "channels_last": tensor.contiguous(memory_format=torch.channels_last),
        "strided": wide[..., ::2],
        "transposed": tensor.transpose(-1, -2).contiguous().transpose(-1, -2),
    }


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_strides_and_layouts_give_the_same_result(fused: bool, checkpoint: bool) -> None:
    module = _module(fused=fused, checkpoint=checkpoint, **F64)
    guided = torch.randn(2, 5, 4, 3, **F64)
    guidance_map = torch.randn(2, 6, 2, 3, **F64)
    vector = torch.randn(1, 6, **F64)

    def run(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = module(x, y)
        return (out, *_grads(out, list(module.parameters())))

    expected = run(guidance_map, guided)
    for name, y in _layouts(guided).items():
        for got, want in zip(run(_layouts(guidance_map)[name], y), expected, strict=True):
            assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    # an expanded (stride 0) batch of a vector and of a map equals its materialised copy
    for x in (vector.expand(2, -1), guidance_map[:1].expand(2, -1, -1, -1)):
        y = guided[:1].expand(2, -1, -1, -1)
        for got, want in zip(run(x, y), run(x.contiguous(), y.contiguous()), strict=True):
            assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_false_is_the_previous_implementation() -> None:
    """``fused=False`` runs the plain modules: same state_dict keys, same values as the default path."""
    fused = _module()
    plain = _module(fused=False)
    assert list(fused.state_dict()) == list(plain.state_dict())
    plain_copy = copy.deepcopy(plain)
    plain_copy.load_state_dict(fused.state_dict())
    inputs = (torch.randn(2, 6), torch.randn(2, 5, 4, 3))
    assert_close(fused(*inputs), plain_copy(*inputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("guidance_shape", [(2, 6), (2, 6, 3, 2)])
def test_gradient_penalty_matches_the_plain_path(guidance_shape: tuple[int, ...], checkpoint: bool) -> None:
    """Second derivatives through a whole IGF (``create_graph=True``, as in a gradient penalty), float64."""
    module = _module(checkpoint=checkpoint, **F64)
    guided = torch.randn(2, 5, 3, 2, **F64)
    guidance = torch.randn(*guidance_shape, **F64)
    penalty_grads = []
    for fused in (True, False):
        for part in module.modules():
            if hasattr(part, "fused"):
                part.fused = fused
        leaf = guidance.clone().requires_grad_()
        (grad_guidance,) = torch.autograd.grad(module(leaf, guided).pow(2).sum(), leaf, create_graph=True)
        penalty_grads.append(torch.autograd.grad(grad_guidance.pow(2).sum(), list(module.parameters())))
    for fused_grad, plain_grad in zip(*penalty_grads, strict=True):
        assert_close(fused_grad, plain_grad, rtol=1e-10, atol=1e-10)
