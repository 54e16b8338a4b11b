"""FiLM: feature-wise linear modulation of the guided map by the guidance (Perez et al., AAAI 2018, Eq. 1-2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from igf._guidance import Guidance1D, check_fusion_inputs, check_guidance_1d, guidance_kind, project_guidance
from igf._validation import check_positive_int
from igf.functional import masked_mean
from igf.spatial import check_spatial_dims, conv_class

__all__ = ["FiLM"]


class FiLM(nn.Module):
    r"""FiLM layer: the guidance predicts a per-channel scale and shift of the guided map.

    Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018,
    Eq. 1-2 predict :math:`\gamma = f(x)` and :math:`\beta = h(x)` from the conditioning
    input and modulate each channel, :math:`\mathrm{FiLM}(Y) = \gamma \odot Y + \beta`.
    Here :math:`f` and :math:`h` are affine maps of the guidance (one 1x1 convolution to
    :math:`2 C_y` channels, split into :math:`\gamma` and :math:`\beta`), and the output uses
    the residual form

    .. math::

        \gamma = W_\gamma x + b_\gamma, \qquad \beta = W_\beta x + b_\beta, \qquad
        \mathrm{out} = (1 + \gamma) \odot Y + \beta.

    Why the residual form: with the predictor's weights and bias initialised to zero,
    :math:`\gamma = \beta = 0` and the layer starts as the identity, so inserting it into a
    (pretrained) network leaves that network unchanged at the first step, and the scale starts at
    1 instead of 0 (the plain form with a zero :math:`\gamma` would erase ``Y``, and with a random
    one would rescale every channel at random). The gradient of the predictor is
    :math:`\partial L / \partial \gamma = (\partial L / \partial \mathrm{out}) \odot Y`, not zero,
    so it trains from the first step. Both forms express the same functions.

    What each guidance does:

    - a vector ``(B, C_x)``: one :math:`\gamma, \beta` per channel, as in the paper (computed as
      vectors and broadcast, never tiled);
    - a token sequence ``(B, T, C_x)``: pooled to a vector by the mean over the real tokens
      (:func:`igf.functional.masked_mean`), as :class:`~igf.IterativeGatedFusion` pools it;
    - a map ``(B, C_x, *spatial)``: :math:`\gamma, \beta` per position from the 1x1 convolution,
      resized (linear in the rank) to the guided map's size. A map of one position is a vector.

    Args:
        guidance_channels: :math:`C_x`, channels of the guidance.
        guided_channels: :math:`C_y`, channels of the guided map (and of :math:`\gamma, \beta`).
        out_channels: Channels of the output. Default: ``guided_channels``; another width adds a
            1x1 convolution ``out_proj`` after the modulation (``nn.Identity`` otherwise).
        spatial_dims: Rank of the guided map: 1 ``(B, C, T)``, 2 ``(B, C, H, W)`` (default) or
            3 ``(B, C, D, H, W)``.
        guidance_1d: With ``spatial_dims=1`` only, what a guidance of three dims is: ``"tokens"``
            (default), a token sequence ``(B, T, C_x)``, or ``"map"``, a 1-D map ``(B, C_x, t)``
            resized to the guided length.
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    State dict keys: ``film`` (the 1x1 convolution predicting :math:`[\gamma; \beta]`, rows
    ``0..C_y-1`` give :math:`\gamma`) and ``out_proj`` when ``out_channels != guided_channels``.

    Example:
        >>> import torch
        >>> from igf import FiLM
        >>> film = FiLM(768, 256)
        >>> visual = torch.randn(2, 256, 30, 30)
        >>> torch.equal(film(torch.randn(2, 768), visual), visual)  # starts as the identity
        True
        >>> FiLM(64, 32, spatial_dims=3)(torch.randn(2, 64, 2, 4, 4), torch.randn(2, 32, 4, 8, 8)).shape
        torch.Size([2, 32, 4, 8, 8])
    """

    def __init__(
        self,
        guidance_channels: int,
        guided_channels: int,
        *,
        out_channels: int | None = None,
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
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.guidance_1d = check_guidance_1d(guidance_1d, self.spatial_dims)
        conv = conv_class(spatial_dims)
        self.film = conv(guidance_channels, 2 * guided_channels, 1, device=device, dtype=dtype)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)  # type: ignore[arg-type]  # built with a bias
        self.out_proj: nn.Module = (
            nn.Identity()
            if out_channels == guided_channels
            else conv(guided_channels, out_channels, 1, device=device, dtype=dtype)
        )

    def forward(self, guidance: Tensor, guided: Tensor, *, guidance_mask: Tensor | None = None) -> Tensor:
        """Modulate ``guided`` by the scale and shift predicted from ``guidance``.

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
            guidance_weight=self.film.weight,
            guided_weight=self.film.weight,
        )
        if guidance_kind(guidance, self.guidance_1d) == "tokens":
            guidance = masked_mean(guidance, guidance_mask)
        scale_shift = project_guidance(self.film, guidance, tuple(guided.shape[2:]))
        if scale_shift.dim() == 2:  # a vector: one value per channel, broadcast over the positions
            scale_shift = scale_shift.reshape(*scale_shift.shape, *(1,) * self.spatial_dims)
        gamma, beta = scale_shift.chunk(2, dim=1)
        modulated = (1 + gamma) * guided.to(gamma.dtype) + beta
        out: Tensor = self.out_proj(modulated)
        return out

    def extra_repr(self) -> str:
        return (
            f"guidance_channels={self.guidance_channels}, guided_channels={self.guided_channels}, "
            f"out_channels={self.out_channels}, spatial_dims={self.spatial_dims}"
            + (f", guidance_1d={self.guidance_1d!r}" if self.spatial_dims == 1 else "")
        )
