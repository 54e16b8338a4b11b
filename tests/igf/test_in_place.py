"""Where autograd does not record, the IGF steps compute in place: same values, inputs untouched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
from torch.testing import assert_close

from igf import GATES, OUTPUT_MODES, ASGate, BilinearFusionUnit, IterativeGatedFusion
from igf._in_place import concat_with_product
from igf.fused import FusedASGate, FusedFusion
from tests.igf import reference

NO_AUTOGRAD: dict[str, Callable[[], contextlib.AbstractContextManager[object]]] = {
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


def _inputs(guidance_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    guidance = torch.randn(*guidance_shape, generator=generator, dtype=dtype)
    guided = torch.randn(2, 5, 4, 3, generator=generator, dtype=dtype)
    return guidance, guided


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
@pytest.mark.parametrize("guidance_shape", [(2, 6), (2, 6, 3, 2), (2, 6, 4, 3)])
@pytest.mark.parametrize("context", sorted(NO_AUTOGRAD))
def test_no_autograd_output_equals_the_recorded_one(
    gate: str, output_mode: str, guidance_shape: tuple[int, ...], context: str
) -> None:
    """The in-place path gives bit-identical values to the path autograd records, and leaves its inputs alone."""
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, hidden_channels=4, gate=gate, output_mode=output_mode)
    guidance, guided = _inputs(guidance_shape)
    recorded = module(guidance.clone().requires_grad_(), guided.clone().requires_grad_(), return_intermediates=True)
    before = (guidance.clone(), guided.clone())
    with NO_AUTOGRAD[context]():
        untracked = module(guidance, guided, return_intermediates=True)
    for got, expected in zip(
        (untracked.output, *untracked.fusions, *untracked.gates),
        (recorded.output, *recorded.fusions, *recorded.gates),
        strict=True,
    ):
        assert torch.equal(got, expected.detach())
    assert torch.equal(guidance, before[0]) and torch.equal(guided, before[1])


def test_no_autograd_matches_the_reference_in_float64() -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, hidden_channels=4, dtype=torch.float64)
    guidance, guided = _inputs((2, 6), torch.float64)
    with torch.no_grad():
        got = module(guidance, guided)
        expected, _, _ = reference.iterative_gated_fusion(
            dict(module.named_parameters()), guidance, guided, num_layers=3, heads=2, gate="asgate",
            output_mode="all_fusions",
        )  # fmt: skip
    assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_bf16_autocast_no_autograd_equals_the_recorded_one() -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(6, 5, num_layers=3, heads=2, hidden_channels=4)
    guidance, guided = _inputs((2, 6, 3, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recorded = module(guidance.clone().requires_grad_(), guided)
        with torch.no_grad():
            untracked = module(guidance, guided)
    assert untracked.dtype == recorded.dtype == torch.bfloat16
    assert torch.equal(untracked, recorded.detach())


def test_modules_called_alone_leave_their_inputs_alone() -> None:
    """The fusion unit and ASGate, used outside IGF under no_grad, never write into their arguments."""
    torch.manual_seed(0)
    unit, gate = BilinearFusionUnit(6, 4, heads=2), ASGate(4)
    guidance, guided, hidden = torch.randn(2, 6), torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    copies = [t.clone() for t in (guidance, guided, hidden)]
    with torch.no_grad():
        fused = unit(guidance, guided)
        fused_copy = fused.clone()
        gate(fused, hidden)
    for tensor, copy in zip((guidance, guided, hidden, fused), (*copies, fused_copy), strict=True):
        assert torch.equal(tensor, copy)


def test_fused_functions_save_their_output_unchanged() -> None:
    """The autograd Functions' forwards run without recording (in place) but the tensors they save stay valid."""
    torch.manual_seed(0)
    unit, gate = BilinearFusionUnit(6, 4, heads=2), ASGate(4)
    guidance = torch.randn(2, 6, requires_grad=True)
    guided = torch.randn(2, 4, 3, 3, requires_grad=True)
    proj_g, proj_y = unit.proj_guidance, unit.proj_guided
    fused = FusedFusion.apply(guidance, guided, proj_g.weight, proj_g.bias, proj_y.weight, proj_y.bias, 2)
    new_hidden, _ = FusedASGate.apply(
        fused, guided, gate.conv_z.weight, gate.conv_z.bias, gate.conv_g.weight, gate.conv_g.bias
    )
    new_hidden.sum().backward()  # autograd checks the saved tensors' versions: in-place writes would fail here
    assert guidance.grad is not None and guided.grad is not None


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_concat_with_product_is_torch_cat_in_values_and_layout(memory_format: torch.memory_format) -> None:
    """``[F; F * z]`` written in place equals ``torch.cat`` bit for bit, in the memory format ``cat`` gives."""
    torch.manual_seed(0)
    fused, selection = (torch.randn(2, 4, 3, 5).contiguous(memory_format=memory_format) for _ in range(2))
    expected = torch.cat([fused, fused * selection], dim=1)
    with torch.no_grad():
        stacked = concat_with_product(fused, selection)
    assert torch.equal(stacked, expected) and stacked.stride() == expected.stride()
