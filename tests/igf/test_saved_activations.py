"""Saved activations: what one IGF training forward keeps for backward, fused and checkpointed.

The measurement and the shapes it is quoted at are on the docs' page "How this project reproduces the paper".
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from igf import IterativeGatedFusion
from igf.saved_activations import record_saved, saved_bytes

# (guidance shape without batch, C_y, C'_v = C'_l, H = W, out) at batch 2
QUOTED_SHAPES = {"E3-like": ((256,), 128, 64, 30, 128), "E_dec-like": ((64, 15, 15), 32, 32, 60, 32)}
# the four DCMFNet placements as the CPU benchmarks reduce them (benchmarks/cases.py)
PLACEMENTS = {
    "E3": ((64,), 256, 128, 15, 256),
    "E4": ((64,), 512, 256, 15, 512),
    "E_enc": ((64,), 64, 64, 15, 64),
    "E_dec": ((64, 15, 15), 64, 32, 30, 32),
}


def _maps(shape: tuple, *, fused: bool, checkpoint: bool = False) -> float:
    guidance_shape, guided_channels, hidden, size, out = shape
    torch.manual_seed(0)
    module = IterativeGatedFusion(
        guidance_shape[0],
        guided_channels,
        hidden_channels=hidden,
        guidance_hidden_channels=hidden,
        out_channels=out,
        fused=fused,
        checkpoint=checkpoint,
    )
    guidance = torch.randn(2, *guidance_shape, requires_grad=True)
    guided = torch.randn(2, guided_channels, size, size, requires_grad=True)
    return saved_bytes(module, lambda: module(guidance, guided)) / (2 * hidden * size * size * 4)


@pytest.mark.parametrize(("name", "limit"), [("E3-like", 35), ("E_dec-like", 40)])
def test_fused_step_keeps_at_most_the_target_maps(name: str, limit: float) -> None:
    plain, fused = _maps(QUOTED_SHAPES[name], fused=False), _maps(QUOTED_SHAPES[name], fused=True)
    assert fused <= limit < plain


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_checkpointing_cuts_saved_activations_by_60_percent(name: str) -> None:
    without = _maps(PLACEMENTS[name], fused=True)
    with_checkpoint = _maps(PLACEMENTS[name], fused=True, checkpoint=True)
    assert with_checkpoint <= 0.4 * without


def test_parameters_are_excluded_and_autocast_weight_copies_counted_apart() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh())
    images = torch.randn(2, 3, 6, 6)
    with record_saved(model, [("conv", model[0])]) as fp32:
        model(images)
    # conv input (2*3*6*6) and tanh output (2*4*4*4), float32; the weight is a parameter
    assert fp32.total == (216 + 128) * 4 and not fp32.weight_copies
    assert fp32.per_owner() == {"conv": 216 * 4, "": 128 * 4}
    with torch.autocast("cpu", dtype=torch.bfloat16), record_saved(model) as bf16:
        model(images)
    assert bf16.total == (216 + 128) * 2
    assert sum(bf16.weight_copies.values()) == 4 * 3 * 3 * 3 * 2
