"""Building blocks of DCMFNet around the IGF modules (paper §3.2-3.3, Fig. 2).

- :class:`ConvBN`: the ``ConvBN`` of Eq. 5 (conv + BatchNorm, optional ReLU).
- :class:`ASPP`: DeepLabv3 atrous spatial pyramid pooling (``M_dec = ASPP(E_enc)``).
- :class:`SegmentationHead`: two ``3x3 conv-BN-ReLU-Dropout`` and a ``1x1`` classifier.
- Fusion sites that IGF can be swapped against, all with IGF's call shape
  ``forward(guidance, guided, *, return_intermediates=False)``:
  :class:`NoFusion` (passes ``guided`` through), :class:`MultiplicativeFusion`
  (one-step ``guided * tanh(W L)``), and the decoder multi-level fusion
  alternatives of Table 2 rows 8-11: :class:`NoMultiLevelFusion`,
  :class:`ConcatFusion`, :class:`GatedFusion` (CMSA-style) and
  :class:`BidirectionalGatedFusion` (BRINet-style).

A site that is not an :class:`igf.IterativeGatedFusion` returns
``IGFOutput(output, (), ())`` when asked for intermediates, so the model's
``forward`` treats every site alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igf import IGFOutput
from igf.functional import resize_to

__all__ = [
    "ASPP",
    "BidirectionalGatedFusion",
    "ConcatFusion",
    "ConvBN",
    "GatedFusion",
    "MultiplicativeFusion",
    "NoFusion",
    "NoMultiLevelFusion",
    "SegmentationHead",
    "resize_to",
]


class ConvBN(nn.Sequential):
    """Convolution + BatchNorm (+ ReLU): the ``ConvBN`` of Eq. 5.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel size; padding keeps ``H x W`` (times ``dilation``).
        stride: Convolution stride.
        dilation: Convolution dilation.
        relu: Append a ReLU (the paper's ``ConvBN`` of Eq. 5 has none).

    Inputs:
        - **x**: ``(B, in_channels, H, W)``.

    Returns:
        ``(B, out_channels, H / stride, W / stride)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=dilation * (kernel_size // 2),
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True) if relu else nn.Identity(),
        )


class _ImagePooling(nn.Module):
    """ASPP image-level branch: global average pool, 1x1 conv, ReLU, broadcast back to ``H x W``.

    No BatchNorm here (unlike torchvision's ASPP): a 1x1 map has a single value per
    channel and sample, which breaks BatchNorm in training at batch size 1.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.relu(self.conv(x.mean(dim=(-2, -1), keepdim=True)))
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (DeepLabv3), forming ``M_dec = ASPP(E_enc)`` (paper §3.3).

    Branches: a 1x1 conv, one 3x3 conv per atrous rate, and image pooling; their
    concatenation is projected by a 1x1 conv-BN-ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Channels of every branch and of the output.
        rates: Atrous rates of the 3x3 branches (DeepLabv3: ``(6, 12, 18)`` at output stride 16).

    Inputs:
        - **x**: ``(B, in_channels, H, W)``.

    Returns:
        ``(B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvBN(in_channels, out_channels, kernel_size=1)]
        branches += [ConvBN(in_channels, out_channels, dilation=int(rate)) for rate in rates]
        branches.append(_ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = ConvBN(len(branches) * out_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class SegmentationHead(nn.Sequential):
    """Segmentation head of paper §3.3: two ``3x3 conv-BN-ReLU-Dropout``, then a ``1x1`` conv to one logit.

    Args:
        in_channels: Input channels.
        hidden_channels: Channels of the two 3x3 layers.
        dropout: Dropout probability after each 3x3 layer.

    Inputs:
        - **x**: ``(B, in_channels, H, W)``.

    Returns:
        Logits ``(B, 1, H, W)``.
    """

    def __init__(self, in_channels: int, *, hidden_channels: int, dropout: float = 0.1) -> None:
        super().__init__(
            ConvBN(in_channels, hidden_channels),
            nn.Dropout2d(dropout),
            ConvBN(hidden_channels, hidden_channels),
            nn.Dropout2d(dropout),
            nn.Conv2d(hidden_channels, 1, 1),
        )


class _FusionSite(nn.Module):
    """Base of the non-IGF fusion sites: IGF's call shape, ``IGFOutput`` with empty tuples on request.

    Like :class:`igf.IterativeGatedFusion`, a map guidance ``(B, C, h, w)`` is
    resized bilinearly to the guided map's ``H x W`` before :meth:`fuse`, so the
    decoder passes ``M_dec`` at its own resolution to every site alike.
    """

    @overload
    def forward(self, guidance: Tensor, guided: Tensor, *, return_intermediates: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, guidance: Tensor, guided: Tensor, *, return_intermediates: Literal[True]) -> IGFOutput: ...

    def forward(self, guidance: Tensor, guided: Tensor, *, return_intermediates: bool = False) -> Tensor | IGFOutput:
        if guidance.dim() == 4:
            guidance = resize_to(guidance, guided.shape[-2:])
        output = self.fuse(guidance, guided)
        return IGFOutput(output, (), ()) if return_intermediates else output

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        raise NotImplementedError


class NoFusion(_FusionSite):
    """A disabled fusion site: returns ``guided`` unchanged and has no parameters.

    Inputs:
        - **guidance**: ignored.
        - **guided**: ``(B, C, H, W)``.

    Returns:
        ``guided``.
    """

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        return guided


class MultiplicativeFusion(_FusionSite):
    """One-step fusion ``guided * tanh(W L + b)`` of a sentence vector into a map.

    Used at the LGVE-2 site only when every IGF of the encoder is switched off
    (Table 2 row 1): language must enter the network somewhere, and the paper
    does not say how it did there.

    Args:
        guidance_channels: Channels of the guidance vector.
        guided_channels: Channels of the guided map (and of the output).

    Inputs:
        - **guidance**: ``(B, guidance_channels)``.
        - **guided**: ``(B, guided_channels, H, W)``.

    Returns:
        ``(B, guided_channels, H, W)``.
    """

    def __init__(self, guidance_channels: int, guided_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(guidance_channels, guided_channels)

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        return guided * torch.tanh(self.proj(guidance))[:, :, None, None]


class NoMultiLevelFusion(_FusionSite):
    """Decoder without multi-level feature fusion (Table 2 rows 7-8): ``E_dec = ConvBN1x1(M_dec↑)``; ``V1`` unused.

    Args:
        guidance_channels: Channels of the high-level map ``M_dec``.
        guided_channels: Channels of ``V1`` (unused; for the common constructor).
        out_channels: Output channels.

    Inputs:
        - **guidance**: ``M_dec``, ``(B, guidance_channels, h, w)`` (resized to ``H x W``).
        - **guided**: ``V1``; only its size ``H x W`` is used.

    Returns:
        ``(B, out_channels, H, W)``.
    """

    def __init__(self, guidance_channels: int, guided_channels: int, *, out_channels: int) -> None:
        super().__init__()
        self.project = ConvBN(guidance_channels, out_channels, kernel_size=1)

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        return self.project(guidance)


class ConcatFusion(_FusionSite):
    """Concat fusion (Table 2 row 9), DeepLabv3+-style: ``ConvBN3x3([M_dec↑; ConvBN1x1(V1)])``.

    Args:
        guidance_channels: Channels of the high-level map ``M_dec``.
        guided_channels: Channels of the low-level map ``V1``.
        out_channels: Output channels (also the width ``V1`` is projected to).

    Inputs:
        - **guidance**: ``M_dec``, ``(B, guidance_channels, h, w)`` (resized to ``H x W``).
        - **guided**: ``V1``, ``(B, guided_channels, H, W)``.

    Returns:
        ``(B, out_channels, H, W)``.
    """

    def __init__(self, guidance_channels: int, guided_channels: int, *, out_channels: int) -> None:
        super().__init__()
        self.project_guided = ConvBN(guided_channels, out_channels, kernel_size=1)
        self.fuse_conv = ConvBN(guidance_channels + out_channels, out_channels)

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        return self.fuse_conv(torch.cat([guidance, self.project_guided(guided)], dim=1))


class GatedFusion(_FusionSite):
    r"""Gated multi-level fusion in the style of CMSA (Ye et al., CVPR 2019; Table 2 row 10), for two levels.

    Both levels ``X_i`` are first projected to ``out_channels`` (1x1 ConvBN-ReLU).
    Each level has a memory gate :math:`m_i = \sigma(W_m^i X_i)` and a reset gate
    :math:`r_i = \tanh(W_r^i X_i)` (1x1 convs); a level keeps what its memory
    gate lets through and takes in the other level's gated feature through its
    reset gate:

    .. math::

        Y_i = m_i \odot X_i + r_i \odot (m_j \odot X_j), \qquad
        E_{dec} = \mathrm{ConvBN3x3}(Y_{high} + Y_{low}).

    Args:
        guidance_channels: Channels of the high-level map ``M_dec``.
        guided_channels: Channels of the low-level map ``V1``.
        out_channels: Output channels.

    Inputs:
        - **guidance**: ``M_dec``, ``(B, guidance_channels, h, w)`` (resized to ``H x W``).
        - **guided**: ``V1``, ``(B, guided_channels, H, W)``.

    Returns:
        ``(B, out_channels, H, W)``.
    """

    def __init__(self, guidance_channels: int, guided_channels: int, *, out_channels: int) -> None:
        super().__init__()
        self.project_high = ConvBN(guidance_channels, out_channels, kernel_size=1)
        self.project_low = ConvBN(guided_channels, out_channels, kernel_size=1)
        # Memory and reset gates of each level as one 1x1 conv to 2 * out_channels.
        self.gates_high = nn.Conv2d(out_channels, 2 * out_channels, 1)
        self.gates_low = nn.Conv2d(out_channels, 2 * out_channels, 1)
        self.fuse_conv = ConvBN(out_channels, out_channels)

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        high, low = self.project_high(guidance), self.project_low(guided)
        memory_high, reset_high = self.gates_high(high).chunk(2, dim=1)
        memory_low, reset_low = self.gates_low(low).chunk(2, dim=1)
        kept_high, kept_low = torch.sigmoid(memory_high) * high, torch.sigmoid(memory_low) * low
        fused_high = kept_high + torch.tanh(reset_high) * kept_low
        fused_low = kept_low + torch.tanh(reset_low) * kept_high
        return self.fuse_conv(fused_high + fused_low)


class BidirectionalGatedFusion(_FusionSite):
    r"""Gated bi-directional fusion in the style of BRINet's GBFM (Hu et al., CVPR 2020; Table 2 row 11), two levels.

    After 1x1 ConvBN-ReLU projections to ``out_channels``, a top-down pass gates
    the high-level feature into the low-level one, then a bottom-up pass gates
    the refined low-level feature back into the high-level one:

    .. math::

        L' = L + \sigma(W_{td} [L; H]) \odot H, \qquad
        H' = H + \sigma(W_{bu} [H; L']) \odot L', \qquad
        E_{dec} = \mathrm{ConvBN3x3}([L'; H']).

    Args:
        guidance_channels: Channels of the high-level map ``M_dec``.
        guided_channels: Channels of the low-level map ``V1``.
        out_channels: Output channels.

    Inputs:
        - **guidance**: ``M_dec``, ``(B, guidance_channels, h, w)`` (resized to ``H x W``).
        - **guided**: ``V1``, ``(B, guided_channels, H, W)``.

    Returns:
        ``(B, out_channels, H, W)``.
    """

    def __init__(self, guidance_channels: int, guided_channels: int, *, out_channels: int) -> None:
        super().__init__()
        self.project_high = ConvBN(guidance_channels, out_channels, kernel_size=1)
        self.project_low = ConvBN(guided_channels, out_channels, kernel_size=1)
        self.gate_top_down = nn.Conv2d(2 * out_channels, out_channels, 3, padding=1)
        self.gate_bottom_up = nn.Conv2d(2 * out_channels, out_channels, 3, padding=1)
        self.fuse_conv = ConvBN(2 * out_channels, out_channels)

    def fuse(self, guidance: Tensor, guided: Tensor) -> Tensor:
        high, low = self.project_high(guidance), self.project_low(guided)
        low = low + torch.sigmoid(self.gate_top_down(torch.cat([low, high], dim=1))) * high
        high = high + torch.sigmoid(self.gate_bottom_up(torch.cat([high, low], dim=1))) * low
        return self.fuse_conv(torch.cat([low, high], dim=1))
