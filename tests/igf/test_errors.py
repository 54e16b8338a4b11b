"""Bad input raises ValueError/TypeError naming the expected and the received value, before any conv runs."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch

from igf import ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion


def _igf() -> IterativeGatedFusion:
    return IterativeGatedFusion(8, 6, num_layers=2)


GOOD_GUIDANCE, GOOD_GUIDED = torch.randn(2, 8), torch.randn(2, 6, 4, 4)

CONSTRUCTOR_ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: IterativeGatedFusion(8, 6, num_layers=0), ValueError, "num_layers must be a positive int, got 0"),
    (lambda: IterativeGatedFusion(8, 6, num_layers=2.0), TypeError, "num_layers must be a positive int, got float"),
    (lambda: IterativeGatedFusion(8, 6, heads=-1), ValueError, "heads must be a positive int, got -1"),
    (lambda: IterativeGatedFusion(0, 6), ValueError, "guidance_channels must be a positive int, got 0"),
    (lambda: IterativeGatedFusion(8, 0), ValueError, "guided_channels must be a positive int, got 0"),
    (lambda: IterativeGatedFusion(8, 6, hidden_channels=0), ValueError, "hidden_channels must be a positive int"),
    (
        lambda: IterativeGatedFusion(8, 6, gate="lstm"),
        ValueError,
        "gate must be one of ['asgate', 'convgru', 'convlstm'], got 'lstm'",
    ),
    (lambda: IterativeGatedFusion(8, 6, gate=3), TypeError, "gate must be one of"),
    (
        lambda: IterativeGatedFusion(8, 6, output_mode="all"),
        ValueError,
        "output_mode must be one of ['all_fusions', 'last_fusion', 'last_gate', 'fusions_and_last_gate'], got 'all'",
    ),
    (lambda: IterativeGatedFusion(8, 6, kernel_size=2), ValueError, "kernel_size must be odd"),
    (lambda: IterativeGatedFusion(8, 6, num_layers=True), TypeError, "num_layers must be a positive int, got bool"),
    (lambda: ASGate(0), ValueError, "channels must be a positive int, got 0"),
    (lambda: ConvGRUGate(4, kernel_size=4), ValueError, "kernel_size must be odd"),
    (lambda: ConvLSTMGate(-2), ValueError, "channels must be a positive int, got -2"),
    (lambda: BilinearFusionUnit(4, 4, heads=0), ValueError, "heads must be a positive int, got 0"),
]


@pytest.mark.parametrize(("build", "error", "message"), CONSTRUCTOR_ERRORS)
def test_constructor_errors(build: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        build()


FORWARD_ERRORS: list[tuple[object, object, type[Exception], str]] = [
    (
        GOOD_GUIDANCE,
        torch.randn(6, 4, 4),
        ValueError,
        "guided must have shape (B, C_y, H, W) (4 dims) for spatial_dims=2, got 3 dims",
    ),
    (
        GOOD_GUIDANCE,
        torch.randn(2, 5, 4, 4),
        ValueError,
        "guided must have 6 channels in dim 1 (as constructed), got 5",
    ),
    (torch.randn(2, 7), GOOD_GUIDED, ValueError, "guidance must have 8 channels in dim 1 (as constructed), got 7"),
    (torch.randn(3, 8), GOOD_GUIDED, ValueError, "must have the same batch size, got 3 (shape (3, 8)) and 2"),
    (torch.randn(1, 8), GOOD_GUIDED, ValueError, "must have the same batch size, got 1"),
    (torch.randn(2, 5, 7), GOOD_GUIDED, ValueError, "guidance must have 8 channels in dim 2 (as constructed), got 7"),
    (
        torch.randn(8),
        GOOD_GUIDED,
        ValueError,
        "guidance must have shape (B, C_x), (B, T, C_x) or (B, C_x, h, w) (2 or 3 or 4 dims) for spatial_dims=2, got 1",
    ),
    (
        GOOD_GUIDANCE,
        torch.randn(2, 6, 0, 4),
        ValueError,
        "guided must not have a zero-size dimension, got shape (2, 6, 0, 4)",
    ),
    (torch.randn(2, 8, 0, 3), GOOD_GUIDED, ValueError, "guidance must not have a zero-size dimension"),
    (
        GOOD_GUIDANCE,
        torch.zeros(2, 6, 4, 4, dtype=torch.long),
        TypeError,
        "guided must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        torch.zeros(2, 8, dtype=torch.int32),
        GOOD_GUIDED,
        TypeError,
        "guidance must be a floating-point tensor, got dtype torch.int32",
    ),
    (
        GOOD_GUIDANCE,
        GOOD_GUIDED.double(),
        TypeError,
        "guided has dtype torch.float64 but the module's parameters are torch.float32",
    ),
    (
        [0.0] * 8,
        GOOD_GUIDED,
        TypeError,
        "guidance must be a torch.Tensor of shape (B, C_x), (B, T, C_x) or (B, C_x, h, w), got list",
    ),
]


@pytest.mark.parametrize(("guidance", "guided", "error", "message"), FORWARD_ERRORS)
def test_igf_forward_errors(guidance: object, guided: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _igf()(guidance, guided)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (
            (torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2)),
            ValueError,
            "fusion must have 3 channels in dim 1 (as constructed), got 4",
        ),
        (
            (torch.randn(2, 3), torch.randn(2, 3, 2, 2)),
            ValueError,
            "fusion must have shape (B, C, H, W) (4 dims) for spatial_dims=2, got 2 dims",
        ),
        (
            (torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 3)),
            ValueError,
            "hidden must have the shape of fusion (2, 3, 2, 2), got (2, 3, 2, 3)",
        ),
        ((torch.randn(2, 3, 2, 2), torch.randn(1, 3, 2, 2)), ValueError, "hidden must have the shape of fusion"),
        ((torch.randn(2, 3, 2, 2).int(), torch.randn(2, 3, 2, 2)), TypeError, "fusion must be a floating-point tensor"),
    ],
)
@pytest.mark.parametrize("gate_class", [ASGate, ConvGRUGate, ConvLSTMGate])
def test_gate_forward_errors(gate_class: type, args: tuple, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        gate_class(3)(*args)


def test_convlstm_cell_shape_error() -> None:
    x = torch.randn(1, 3, 2, 2)
    with pytest.raises(
        ValueError, match=re.escape("cell must have the shape of fusion (1, 3, 2, 2), got (1, 3, 2, 1)")
    ):
        ConvLSTMGate(3)(x, x, torch.randn(1, 3, 2, 1))


@pytest.mark.parametrize(
    ("guidance", "guided", "message"),
    [
        (
            torch.randn(2, 4, 3, 3),
            torch.randn(2, 5, 4, 4),
            "guidance and guided must have the same spatial size, got (3, 3) and (4, 4)",
        ),
        (torch.randn(3, 4), torch.randn(2, 5, 4, 4), "guidance and guided must have the same batch size, got 3"),
        (torch.randn(2, 5), torch.randn(2, 5, 4, 4), "guidance must have 4 channels in dim 1 (as constructed), got 5"),
    ],
)
def test_fusion_unit_errors(guidance: torch.Tensor, guided: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        BilinearFusionUnit(4, 5)(guidance, guided)


TOKENS = torch.randn(2, 5, 8)


@pytest.mark.parametrize(
    ("guidance", "mask", "error", "message"),
    [
        (
            TOKENS,
            torch.ones(2, 4, dtype=torch.bool),
            ValueError,
            "guidance_mask must have shape (B, T) = (2, 5) to match the guidance, got (2, 4)",
        ),
        (
            TOKENS,
            torch.ones(2, 5),
            TypeError,
            "guidance_mask must be a bool or integer tensor (nonzero = real token), got torch.float32",
        ),
        (TOKENS, [[1] * 5] * 2, TypeError, "guidance_mask must be a torch.Tensor of shape (B, T), got list"),
        (
            GOOD_GUIDANCE,
            torch.ones(2, 8, dtype=torch.bool),
            ValueError,
            "guidance_mask is only for a token-sequence guidance (B, T, C_x), got guidance of shape (2, 8)",
        ),
        (
            torch.randn(3, 5, 8),
            torch.ones(3, 5, dtype=torch.bool),
            ValueError,
            "guidance and guided must have the same batch size, got 3",
        ),
    ],
)
def test_guidance_mask_errors(guidance: torch.Tensor, mask: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        _igf()(guidance, GOOD_GUIDED, guidance_mask=mask)


@pytest.mark.parametrize(
    ("guidance_dtype", "module_dtype"), [(torch.float64, torch.float32), (torch.float32, torch.float64)]
)
def test_autocast_cannot_combine_float64_with_other_dtypes(
    guidance_dtype: torch.dtype, module_dtype: torch.dtype
) -> None:
    """Autocast leaves float64 alone: the mix is refused up front, naming both dtypes."""
    module = IterativeGatedFusion(8, 6, num_layers=2, dtype=module_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError) as error:
        module(GOOD_GUIDANCE.to(guidance_dtype), GOOD_GUIDED.to(module_dtype))
    message = str(error.value)
    assert str(guidance_dtype) in message and str(module_dtype) in message and "autocast" in message
