"""Dtypes, autocast, devices, factory arguments and state_dict stability."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from igf import GATES, ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(dtype: torch.dtype = torch.float32, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    guidance = torch.randn(2, 8, generator=generator).to(device, dtype)
    guided = torch.randn(2, 6, 7, 5, generator=generator).to(device, dtype)
    return guidance, guided


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("gate", sorted(GATES))
def test_factory_dtype_and_device(device: str, dtype: torch.dtype, gate: str) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(8, 6, num_layers=3, gate=gate, device=device, dtype=dtype)
    assert all(p.dtype == dtype and p.device.type == device for p in module.parameters())
    out = module(*_inputs(dtype, device), return_intermediates=True)
    assert out.output.dtype == dtype and out.output.device.type == device
    assert all(g.dtype == dtype for g in out.gates)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("gate", sorted(GATES))
def test_autocast_is_close_to_float32(autocast_dtype: torch.dtype, gate: str) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(8, 6, num_layers=3, gate=gate)
    guidance, guided = _inputs()
    expected = module(guidance, guided)
    with torch.autocast("cpu", dtype=autocast_dtype):
        out = module(guidance, guided, return_intermediates=True)
    assert out.output.dtype == autocast_dtype
    tolerance = 0.05 if autocast_dtype == torch.bfloat16 else 0.01
    assert (out.output.float() - expected).abs().max() <= tolerance * expected.abs().max()


def test_convlstm_cell_follows_hidden_dtype_and_device() -> None:
    gate = ConvLSTMGate(3, dtype=torch.float64)
    hidden, cell = gate(torch.randn(1, 3, 2, 2, dtype=torch.float64), torch.randn(1, 3, 2, 2, dtype=torch.float64))
    assert cell.dtype == torch.float64 and cell.device == hidden.device
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, cell = ConvLSTMGate(3)(torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2))
    assert cell.dtype == hidden.dtype == torch.bfloat16


def test_meta_device_construction_and_materialisation() -> None:
    module = IterativeGatedFusion(768, 1024, hidden_channels=512, guidance_hidden_channels=256, device="meta")
    assert all(p.is_meta for p in module.parameters())
    out = module(torch.empty(6, 768, device="meta"), torch.empty(6, 1024, 60, 60, device="meta"))
    assert out.shape == (6, 1024, 60, 60)
    module.to_empty(device="cpu")
    assert not any(p.is_meta for p in module.parameters())


def test_state_dict_keys_are_stable() -> None:
    module = IterativeGatedFusion(4, 3, num_layers=2, gate="asgate")
    assert sorted(module.state_dict()) == sorted(
        [f"{name}.{kind}" for name in ("guidance_proj", "guided_proj", "out_proj") for kind in ("weight", "bias")]
        + [
            f"fusions.{t}.{proj}.{kind}"
            for t in range(2)
            for proj in ("proj_guidance", "proj_guided")
            for kind in ("weight", "bias")
        ]
        + ["gates.0.conv_z.weight", "gates.0.conv_z.bias", "gates.0.conv_g.weight", "gates.0.conv_g.bias"]
    )
    assert set(ConvGRUGate(2).state_dict()) == {
        "conv_gates.weight",
        "conv_gates.bias",
        "conv_candidate.weight",
        "conv_candidate.bias",
    }
    assert set(ConvLSTMGate(2).state_dict()) == {"conv.weight", "conv.bias"}
    assert set(ASGate(2).state_dict()) == {"conv_z.weight", "conv_z.bias", "conv_g.weight", "conv_g.bias"}
    unit = BilinearFusionUnit(3, 2, heads=5)
    assert unit.proj_guidance.weight.shape == (10, 3, 1, 1) and unit.proj_guided.weight.shape == (10, 2, 1, 1)


@pytest.mark.parametrize("gate", sorted(GATES))
def test_state_dict_round_trip(gate: str, tmp_path) -> None:
    torch.manual_seed(0)
    source = IterativeGatedFusion(8, 6, num_layers=3, gate=gate)
    torch.save(source.state_dict(), tmp_path / "igf.pt")
    torch.manual_seed(1)
    target = IterativeGatedFusion(8, 6, num_layers=3, gate=gate)
    target.load_state_dict(torch.load(tmp_path / "igf.pt", weights_only=True))
    guidance, guided = _inputs()
    assert_close(target(guidance, guided), source(guidance, guided), rtol=0, atol=0)


def test_custom_gate_factory_is_used() -> None:
    built: list[int] = []

    class ResidualGate(torch.nn.Module):
        def __init__(self, channels: int, *, kernel_size: int, device=None, dtype=None) -> None:
            super().__init__()
            built.append(channels)
            self.inner = ASGate(channels, kernel_size=kernel_size, device=device, dtype=dtype)

        def forward(self, fused, hidden, cell=None):
            new_hidden, _ = self.inner(fused, hidden)
            return hidden + new_hidden, None

    module = IterativeGatedFusion(4, 6, num_layers=3, gate=ResidualGate, hidden_channels=5)
    assert built == [5, 5] and all(isinstance(g, ResidualGate) for g in module.gates)
    assert module(torch.randn(2, 4), torch.randn(2, 6, 3, 3)).shape == (2, 6, 3, 3)


def test_vector_guidance_is_never_tiled() -> None:
    """A vector guidance costs fewer FLOPs than the same guidance tiled to a map (same result)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = IterativeGatedFusion(64, 32, num_layers=3)
    guided = torch.randn(2, 32, 16, 16)
    vector = torch.randn(2, 64)
    counts = []
    for guidance in (vector, vector[:, :, None, None].expand(-1, -1, 16, 16)):
        with FlopCounterMode(display=False) as counter:
            module(guidance, guided)
        counts.append(counter.get_total_flops())
    per_pixel_guidance_flops = 2 * 2 * 16 * 16 * (64 * 32 + 3 * 32 * 5 * 32)  # guidance_proj + 3 proj_guidance
    assert counts[1] - counts[0] >= 0.99 * per_pixel_guidance_flops
