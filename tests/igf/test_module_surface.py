"""What a user sees first: an empty batch works everywhere, ``help(forward)`` documents shapes, repr shows choices."""

from __future__ import annotations

import pydoc

import pytest
import torch
from torch import nn

from igf import ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("gate_class", [ASGate, ConvGRUGate, ConvLSTMGate])
def test_gates_take_an_empty_batch(fused: bool, gate_class: type[nn.Module]) -> None:
    gate = gate_class(4, fused=fused) if gate_class is ASGate else gate_class(4)
    fused_map = torch.randn(0, 4, 5, 5, requires_grad=True)
    hidden = torch.randn(0, 4, 5, 5, requires_grad=True)
    new_hidden, _ = gate(fused_map, hidden)
    assert new_hidden.shape == (0, 4, 5, 5)
    new_hidden.sum().backward()
    assert fused_map.grad is not None and fused_map.grad.shape == fused_map.shape


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("guidance_shape", [(0, 6), (0, 6, 2, 2)])
def test_fusion_unit_takes_an_empty_batch(fused: bool, guidance_shape: tuple[int, ...]) -> None:
    unit = BilinearFusionUnit(6, 4, heads=2, fused=fused)
    guided = torch.randn(0, 4, 2, 2, requires_grad=True)
    output = unit(torch.randn(guidance_shape), guided)
    assert output.shape == (0, 4, 2, 2)
    output.sum().backward()
    assert all(p.grad is not None for p in unit.parameters())


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("gate", ["asgate", "convlstm"])
def test_igf_takes_an_empty_batch_and_a_zero_size_spatial_dimension_stays_an_error(checkpoint: bool, gate: str) -> None:
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, gate=gate, checkpoint=checkpoint)
    guided = torch.randn(0, 4, 3, 3, requires_grad=True)
    for guidance in (torch.randn(0, 6), torch.randn(0, 6, 2, 2), torch.randn(0, 5, 6)):
        output = module(guidance, guided)
        assert output.shape == (0, 4, 3, 3)
        output.sum().backward()
    with pytest.raises(ValueError, match="guided must not have a zero-size dimension"):
        module(torch.randn(2, 6), torch.randn(2, 4, 3, 0))


@pytest.mark.parametrize("method", [IterativeGatedFusion.forward, BilinearFusionUnit.forward, ASGate.forward,
                                    ConvGRUGate.forward, ConvLSTMGate.forward])  # fmt: skip
def test_help_of_forward_documents_the_module_not_torch(method: object) -> None:
    text = pydoc.render_doc(method, renderer=pydoc.plaintext)
    assert "Define the computation performed at every call" not in text
    assert "Args:" in text and "Returns:" in text and "(B, C" in text


def test_igf_repr_shows_every_choice_that_changes_the_computation() -> None:
    module = IterativeGatedFusion(
        6, 4, num_layers=3, heads=2, gate="convgru", hidden_channels=8, guidance_hidden_channels=5, out_channels=7,
        output_mode="last_gate", kernel_size=(1, 3, 5), spatial_dims=3, token_pooling="attention", checkpoint=True,
        fused=False, device="meta",
    )  # fmt: skip
    text = module.extra_repr()
    for choice in ("guidance_channels=6", "guided_channels=4", "num_layers=3", "heads=2", "gate='convgru'",
                   "hidden_channels=8", "guidance_hidden_channels=5", "out_channels=7", "output_mode='last_gate'",
                   "kernel_size=(1, 3, 5)", "spatial_dims=3", "token_pooling='attention'", "checkpoint=True",
                   "fused=False"):  # fmt: skip
        assert choice in text
    assert "guidance_1d" not in text
    assert "guidance_1d='map'" in IterativeGatedFusion(6, 4, spatial_dims=1, guidance_1d="map").extra_repr()
    assert "gate='ASGate'" in IterativeGatedFusion(6, 4, gate=ASGate).extra_repr()


def test_gate_and_fusion_reprs_show_their_choices() -> None:
    assert ASGate(4, kernel_size=5, fused=False).extra_repr() == (
        "channels=4, kernel_size=(5, 5), spatial_dims=2, fused=False"
    )
    assert ConvLSTMGate(4, spatial_dims=1).extra_repr() == "channels=4, kernel_size=(3,), spatial_dims=1"
    assert BilinearFusionUnit(6, 4, heads=3, spatial_dims=3, fused=False).extra_repr() == (
        "guidance_channels=6, guided_channels=4, heads=3, spatial_dims=3, fused=False"
    )
