"""Gradients: float64 gradcheck, every parameter reached, activation checkpointing parity."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.testing import assert_close

from igf import GATES, OUTPUT_MODES, ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion

F64 = {"dtype": torch.float64}


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("guidance_shape", [(1, 3), (1, 3, 2, 2)])
def test_igf_gradcheck(gate: str, guidance_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(3, 2, num_layers=2, heads=2, gate=gate, hidden_channels=2, **F64)
    guidance = torch.randn(*guidance_shape, **F64, requires_grad=True)
    guided = torch.randn(1, 2, 3, 3, **F64, requires_grad=True)
    assert gradcheck(lambda x, y: module(x, y), (guidance, guided), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("gate_class", [ASGate, ConvGRUGate, ConvLSTMGate])
def test_gate_gradcheck(gate_class: type) -> None:
    torch.manual_seed(0)
    gate = gate_class(2, **F64)
    fused = torch.randn(1, 2, 3, 3, **F64, requires_grad=True)
    hidden = torch.randn(1, 2, 3, 3, **F64, requires_grad=True)
    assert gradcheck(lambda f, h: gate(f, h)[0], (fused, hidden), eps=1e-6, atol=1e-5)


def test_convlstm_gradcheck_through_cell() -> None:
    torch.manual_seed(0)
    gate = ConvLSTMGate(2, **F64)
    inputs = [torch.randn(1, 2, 3, 3, **F64, requires_grad=True) for _ in range(3)]
    assert gradcheck(lambda f, h, c: gate(f, h, c), inputs, eps=1e-6, atol=1e-5)


def test_fusion_unit_gradcheck() -> None:
    torch.manual_seed(0)
    unit = BilinearFusionUnit(3, 2, heads=3, **F64)
    guidance = torch.randn(2, 3, **F64, requires_grad=True)
    guided = torch.randn(2, 2, 3, 2, **F64, requires_grad=True)
    assert gradcheck(unit, (guidance, guided), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_every_parameter_receives_a_gradient(gate: str, output_mode: str, num_layers: int) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(4, 3, num_layers=num_layers, heads=2, gate=gate, output_mode=output_mode)
    module(torch.randn(2, 4), torch.randn(2, 3, 5, 4)).square().sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("guidance_shape", [(2, 4), (2, 4, 3, 3)])
def test_activation_checkpointing_matches_plain_backward(gate: str, guidance_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    plain = IterativeGatedFusion(4, 3, num_layers=3, heads=2, gate=gate, **F64)
    checkpointed = IterativeGatedFusion(4, 3, num_layers=3, heads=2, gate=gate, checkpoint=True, **F64)
    checkpointed.load_state_dict(plain.state_dict())
    guidance = torch.randn(*guidance_shape, **F64)
    guided = torch.randn(2, 3, 6, 5, **F64)
    grads = []
    for module in (plain, checkpointed):
        inputs = (guidance.clone().requires_grad_(), guided.clone().requires_grad_())
        out = module(*inputs)
        out.square().sum().backward()
        grads.append((out, *(x.grad for x in inputs), *(p.grad for p in module.parameters())))
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-12)
