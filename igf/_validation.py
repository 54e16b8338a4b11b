"""Input checks shared by the igf modules.

Every check runs on shapes and dtypes only (no data-dependent control flow), so
they cost nothing at run time and compile into guards under ``torch.compile``.
Each raises a ``ValueError`` or ``TypeError`` that names what was expected and
what was received, before any convolution sees the tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "check_channels",
    "check_choice",
    "check_guidance_mask",
    "check_parameter_dtype",
    "check_positive_int",
    "check_same_batch",
    "check_same_spatial",
    "check_tensor",
]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is a positive ``int``; raise otherwise.

    Raises:
        TypeError: ``value`` is not an ``int`` (``bool`` is rejected too).
        ValueError: ``value`` is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; raise a ``ValueError`` listing them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_tensor(
    name: str, tensor: object, *, ndims: Sequence[int], layout: str, spatial_dims: int | None = None
) -> Tensor:
    """Check that ``tensor`` is a floating-point tensor with one of ``ndims`` dimensions and no empty dim but B.

    A batch of size 0 (dimension 0) is accepted, as ``nn.Conv2d`` accepts it: uneven data-parallel shards
    and filtered batches produce it, and a layer then returns an empty output of the right shape.

    Args:
        name: Argument name used in the error message.
        tensor: The value to check.
        ndims: Allowed numbers of dimensions.
        layout: Human-readable expected shape, e.g. ``"(B, C, H, W)"``.
        spatial_dims: The layer's spatial rank, named in the message where given.

    Raises:
        TypeError: Not a tensor, or not a floating-point dtype.
        ValueError: Wrong number of dimensions or a zero-size dimension other than the batch.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if tensor.dim() not in ndims:
        rank = "" if spatial_dims is None else f" for spatial_dims={spatial_dims}"
        raise ValueError(
            f"{name} must have shape {layout} ({' or '.join(map(str, ndims))} dims){rank}, "
            f"got {tensor.dim()} dims with shape {tuple(tensor.shape)}"
        )
    if any(size == 0 for size in tensor.shape[1:]):
        raise ValueError(f"{name} must not have a zero-size dimension, got shape {tuple(tensor.shape)}")
    return tensor


def check_channels(name: str, tensor: Tensor, expected: int, *, dim: int = 1) -> None:
    """Raise a ``ValueError`` unless ``tensor.shape[dim] == expected``."""
    if tensor.shape[dim] != expected:
        raise ValueError(
            f"{name} must have {expected} channels in dim {dim} (as constructed), "
            f"got {tensor.shape[dim]} in shape {tuple(tensor.shape)}"
        )


def check_same_batch(first_name: str, first: Tensor, second_name: str, second: Tensor) -> None:
    """Raise a ``ValueError`` unless both tensors have the same batch size (no silent broadcast)."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"{first_name} and {second_name} must have the same batch size, "
            f"got {first.shape[0]} (shape {tuple(first.shape)}) and "
            f"{second.shape[0]} (shape {tuple(second.shape)})"
        )


def check_same_spatial(first_name: str, first: Tensor, second_name: str, second: Tensor) -> None:
    """Raise a ``ValueError`` unless both maps ``(B, C, *spatial)`` share their spatial size."""
    if first.shape[2:] != second.shape[2:]:
        raise ValueError(
            f"{first_name} and {second_name} must have the same spatial size, "
            f"got {tuple(first.shape[2:])} and {tuple(second.shape[2:])}"
        )


def check_parameter_dtype(name: str, tensor: Tensor, parameter: Tensor) -> None:
    """Raise a ``TypeError`` if ``tensor`` and the module's weights differ in a dtype nothing will reconcile.

    Outside autocast the dtypes must be equal. Under ``torch.autocast`` mixed dtypes
    are resolved by autocast, except float64: autocast casts float32, float16 and
    bfloat16 to its dtype but leaves float64 alone, so a float64 input with lower
    precision parameters (or the reverse) would fail inside a convolution.
    """
    if tensor.dtype == parameter.dtype:
        return
    device_type = tensor.device.type
    if not (torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)):
        raise TypeError(
            f"{name} has dtype {tensor.dtype} but the module's parameters are {parameter.dtype}; "
            f"convert one of them (module.to(dtype)) or run under torch.autocast"
        )
    if torch.float64 in (tensor.dtype, parameter.dtype):
        raise TypeError(
            f"{name} has dtype {tensor.dtype} and the module's parameters are {parameter.dtype}: "
            f"torch.autocast({device_type!r}, dtype={torch.get_autocast_dtype(device_type)}) does not cast "
            f"float64, so they cannot be combined; convert {name} to {parameter.dtype}"
        )


def check_guidance_mask(mask: object, guidance: Tensor, *, is_token_sequence: bool | None = None) -> None:
    """Check a padding mask ``(B, T)`` (bool or integer, nonzero = real token) against a ``(B, T, C)`` guidance.

    Args:
        mask: The value to check.
        guidance: The guidance it masks.
        is_token_sequence: Whether ``guidance`` is a token sequence; default: whether it has three dims
            (a layer where a 1-D map has three dims too says which it is).

    Raises:
        TypeError: ``mask`` is not a bool or integer tensor.
        ValueError: A mask for a guidance that is not a token sequence, or a mask shape other than ``(B, T)``.
    """
    if not (guidance.dim() == 3 if is_token_sequence is None else is_token_sequence):
        raise ValueError(
            f"guidance_mask is only for a token-sequence guidance (B, T, C_x), got guidance of shape "
            f"{tuple(guidance.shape)}"
        )
    if not isinstance(mask, Tensor):
        raise TypeError(f"guidance_mask must be a torch.Tensor of shape (B, T), got {type(mask).__name__}")
    if mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"guidance_mask must be a bool or integer tensor (nonzero = real token), got {mask.dtype}")
    if mask.shape != guidance.shape[:2]:
        raise ValueError(
            f"guidance_mask must have shape (B, T) = {tuple(guidance.shape[:2])} to match the guidance, "
            f"got {tuple(mask.shape)}"
        )
