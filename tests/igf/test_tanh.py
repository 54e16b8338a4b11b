"""igf's tanh: torch.tanh, or 2 sigmoid(2x) - 1 on a CPU where that is faster; the same function to rounding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.testing import assert_close

from igf import IterativeGatedFusion
from igf.cpu_tanh import (
    TanhViaSigmoid,
    default_eager_cpu_tanh_via_sigmoid,
    eager_cpu_tanh_form,
    eager_cpu_tanh_via_sigmoid,
    set_eager_cpu_tanh_via_sigmoid,
    tanh,
    tanh_of_temporary,
)
from igf.saved_activations import saved_bytes


def _values(dtype: torch.dtype) -> torch.Tensor:
    """[-30, 30] finely, zero, tiny and huge values."""
    extremes = torch.tensor([0.0, 1e-30, -1e-30, 1e-8, 1e4, -1e4], dtype=dtype)
    return torch.cat([torch.linspace(-30, 30, 20001, dtype=dtype), extremes])


@pytest.fixture
def sigmoid_form() -> Iterator[None]:
    """Eager CPU tanh in its sigmoid form, whatever this CPU's default."""
    with eager_cpu_tanh_form(via_sigmoid=True):
        yield


@pytest.fixture
def tanh_form() -> Iterator[None]:
    """Eager CPU tanh as torch.tanh, whatever this CPU's default."""
    with eager_cpu_tanh_form(via_sigmoid=False):
        yield


def test_the_form_is_an_explicit_setting_restored_after_the_block() -> None:
    assert eager_cpu_tanh_via_sigmoid() is default_eager_cpu_tanh_via_sigmoid()
    with eager_cpu_tanh_form(via_sigmoid=not default_eager_cpu_tanh_via_sigmoid()):
        assert eager_cpu_tanh_via_sigmoid() is not default_eager_cpu_tanh_via_sigmoid()
    assert eager_cpu_tanh_via_sigmoid() is default_eager_cpu_tanh_via_sigmoid()
    assert set_eager_cpu_tanh_via_sigmoid(True) is None
    assert set_eager_cpu_tanh_via_sigmoid(None) is True
    assert eager_cpu_tanh_via_sigmoid() is default_eager_cpu_tanh_via_sigmoid()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sigmoid_form_is_tanh_to_rounding(sigmoid_form: None, dtype: torch.dtype) -> None:
    x = _values(dtype)
    expected = torch.tanh(x)
    assert_close(tanh(x), expected, rtol=0, atol=2 * torch.finfo(dtype).eps)
    with torch.no_grad():
        in_place = tanh_of_temporary(x.clone())
    assert torch.equal(in_place, tanh(x))  # same kernels in and out of place: bit-identical
    recorded = tanh(x.clone().requires_grad_())
    assert recorded.grad_fn is not None and torch.equal(recorded.detach(), in_place)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_torch_tanh_where_the_sigmoid_form_is_off(tanh_form: None, dtype: torch.dtype) -> None:
    x = _values(torch.float32).to(dtype)
    assert torch.equal(tanh(x), torch.tanh(x))
    assert torch.equal(tanh_of_temporary(x.clone()), torch.tanh(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_torch_tanh(sigmoid_form: None, dtype: torch.dtype) -> None:
    """In 16-bit floats 2 sigmoid(2x) - 1 would lose small x (sigmoid is near 1/2): torch.tanh is kept."""
    x = _values(torch.float32).to(dtype)
    assert torch.equal(tanh(x), torch.tanh(x))
    assert torch.equal(tanh_of_temporary(x.clone()), torch.tanh(x))


def test_tanh_via_sigmoid_gradients() -> None:
    x = torch.linspace(-4, 4, 17, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(TanhViaSigmoid.apply, (x,))
    assert torch.autograd.gradgradcheck(TanhViaSigmoid.apply, (x,))


def test_tanh_via_sigmoid_saves_only_its_output() -> None:
    """Like torch.tanh, the autograd Function keeps one tensor, the output; the sigmoid and 2x are not kept."""
    saved: list[torch.Tensor] = []
    x = torch.randn(4, 5, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = TanhViaSigmoid.apply(x)
    assert len(saved) == 1 and saved[0] is y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_igf_in_either_form_agrees_and_saves_as_much(dtype: torch.dtype) -> None:
    """A whole IGF forward and backward is the same in both forms, to rounding, and saves the same bytes."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    guidance = torch.randn(2, 6, 3, 2, generator=generator, dtype=dtype)
    guided = torch.randn(2, 5, 4, 3, generator=generator, dtype=dtype)
    results = []
    for via_sigmoid in (False, True):
        for fused in (True, False):
            torch.manual_seed(0)
            module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, hidden_channels=4, fused=fused, dtype=dtype)
            with eager_cpu_tanh_form(via_sigmoid=via_sigmoid):
                output = module(guidance, guided)
                output.square().sum().backward()
                saved = saved_bytes(module, lambda module=module: module(guidance, guided))
            results.append((output.detach(), [p.grad for p in module.parameters()], saved))
    tolerance = 20 * torch.finfo(dtype).eps
    for output, grads, _ in results[1:]:
        assert_close(output, results[0][0], rtol=tolerance, atol=tolerance)
        for got, want in zip(grads, results[0][1], strict=True):
            assert_close(got, want, rtol=tolerance, atol=tolerance)
    assert results[2][2] == results[0][2] and results[3][2] == results[1][2]


def test_compiled_for_a_cpu_tanh_is_its_sigmoid_form() -> None:
    """Under torch.compile on a CPU (Inductor's tanh is slow there), the traced graph holds sigmoid, not tanh."""
    x = _values(torch.float32)
    torch._dynamo.reset()
    traced: list[str] = []

    def backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> torch.fx.GraphModule:
        traced.append(str(graph.graph))
        return graph

    compiled = torch.compile(tanh, backend=backend, fullgraph=True)(x)
    assert "sigmoid" in traced[0] and "tanh" not in traced[0]
    assert_close(compiled, torch.tanh(x), rtol=0, atol=2 * torch.finfo(torch.float32).eps)


def test_an_exported_graph_says_tanh() -> None:
    """torch.export records torch.tanh in either form: the same graph."""
    torch.manual_seed(0)
    module = IterativeGatedFusion(8, 6, num_layers=2, heads=2).eval()
    inputs = (torch.randn(2, 8), torch.randn(2, 6, 5, 4))
    graphs = []
    for via_sigmoid in (False, True):
        with eager_cpu_tanh_form(via_sigmoid=via_sigmoid):
            graphs.append(torch.export.export(module, inputs).graph_module.code)
    assert "aten.tanh.default" in graphs[1] and graphs[0] == graphs[1]
