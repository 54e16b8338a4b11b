"""Shape, batch and guidance-kind invariants over many configurations (hypothesis)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from igf import GATES, OUTPUT_MODES, BilinearFusionUnit, IterativeGatedFusion

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def igf_cases(draw: st.DrawFn) -> dict:
    return {
        "batch": draw(st.integers(1, 3)),
        "height": draw(st.integers(1, 6)),
        "width": draw(st.integers(1, 6)),
        "guidance_channels": draw(st.integers(1, 5)),
        "guided_channels": draw(st.integers(1, 5)),
        "hidden_channels": draw(st.integers(1, 4)),
        "heads": draw(st.integers(1, 3)),
        "num_layers": draw(st.integers(1, 3)),
        "gate": draw(st.sampled_from(sorted(GATES))),
        "output_mode": draw(st.sampled_from(OUTPUT_MODES)),
        "out_channels": draw(st.none() | st.integers(1, 4)),
        "guidance_size": draw(st.none() | st.tuples(st.integers(1, 7), st.integers(1, 7))),
    }


def build_igf(case: dict, dtype: torch.dtype = torch.float32) -> IterativeGatedFusion:
    torch.manual_seed(0)
    return IterativeGatedFusion(
        case["guidance_channels"],
        case["guided_channels"],
        num_layers=case["num_layers"],
        heads=case["heads"],
        gate=case["gate"],
        hidden_channels=case["hidden_channels"],
        out_channels=case["out_channels"],
        output_mode=case["output_mode"],
        dtype=dtype,
    )


@SETTINGS
@given(case=igf_cases())
def test_igf_output_shape_and_finite(case: dict) -> None:
    module = build_igf(case)
    b, h, w = case["batch"], case["height"], case["width"]
    guided = torch.randn(b, case["guided_channels"], h, w)
    size = case["guidance_size"]
    guidance = torch.randn(b, case["guidance_channels"], *(size or ()))
    out = module(guidance, guided, return_intermediates=True)
    expected_channels = case["out_channels"] or case["guided_channels"]
    assert out.output.shape == (b, expected_channels, h, w)
    assert torch.isfinite(out.output).all()
    assert len(out.fusions) == case["num_layers"]
    assert all(f.shape == (b, case["hidden_channels"], h, w) for f in out.fusions + out.gates)


@SETTINGS
@given(case=igf_cases())
def test_igf_vector_and_tiled_guidance_agree(case: dict) -> None:
    module = build_igf(case, torch.float64)
    b, h, w = case["batch"], case["height"], case["width"]
    guided = torch.randn(b, case["guided_channels"], h, w, dtype=torch.float64)
    vector = torch.randn(b, case["guidance_channels"], dtype=torch.float64)
    tiled = vector[:, :, None, None].expand(-1, -1, *(case["guidance_size"] or (h, w)))
    assert_close(module(vector, guided), module(tiled, guided), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(case=igf_cases())
def test_igf_batch_elements_are_independent(case: dict) -> None:
    """Each sample's output depends only on its own inputs (no mixing or broadcast across the batch)."""
    module = build_igf(case, torch.float64)
    b, h, w = case["batch"], case["height"], case["width"]
    guided = torch.randn(b, case["guided_channels"], h, w, dtype=torch.float64)
    guidance = torch.randn(b, case["guidance_channels"], *(case["guidance_size"] or ()), dtype=torch.float64)
    batched = module(guidance, guided)
    for i in range(b):
        assert_close(batched[i : i + 1], module(guidance[i : i + 1], guided[i : i + 1]), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(
    batch=st.integers(1, 3),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    guidance_channels=st.integers(1, 4),
    guided_channels=st.integers(1, 4),
    heads=st.integers(1, 4),
    vector=st.booleans(),
)
def test_fusion_unit_shape_and_range(
    batch: int, height: int, width: int, guidance_channels: int, guided_channels: int, heads: int, vector: bool
) -> None:
    unit = BilinearFusionUnit(guidance_channels, guided_channels, heads=heads)
    guidance = torch.randn(batch, guidance_channels, *(() if vector else (height, width)))
    fused = unit(guidance, torch.randn(batch, guided_channels, height, width))
    assert fused.shape == (batch, guided_channels, height, width)
    assert fused.abs().max() <= 1  # tanh output
