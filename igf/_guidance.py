"""The three kinds of guidance a fusion layer takes, and the input checks shared by the peer layers.

A guidance is

- a **vector** ``(B, C_x)`` (e.g. a sentence embedding), spatially constant;
- a **token sequence** ``(B, T, C_x)`` with an optional padding mask ``(B, T)`` (e.g. word features);
- a **map** ``(B, C_x, *spatial)`` of the guided map's rank, of any size (e.g. coarser visual features).

For ``spatial_dims=1`` a map ``(B, C_x, t)`` and a token sequence ``(B, T, C_x)`` both have three
dimensions; a layer's ``guidance_1d`` (``"tokens"`` by default, or ``"map"``) says which it reads,
as :class:`~igf.IterativeGatedFusion`'s does.

Every check runs on shapes and dtypes only, as :mod:`igf._validation` does.
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from igf._validation import (
    check_channels,
    check_choice,
    check_guidance_mask,
    check_parameter_dtype,
    check_same_batch,
    check_tensor,
)
from igf.functional import resize_to
from igf.spatial import guided_layout

__all__ = [
    "Guidance1D",
    "GuidanceKind",
    "check_fusion_inputs",
    "check_guidance_1d",
    "guidance_kind",
    "project_guidance",
]

GuidanceKind = Literal["vector", "tokens", "map"]
Guidance1D = Literal["tokens", "map"]

_MAP_AXES = {1: "t", 2: "h, w", 3: "d, h, w"}


def check_guidance_1d(guidance_1d: object, spatial_dims: int) -> Guidance1D:
    """Return ``guidance_1d`` (``"tokens"`` or ``"map"``); ``"map"`` only with ``spatial_dims=1``."""
    check_choice("guidance_1d", guidance_1d, ("tokens", "map"))
    if guidance_1d == "map" and spatial_dims != 1:
        raise ValueError(
            f"guidance_1d='map' is for spatial_dims=1 (a 1-D guidance map), got spatial_dims={spatial_dims}"
        )
    return "map" if guidance_1d == "map" else "tokens"


def guidance_kind(guidance: Tensor, guidance_1d: Guidance1D = "tokens") -> GuidanceKind:
    """``"vector"``, ``"tokens"`` or ``"map"`` by the number of dimensions (see the module docstring)."""
    if guidance.dim() == 2:
        return "vector"
    if guidance.dim() == 3 and guidance_1d == "tokens":
        return "tokens"
    return "map"


def _guidance_ndims_and_layout(spatial_dims: int, guidance_1d: Guidance1D) -> tuple[tuple[int, ...], str]:
    if spatial_dims == 1:
        return (2, 3), "(B, C_x) or " + ("(B, T, C_x)" if guidance_1d == "tokens" else "(B, C_x, t)")
    return (2, 3, 2 + spatial_dims), f"(B, C_x), (B, T, C_x) or (B, C_x, {_MAP_AXES[spatial_dims]})"


def check_fusion_inputs(
    guidance: Tensor,
    guided: Tensor,
    guidance_mask: Tensor | None,
    *,
    guidance_channels: int,
    guided_channels: int,
    spatial_dims: int,
    guidance_1d: Guidance1D,
    guidance_weight: Tensor,
    guided_weight: Tensor,
) -> None:
    """Check a fusion layer's inputs against its constructor, in the order and words of IGF's checks.

    Args:
        guidance: Vector, token sequence or map (see the module docstring).
        guided: ``(B, C_y, *spatial)`` with ``spatial_dims`` spatial dimensions.
        guidance_mask: ``(B, T)`` bool or integer padding mask of a token sequence, or ``None``.
        guidance_channels: :math:`C_x` as constructed.
        guided_channels: :math:`C_y` as constructed.
        spatial_dims: The layer's rank, 1 to 3.
        guidance_1d: With ``spatial_dims=1``, whether a three-dim guidance is ``"tokens"`` or a ``"map"``.
        guidance_weight: A parameter that first reads the guidance (for the dtype check).
        guided_weight: A parameter that first reads the guided map (for the dtype check).

    Raises:
        ValueError: Wrong number of dims, channels or batch size, a zero-size dimension other than the batch,
            or a mask that does not match a token-sequence guidance.
        TypeError: Non-tensor or non-floating-point inputs, a mask that is not bool or integer, or a dtype that
            differs from the parameters' outside autocast.
    """
    check_tensor(
        "guided",
        guided,
        ndims=(2 + spatial_dims,),
        layout=guided_layout(spatial_dims, "C_y"),
        spatial_dims=spatial_dims,
    )
    ndims, layout = _guidance_ndims_and_layout(spatial_dims, guidance_1d)
    check_tensor("guidance", guidance, ndims=ndims, layout=layout, spatial_dims=spatial_dims)
    is_tokens = guidance_kind(guidance, guidance_1d) == "tokens"
    if guidance_mask is not None:
        if not is_tokens:  # a 1-D map has three dims too
            raise ValueError(
                f"guidance_mask is only for a token-sequence guidance (B, T, C_x), got guidance of shape "
                f"{tuple(guidance.shape)}"
            )
        check_guidance_mask(guidance_mask, guidance)
    check_channels("guided", guided, guided_channels)
    check_channels("guidance", guidance, guidance_channels, dim=2 if is_tokens else 1)
    check_same_batch("guidance", guidance, "guided", guided)
    check_parameter_dtype("guided", guided, guided_weight)
    check_parameter_dtype("guidance", guidance, guidance_weight)


def project_guidance(conv: nn.Module, guidance: Tensor, size: tuple[int, ...]) -> Tensor:
    """A 1x1 convolution of a vector ``(B, C_x)`` or a map ``(B, C_x, *spatial)``, the map resized to ``size``.

    A vector is projected with a matrix product and stays ``(B, C_out)`` (it is never tiled); a map whose
    every spatial size is 1 is such a vector. A map is projected at the lower of its own and the target
    resolution: linear interpolation and a 1x1 convolution commute (the interpolation weights sum to one),
    so both orders give the same map.

    Args:
        conv: A ``nn.Conv1d/2d/3d`` with kernel size 1 and a bias.
        guidance: ``(B, C_x)`` or ``(B, C_x, *spatial)`` (not checked).
        size: The guided map's spatial size.

    Returns:
        ``(B, C_out)`` for a vector, ``(B, C_out, *size)`` for a map.
    """
    assert isinstance(conv, nn.modules.conv._ConvNd)
    weight, bias = conv.weight, conv.bias
    if guidance.dim() > 2 and all(s == 1 for s in guidance.shape[2:]):
        guidance = guidance.flatten(1)  # a map of one position resizes to a constant map: it is a vector
    if guidance.dim() == 2:
        return F.linear(guidance, weight.flatten(1), bias)
    if math.prod(guidance.shape[2:]) < math.prod(size):
        projected: Tensor = conv(guidance)
        return resize_to(projected, size)
    resized: Tensor = conv(resize_to(guidance, size))
    return resized
