"""Concatenation fusion: the guidance, tiled or resized, concatenated with the guided map and convolved."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igf._guidance import Guidance1D, check_fusion_inputs, check_guidance_1d, guidance_kind
from igf._validation import check_positive_int
from igf.functional import masked_mean, resize_to
from igf.spatial import check_spatial_dims, conv_class, kernel_tuple

__all__ = ["ConcatFusion"]

_BATCH_NORMS: dict[int, type[nn.BatchNorm1d] | type[nn.BatchNorm2d] | type[nn.BatchNorm3d]] = {
    1: nn.BatchNorm1d,
    2: nn.BatchNorm2d,
    3: nn.BatchNorm3d,
}


class ConcatFusion(nn.Module):
    r"""Concatenation fusion, the baseline every cross-modal fusion is compared with.

    The guidance is brought to the guided map's shape and concatenated with it along the
    channels, then a convolution, batch norm and ReLU mix the two, and a 1x1 convolution
    gives the output:

    .. math::

        \mathrm{out} = W_o * \mathrm{ReLU}\big(\mathrm{BN}(W_c * [Y;\, \tilde X])\big),

    with :math:`W_c` a ``kernel_size`` convolution without bias (the batch norm's shift
    takes its place) and :math:`W_o` a 1x1 convolution with bias. It generalises the
    concatenation row of DCMFNet's multi-level fusion ablation (Huang et al., Graphics
    Interface 2024, Table 2) to any guidance.

    What each guidance becomes (:math:`\tilde X`):

    - a vector ``(B, C_x)``: tiled over every position;
    - a token sequence ``(B, T, C_x)``: pooled to a vector by the mean over the real tokens
      (:func:`igf.functional.masked_mean`), as :class:`~igf.IterativeGatedFusion` pools it, then tiled;
    - a map ``(B, C_x, *spatial')``: resized (linear in the rank: bilinear in 2-D) to the guided size.

    Args:
        guidance_channels: :math:`C_x`, channels of the guidance.
        guided_channels: :math:`C_y`, channels of the guided map.
        out_channels: Channels of the output. Default: ``guided_channels``.
        hidden_channels: Width after :math:`W_c`. Default: ``out_channels``.
        kernel_size: Odd kernel size of :math:`W_c`, one int or one per spatial dimension (default 3).
        spatial_dims: Rank of the guided map: 1 ``(B, C, T)``, 2 ``(B, C, H, W)`` (default) or
            3 ``(B, C, D, H, W)``; the batch norm follows the rank.
        guidance_1d: With ``spatial_dims=1`` only, what a guidance of three dims is: ``"tokens"``
            (default), a token sequence ``(B, T, C_x)``, or ``"map"``, a 1-D map ``(B, C_x, t)``
            resized to the guided length.
        device: Factory argument for the parameters and buffers.
        dtype: Factory argument for the parameters and buffers.

    State dict keys: ``conv`` (:math:`W_c`; its input channels are ``[Y; X]`` in this order),
    ``norm`` (batch norm, with running statistics), ``out_proj`` (:math:`W_o`).

    Example:
        >>> import torch
        >>> from igf import ConcatFusion
        >>> concat = ConcatFusion(256, 64, out_channels=128)
        >>> concat(torch.randn(2, 256, 15, 15), torch.randn(2, 64, 60, 60)).shape
        torch.Size([2, 128, 60, 60])
    """

    def __init__(
        self,
        guidance_channels: int,
        guided_channels: int,
        *,
        out_channels: int | None = None,
        hidden_channels: int | None = None,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int = 2,
        guidance_1d: Guidance1D = "tokens",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.guidance_channels = check_positive_int("guidance_channels", guidance_channels)
        self.guided_channels = check_positive_int("guided_channels", guided_channels)
        out_channels = guided_channels if out_channels is None else out_channels
        self.out_channels = check_positive_int("out_channels", out_channels)
        hidden_channels = out_channels if hidden_channels is None else hidden_channels
        self.hidden_channels = check_positive_int("hidden_channels", hidden_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.guidance_1d = check_guidance_1d(guidance_1d, self.spatial_dims)
        self.kernel_size = kernel_tuple(spatial_dims, kernel_size)
        conv = conv_class(spatial_dims)
        self.conv = conv(
            guided_channels + guidance_channels,
            hidden_channels,
            self.kernel_size,  # type: ignore[arg-type]  # a tuple of the rank's length
            padding=tuple(k // 2 for k in self.kernel_size),  # type: ignore[arg-type]
            bias=False,
            device=device,
            dtype=dtype,
        )
        self.norm = _BATCH_NORMS[spatial_dims](hidden_channels, device=device, dtype=dtype)
        self.out_proj = conv(hidden_channels, out_channels, 1, device=device, dtype=dtype)

    def forward(self, guidance: Tensor, guided: Tensor, *, guidance_mask: Tensor | None = None) -> Tensor:
        """Concatenate the guidance (tiled or resized) with ``guided`` and convolve.

        Args:
            guidance: ``(B, C_x)`` vector, ``(B, T, C_x)`` token sequence, or ``(B, C_x, *spatial')``
                map of any size (``(B, C_x, h, w)`` in 2-D).
            guided: ``(B, C_y, *spatial)``, e.g. ``(B, C_y, H, W)``.
            guidance_mask: ``(B, T)`` bool or integer padding mask of a token sequence (nonzero = real
                token); ``None`` = every token is real.

        Returns:
            ``(B, out_channels, *spatial)``. Under ``torch.autocast`` in the autocast dtype, like
            :class:`~igf.IterativeGatedFusion`'s output.

        Raises:
            ValueError: Inputs whose dims, channels or batch size do not match the constructor, a zero-size
                dimension other than the batch, or a mask that does not match a token-sequence guidance.
            TypeError: Non-tensor or non-floating-point inputs, or a dtype that differs from the parameters'
                outside autocast.
        """
        check_fusion_inputs(
            guidance,
            guided,
            guidance_mask,
            guidance_channels=self.guidance_channels,
            guided_channels=self.guided_channels,
            spatial_dims=self.spatial_dims,
            guidance_1d=self.guidance_1d,
            guidance_weight=self.conv.weight,
            guided_weight=self.conv.weight,
        )
        size = tuple(guided.shape[2:])
        if guidance_kind(guidance, self.guidance_1d) == "tokens":
            guidance = masked_mean(guidance, guidance_mask)
        if guidance.dim() == 2:  # tiled: a broadcast view, materialised by the concatenation only
            guidance = guidance.reshape(*guidance.shape, *(1,) * self.spatial_dims).expand(-1, -1, *size)
        else:
            guidance = resize_to(guidance, size)
        mixed = F.relu(self.norm(self.conv(torch.cat([guided, guidance.to(guided.dtype)], dim=1))))
        out: Tensor = self.out_proj(mixed)
        return out

    def extra_repr(self) -> str:
        return (
            f"guidance_channels={self.guidance_channels}, guided_channels={self.guided_channels}, "
            f"out_channels={self.out_channels}, hidden_channels={self.hidden_channels}, "
            f"kernel_size={self.kernel_size}, spatial_dims={self.spatial_dims}"
            + (f", guidance_1d={self.guidance_1d!r}" if self.spatial_dims == 1 else "")
        )
