"""The multi-head bilinear fusion unit of IGF (paper Eq. 2, Fig. 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igf._autocast import autocast_cast, autocast_off
from igf._validation import (
    check_channels,
    check_parameter_dtype,
    check_positive_int,
    check_same_batch,
    check_same_spatial,
    check_tensor,
)
from igf.cpu_tanh import tanh_of_temporary
from igf.fused import FusedFusion, broadcast_vector, fused_path_applies, sum_heads
from igf.spatial import check_spatial_dims, conv_class, guided_layout

__all__ = ["BilinearFusionUnit"]


class BilinearFusionUnit(nn.Module):
    r"""Multi-head bilinear (MUTAN-style) fusion of a guidance and a guided feature.

    Computes Eq. 2 of the paper for all heads at once:

    .. math::

        F = \tanh\Big(\sum_{i=1}^{h} \tanh(W_{1,i}\, x) \odot \tanh(W_{2,i}\, G)\Big)

    Each of :math:`W_1` and :math:`W_2` is stored as one dense 1x1 convolution
    with ``heads * guided_channels`` outputs laid out head-major ``(h c)``;
    the head sum unflattens ``(h c)`` and sums over ``h``. Where autograd does not
    record (inference), the ``tanh`` and the product run in place: same values,
    no fresh ``h``-times-wide tensor per operation.

    A vector guidance ``(B, C_l)`` is projected with a matrix product and
    broadcast over the map; it is never tiled to a map first.

    The guided map may have one, two or three spatial dimensions (``spatial_dims``):
    ``(B, C, T)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)``; the projections are
    1x1 convolutions of that rank. Shapes below are written for ``spatial_dims=2``.

    With ``fused=True`` (default) a training forward runs as
    :class:`igf.fused.FusedFusion`: it keeps only ``x``, ``G`` and ``F`` for the
    backward pass and recomputes the ``h``-times-wide tensors there (same values).

    Args:
        guidance_channels: :math:`C'_l`, channels of the guidance ``x``.
        guided_channels: :math:`C'_v`, channels of the guided ``G`` and of the output.
        heads: Number of bilinear heads :math:`h` (paper: 5).
        spatial_dims: 1, 2 (default) or 3: the rank of the guided map.
        fused: Use the memory-lean fused function when autograd records (see above).
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    Inputs:
        - **guidance**: ``(B, C_l)`` vector or ``(B, C_l, H, W)`` map.
        - **guided**: ``(B, C_v, H, W)``.

    Returns:
        The fused feature ``F`` of shape ``(B, C_v, H, W)``.

    Raises:
        ValueError: Non-positive sizes, or inputs whose shapes do not match the
            constructor (dims, channels, batch size, spatial size).
        TypeError: Non-tensor or non-floating-point inputs.

    Example:
        >>> import torch
        >>> from igf import BilinearFusionUnit
        >>> unit = BilinearFusionUnit(16, 32, heads=5)
        >>> sentence = torch.randn(2, 16)
        >>> visual = torch.randn(2, 32, 8, 8)
        >>> unit(sentence, visual).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(
        self,
        guidance_channels: int,
        guided_channels: int,
        *,
        heads: int = 5,
        spatial_dims: int = 2,
        fused: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.fused = bool(fused)
        self.guidance_channels = check_positive_int("guidance_channels", guidance_channels)
        self.guided_channels = check_positive_int("guided_channels", guided_channels)
        self.heads = check_positive_int("heads", heads)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        conv = conv_class(spatial_dims)
        self.proj_guidance = conv(guidance_channels, heads * guided_channels, 1, device=device, dtype=dtype)
        self.proj_guided = conv(guided_channels, heads * guided_channels, 1, device=device, dtype=dtype)

    def encode_guidance(self, guidance: Tensor) -> Tensor:
        """Compute the guidance branch ``tanh(W1 x)`` of all heads.

        The branch does not depend on the guided feature, so a caller that
        fuses the same guidance repeatedly computes it once.

        Args:
            guidance: ``(B, C_l)`` vector or ``(B, C_l, H, W)`` map (not checked).

        Returns:
            ``(B, h * C_v, 1, 1)`` for a vector (ready to broadcast; one 1 per spatial
            dimension) or ``(B, h * C_v, H, W)`` for a map.
        """
        if guidance.dim() == 2:
            projected = F.linear(guidance, self.proj_guidance.weight.flatten(1), self.proj_guidance.bias)
            return broadcast_vector(tanh_of_temporary(projected), self.spatial_dims)
        return tanh_of_temporary(self.proj_guidance(guidance))

    def fuse(self, encoded_guidance: Tensor, guided: Tensor) -> Tensor:
        """Fuse a pre-computed guidance branch with the guided feature (inputs not checked).

        Args:
            encoded_guidance: Output of :meth:`encode_guidance`.
            guided: ``(B, C_v, H, W)``.

        Returns:
            ``(B, C_v, H, W)``.
        """
        return sum_heads(encoded_guidance, self.proj_guided(guided), self.heads)

    def fuse_unchecked(self, guidance: Tensor, guided: Tensor) -> Tensor:
        """Eq. 2 on inputs that are not checked: the fused function where it applies, else the plain modules.

        Args:
            guidance: ``(B, C_l)`` vector or ``(B, C_l, H, W)`` map.
            guided: ``(B, C_v, H, W)``.

        Returns:
            ``(B, C_v, H, W)``.
        """
        if not fused_path_applies(self.fused):
            return self.fuse(self.encode_guidance(guidance), guided)
        from_guidance, from_guided = self.proj_guidance, self.proj_guided
        args = autocast_cast(
            guidance, guided, from_guidance.weight, from_guidance.bias, from_guided.weight, from_guided.bias
        )
        with autocast_off(guided):
            fusion: Tensor = FusedFusion.apply(*args, self.heads)
        return fusion

    def forward(self, guidance: Tensor, guided: Tensor) -> Tensor:
        """Fuse ``guidance`` into ``guided`` (Eq. 2), after checking both.

        Args:
            guidance: :math:`x`, ``(B, C_l)`` vector or ``(B, C_l, H, W)`` map of the guided map's size.
            guided: :math:`G_{t-1}`, ``(B, C_v, H, W)``.

        Returns:
            :math:`F_t`, ``(B, C_v, H, W)``. Shapes for ``spatial_dims=2``; ``(H, W)`` stands for
            ``(T,)`` in 1-D and ``(D, H, W)`` in 3-D.

        Raises:
            ValueError: Wrong number of dims for the rank, channels, batch size or spatial size.
            TypeError: Non-tensor or non-floating-point inputs, or a dtype that differs from the parameters'.
        """
        rank = self.spatial_dims
        check_tensor("guided", guided, ndims=(2 + rank,), layout=guided_layout(rank, "C_v"), spatial_dims=rank)
        check_tensor(
            "guidance",
            guidance,
            ndims=(2, 2 + rank),
            layout=f"(B, C_l) or {guided_layout(rank, 'C_l')}",
            spatial_dims=rank,
        )
        check_channels("guided", guided, self.guided_channels)
        check_channels("guidance", guidance, self.guidance_channels)
        check_same_batch("guidance", guidance, "guided", guided)
        if guidance.dim() > 2:
            check_same_spatial("guidance", guidance, "guided", guided)
        check_parameter_dtype("guided", guided, self.proj_guided.weight)
        check_parameter_dtype("guidance", guidance, self.proj_guidance.weight)
        return self.fuse_unchecked(guidance, guided)

    def extra_repr(self) -> str:
        return (
            f"guidance_channels={self.guidance_channels}, guided_channels={self.guided_channels}, "
            f"heads={self.heads}, spatial_dims={self.spatial_dims}, fused={self.fused}"
        )
