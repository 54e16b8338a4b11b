"""Each igf module against the plain reference of tests/igf/reference.py, in float64."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from igf import GATES, OUTPUT_MODES, ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion
from tests.igf import reference

F64 = {"dtype": torch.float64}


@pytest.mark.parametrize(
    ("gate_class", "expected"), [(ASGate, 1_769_984), (ConvGRUGate, 3_539_712), (ConvLSTMGate, 4_719_616)]
)
def test_gate_parameter_counts_match_paper_table6(gate_class: type, expected: int) -> None:
    gate = gate_class(256, device="meta")
    assert sum(p.numel() for p in gate.parameters()) == expected


@pytest.mark.parametrize("heads", [1, 3, 5])
@pytest.mark.parametrize("guidance_kind", ["vector", "map"])
def test_fusion_unit_matches_reference(heads: int, guidance_kind: str) -> None:
    torch.manual_seed(0)
    unit = BilinearFusionUnit(6, 4, heads=heads, **F64)
    guided = torch.randn(2, 4, 5, 3, **F64)
    guidance = torch.randn(2, 6, **F64) if guidance_kind == "vector" else torch.randn(2, 6, 5, 3, **F64)
    tiled = guidance[:, :, None, None].expand(-1, -1, 5, 3) if guidance_kind == "vector" else guidance
    state = {f"unit.{k}": v for k, v in unit.state_dict().items()}
    expected = reference.fusion_unit(state, "unit", tiled, guided, heads)
    assert_close(unit(guidance, guided), expected, rtol=1e-12, atol=1e-12)


def test_asgate_matches_reference() -> None:
    torch.manual_seed(0)
    gate = ASGate(4, **F64)
    fused, hidden = torch.randn(2, 4, 6, 5, **F64), torch.randn(2, 4, 6, 5, **F64)
    state = {f"g.{k}": v for k, v in gate.state_dict().items()}
    new_hidden, cell = gate(fused, hidden)
    assert cell is None
    assert_close(new_hidden, reference.asgate(state, "g", fused, hidden), rtol=1e-12, atol=1e-12)


def test_convgru_matches_reference() -> None:
    torch.manual_seed(0)
    gate = ConvGRUGate(4, **F64)
    fused, hidden = torch.randn(2, 4, 6, 5, **F64), torch.randn(2, 4, 6, 5, **F64)
    state = {f"g.{k}": v for k, v in gate.state_dict().items()}
    new_hidden, cell = gate(fused, hidden)
    assert cell is None
    assert_close(new_hidden, reference.convgru(state, "g", fused, hidden), rtol=1e-12, atol=1e-12)


def test_convlstm_matches_reference_over_two_steps() -> None:
    torch.manual_seed(0)
    gate = ConvLSTMGate(4, **F64)
    state = {f"g.{k}": v for k, v in gate.state_dict().items()}
    hidden = torch.randn(2, 4, 6, 5, **F64)
    ref_hidden, ref_cell = hidden, torch.zeros_like(hidden)
    cell = None
    for _ in range(2):
        fused = torch.randn(2, 4, 6, 5, **F64)
        hidden, cell = gate(fused, hidden, cell)
        ref_hidden, ref_cell = reference.convlstm(state, "g", fused, ref_hidden, ref_cell)
        assert_close(hidden, ref_hidden, rtol=1e-12, atol=1e-12)
        assert_close(cell, ref_cell, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gate", list(GATES))
@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
@pytest.mark.parametrize("guidance_shape", [(2, 6), (2, 6, 7, 5), (2, 6, 3, 2), (2, 6, 4, 3)])
def test_iterative_gated_fusion_matches_reference(gate: str, output_mode: str, guidance_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(
        6,
        5,
        num_layers=3,
        heads=2,
        gate=gate,
        hidden_channels=4,
        guidance_hidden_channels=3,
        out_channels=7,
        output_mode=output_mode,
        **F64,
    )
    guidance = torch.randn(*guidance_shape, **F64)
    guided = torch.randn(2, 5, 4, 3, **F64)
    result = module(guidance, guided, return_intermediates=True)
    expected, fusions, gates = reference.iterative_gated_fusion(
        module.state_dict(), guidance, guided, num_layers=3, heads=2, gate=gate, output_mode=output_mode
    )
    assert result.output.shape == (2, 7, 4, 3)
    assert_close(result.output, expected, rtol=1e-10, atol=1e-10)
    assert len(result.fusions) == 3 and len(result.gates) == len(gates)
    for got, want in zip(result.fusions + result.gates, fusions + gates, strict=True):
        assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert_close(module(guidance, guided), result.output, rtol=0, atol=0)


@pytest.mark.parametrize("tiled_size", [(4, 3), (1, 1), (2, 5)])
def test_vector_guidance_equals_tiled_map(tiled_size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, **F64)
    vector = torch.randn(2, 6, **F64)
    guided = torch.randn(2, 5, 4, 3, **F64)
    tiled = vector[:, :, None, None].expand(-1, -1, *tiled_size).contiguous()
    assert_close(module(vector, guided), module(tiled, guided), rtol=1e-12, atol=1e-12)


def test_gates_built_only_where_their_output_is_read() -> None:
    for mode, num_gates in [("all_fusions", 4), ("last_fusion", 4), ("last_gate", 5), ("fusions_and_last_gate", 5)]:
        assert len(IterativeGatedFusion(3, 4, output_mode=mode).gates) == num_gates
    assert len(IterativeGatedFusion(3, 4, num_layers=1).gates) == 0


@pytest.mark.parametrize("gate", list(GATES))
def test_token_sequence_guidance_is_the_masked_mean(gate: str) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, gate=gate, **F64)
    tokens = torch.randn(3, 4, 6, **F64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    guided = torch.randn(3, 5, 4, 3, **F64)
    expected, _, _ = reference.iterative_gated_fusion(
        module.state_dict(),
        reference.masked_mean_tokens(tokens, mask),
        guided,
        num_layers=3,
        heads=2,
        gate=gate,
        output_mode="all_fusions",
    )
    assert_close(module(tokens, guided, guidance_mask=mask), expected, rtol=1e-10, atol=1e-10)
    assert_close(module(tokens, guided, guidance_mask=mask.bool()), expected, rtol=1e-10, atol=1e-10)


def test_padding_tokens_change_nothing_and_no_mask_means_all_tokens() -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=2, **F64)
    tokens = torch.randn(2, 5, 6, **F64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    guided = torch.randn(2, 5, 3, 3, **F64)
    changed = tokens.clone()
    changed[1, 3:] = 1e3
    assert_close(module(tokens, guided, guidance_mask=mask), module(changed, guided, guidance_mask=mask))
    assert_close(module(tokens, guided), module(tokens, guided, guidance_mask=torch.ones(2, 5, dtype=torch.bool)))
    assert_close(module(tokens, guided), module(tokens.mean(dim=1), guided))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_padding_tokens_never_reach_the_output(bad: float) -> None:
    """Padding tokens are selected away, not multiplied by zero (0 * nan = nan)."""
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=2)
    tokens = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    guided = torch.randn(2, 5, 3, 3)
    poisoned = tokens.clone()
    poisoned[1, 2:] = bad
    got = module(poisoned, guided, guidance_mask=mask)
    assert torch.isfinite(got).all()
    assert_close(got, module(tokens, guided, guidance_mask=mask), rtol=0, atol=0)
