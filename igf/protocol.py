"""The call shape every igf fusion layer shares, as a :class:`typing.Protocol`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["FusionLayer"]


@runtime_checkable
class FusionLayer(Protocol):
    """A fusion layer: a guidance steers a guided map, and the result is shaped like the guided map.

    :class:`~igf.IterativeGatedFusion`, :class:`~igf.FiLM`, :class:`~igf.PixelWordAttention` and
    :class:`~igf.ConcatFusion` satisfy it, so a model that types its fusion sites as ``FusionLayer``
    (and builds them with :func:`~igf.build_fusion_layer`) swaps one for another with one setting.

    The call ``layer(guidance, guided, guidance_mask=mask)`` takes

    - ``guidance``: a vector ``(B, C_x)``, a token sequence ``(B, T, C_x)``, or a map
      ``(B, C_x, *spatial')`` of any size (``(B, C_x, h, w)`` in 2-D);
    - ``guided``: ``(B, C_y, *spatial)`` (``(B, C_y, H, W)`` in 2-D);
    - ``guidance_mask`` (keyword only): ``(B, T)`` padding mask of a token sequence, nonzero = real token,

    and returns ``(B, out_channels, *spatial)``. ``isinstance(layer, FusionLayer)`` checks that the
    attributes below exist and that the object is callable; it does not check the signature.

    Attributes:
        guidance_channels: :math:`C_x`.
        guided_channels: :math:`C_y`.
        out_channels: Channels of the output.

    Example:
        >>> from igf import FiLM, FusionLayer, IterativeGatedFusion
        >>> isinstance(FiLM(8, 4), FusionLayer), isinstance(IterativeGatedFusion(8, 4), FusionLayer)
        (True, True)
    """

    guidance_channels: int
    guided_channels: int
    out_channels: int

    def __call__(self, guidance: Tensor, guided: Tensor, *, guidance_mask: Tensor | None = None) -> Tensor: ...
