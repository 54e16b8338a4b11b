"""Build a fusion layer by name, so that a model swaps IGF for a peer with one setting."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from igf.concat import ConcatFusion
from igf.film import FiLM
from igf.iterative import IterativeGatedFusion
from igf.pixel_word_attention import PixelWordAttention
from igf.protocol import FusionLayer

__all__ = ["FUSION_LAYERS", "build_fusion_layer"]

_CLASSES: dict[str, type[IterativeGatedFusion] | type[FiLM] | type[PixelWordAttention] | type[ConcatFusion]] = {
    "igf": IterativeGatedFusion,
    "film": FiLM,
    "pwam": PixelWordAttention,
    "concat": ConcatFusion,
}

FUSION_LAYERS: tuple[str, ...] = tuple(_CLASSES)
"""The names :func:`build_fusion_layer` accepts: ``"igf"``, ``"film"``, ``"pwam"``, ``"concat"``."""

# Every class above satisfies the FusionLayer protocol (checked by mypy here).
_SATISFY_PROTOCOL: tuple[type[FusionLayer], ...] = (IterativeGatedFusion, FiLM, PixelWordAttention, ConcatFusion)


def build_fusion_layer(
    name: str,
    *,
    guidance_channels: int,
    guided_channels: int,
    out_channels: int | None = None,
    spatial_dims: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **options: Any,
) -> nn.Module:
    """Build the fusion layer ``name``; every one is called as ``layer(guidance, guided, guidance_mask=None)``.

    Args:
        name: ``"igf"`` (:class:`~igf.IterativeGatedFusion`), ``"film"`` (:class:`~igf.FiLM`),
            ``"pwam"`` (:class:`~igf.PixelWordAttention`) or ``"concat"`` (:class:`~igf.ConcatFusion`).
        guidance_channels: :math:`C_x`, channels of the guidance.
        guided_channels: :math:`C_y`, channels of the guided map.
        out_channels: Channels of the output. Default: ``guided_channels``.
        spatial_dims: Rank of the guided map (1, 2 or 3); ``None`` leaves the layer's default (2)
            and is not passed on.
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.
        **options: The layer's own keyword arguments, e.g. ``num_layers=3, hidden_channels=64`` for
            ``"igf"``, ``key_channels, identity_init`` for ``"pwam"``, ``hidden_channels, kernel_size``
            for ``"concat"``.

    Returns:
        The layer, an ``nn.Module`` that satisfies :class:`~igf.FusionLayer`.

    Raises:
        ValueError: An unknown ``name`` (the message lists :data:`FUSION_LAYERS`), or what the layer's
            constructor raises.
        TypeError: An option the layer does not take.

    Example:
        >>> import torch
        >>> from igf import FUSION_LAYERS, build_fusion_layer
        >>> for name in FUSION_LAYERS:
        ...     layer = build_fusion_layer(name, guidance_channels=16, guided_channels=8, out_channels=4)
        ...     print(name, type(layer).__name__, tuple(layer(torch.randn(2, 16), torch.randn(2, 8, 5, 5)).shape))
        igf IterativeGatedFusion (2, 4, 5, 5)
        film FiLM (2, 4, 5, 5)
        pwam PixelWordAttention (2, 4, 5, 5)
        concat ConcatFusion (2, 4, 5, 5)
    """
    if not isinstance(name, str) or name not in _CLASSES:
        raise ValueError(f"name must be one of {list(FUSION_LAYERS)}, got {name!r}")
    if spatial_dims is not None:
        options["spatial_dims"] = spatial_dims
    layer: nn.Module = _CLASSES[name](
        guidance_channels, guided_channels, out_channels=out_channels, device=device, dtype=dtype, **options
    )
    return layer
