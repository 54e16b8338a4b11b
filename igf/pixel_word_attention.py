"""Pixel-word attention: LAVT's PWAM with its language gate (Yang et al., CVPR 2022, §3.2-3.3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igf._guidance import Guidance1D, GuidanceKind, check_fusion_inputs, check_guidance_1d, guidance_kind
from igf._validation import check_positive_int
from igf.spatial import check_spatial_dims, conv_class

__all__ = ["PixelWordAttention"]

_INSTANCE_NORMS: dict[int, type[nn.InstanceNorm1d] | type[nn.InstanceNorm2d] | type[nn.InstanceNorm3d]] = {
    1: nn.InstanceNorm1d,
    2: nn.InstanceNorm2d,
    3: nn.InstanceNorm3d,
}


class PixelWordAttention(nn.Module):
    r"""Pixel-word attention (PWAM) with a language gate: every position of the guided map attends over the words.

    Yang et al., "LAVT: Language-Aware Vision Transformer for Referring Image Segmentation",
    CVPR 2022, §3.2 (pixel-word attention module) and §3.3 (language pathway). With ``Y`` the
    guided map, ``L`` the guidance tokens and IN an instance norm over the positions (no affine
    parameters, as LAVT):

    .. math::

        V_m &= \mathrm{GELU}(W_m Y), \qquad
        Q = \mathrm{IN}(W_q Y), \qquad K = W_k L, \qquad V = W_v L, \\
        G &= \mathrm{IN}\big(W_w\, \mathrm{softmax}(Q K^\top / \sqrt{C_k})\, V\big), \qquad
        F = \mathrm{GELU}\big(W_o (V_m \odot G)\big), \\
        S &= \tanh\big(W_{s2}\, \mathrm{ReLU}(W_{s1} F)\big), \qquad
        \mathrm{out} = Y + S \odot F.

    All :math:`W` are 1x1 convolutions (per position, with bias) except the gate's
    :math:`W_{s1}, W_{s2}`, which are bias-free, as in LAVT. The softmax runs over the real
    tokens only: padded tokens are *selected* away (their logits set to :math:`-\infty`, their
    features to zero before the projections, so NaN or inf in padding never reaches the result),
    never suppressed by adding :math:`-10^4` or by multiplying. A row with no real token attends
    to nothing and gives a zero :math:`G` (and zero gradients), never NaN.

    Initialisation (``identity_init``): by default :math:`W_{s2} = 0`, so :math:`S = 0` and the layer
    starts as the identity. LAVT writes a zero initialisation of *both* gate matrices; but with both
    zero every gradient of the layer is zero (:math:`\partial S / \partial W_{s2}` reads
    :math:`\mathrm{ReLU}(W_{s1} F) = 0` and :math:`\partial S / \partial W_{s1}` reads :math:`W_{s2} = 0`),
    a fixed point of training (LAVT-RIS issues #15 and #25 note that LAVT's released code never applied
    that initialisation). :math:`W_{s1}` therefore keeps PyTorch's default initialisation: the first
    step trains :math:`W_{s2}` only, and from the second step every parameter receives a gradient.
    The guidance then reaches the output only through the product :math:`S \odot F` of two factors
    that start at (or near) zero, a second-order start: fine where the guided map carries the signal
    (LAVT's encoder stages), slow where the guidance does (a decoder fusing a deep map into a skip
    connection; the DCMFNet ablation guide measures it). ``identity_init=False`` keeps PyTorch's
    default initialisation for :math:`W_{s2}` as well, as LAVT's released code does: the guidance
    reaches the output from the first step.

    Precision: the instance norm of :math:`G` divides by the spread of the attended words over the
    positions. Where the attention barely varies from position to position, that spread is small and
    the norm magnifies rounding: under ``torch.autocast`` to bfloat16 the output can then differ from
    the float32 one by far more than bfloat16's own rounding.

    What each guidance does:

    - a token sequence ``(B, T, C_x)`` with an optional padding mask ``(B, T)``: the words;
    - a vector ``(B, C_x)``: a sequence of one token. Every position then attends to it with weight
      1, :math:`W_w\,\mathrm{softmax}(\cdot)\,V` is the same at every position, and the instance norm
      maps it to zero: the output does not depend on a vector guidance (:math:`F` is a constant).
      PWAM needs tokens or a map;
    - a map ``(B, C_x, *spatial')`` of any size: its positions are the tokens (``h * w`` of them in 2-D),
      without resizing.

    Args:
        guidance_channels: :math:`C_x`, channels of a guidance token.
        guided_channels: :math:`C_y`, channels of the guided map; also the width of
            :math:`V_m, V, G, F, S` (LAVT uses one width for all of them).
        key_channels: :math:`C_k`, width of the queries and keys. Default: ``guided_channels`` (LAVT).
        out_channels: Channels of the output. Default: ``guided_channels``; another width adds a
            1x1 convolution ``out_proj`` after the residual sum (``nn.Identity`` otherwise).
        spatial_dims: Rank of the guided map: 1 ``(B, C, T)``, 2 ``(B, C, H, W)`` (default) or
            3 ``(B, C, D, H, W)``.
        guidance_1d: With ``spatial_dims=1`` only, what a guidance of three dims is: ``"tokens"``
            (default), a token sequence ``(B, T, C_x)``, or ``"map"``, a 1-D map ``(B, C_x, t)``
            whose positions are the tokens.
        identity_init: Start as the identity (:math:`W_{s2} = 0`, default); ``False``: PyTorch's default
            initialisation for every weight, as LAVT's released code (see Initialisation above).
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    State dict keys: ``visual_proj`` (:math:`W_m`), ``query_proj`` (:math:`W_q`), ``key_proj``
    (:math:`W_k`), ``value_proj`` (:math:`W_v`), ``attended_proj`` (:math:`W_w`), ``mm_proj``
    (:math:`W_o`), ``gate_hidden`` (:math:`W_{s1}`), ``gate_out`` (:math:`W_{s2}`), and ``out_proj``
    when ``out_channels != guided_channels``. ``key_proj`` and ``value_proj`` act on tokens and
    are ``nn.Linear``; the others are 1x1 convolutions of the rank.

    Example:
        >>> import torch
        >>> from igf import PixelWordAttention
        >>> pwam = PixelWordAttention(768, 256)
        >>> words, mask = torch.randn(2, 7, 768), torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
        >>> visual = torch.randn(2, 256, 30, 30)
        >>> torch.equal(pwam(words, visual, guidance_mask=mask), visual)  # starts as the identity
        True
    """

    def __init__(
        self,
        guidance_channels: int,
        guided_channels: int,
        *,
        key_channels: int | None = None,
        out_channels: int | None = None,
        spatial_dims: int = 2,
        guidance_1d: Guidance1D = "tokens",
        identity_init: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(identity_init, bool):
            raise TypeError(f"identity_init must be a bool, got {type(identity_init).__name__} {identity_init!r}")
        self.identity_init = identity_init
        self.guidance_channels = check_positive_int("guidance_channels", guidance_channels)
        self.guided_channels = check_positive_int("guided_channels", guided_channels)
        key_channels = guided_channels if key_channels is None else key_channels
        self.key_channels = check_positive_int("key_channels", key_channels)
        out_channels = guided_channels if out_channels is None else out_channels
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.guidance_1d = check_guidance_1d(guidance_1d, self.spatial_dims)
        conv, norm = conv_class(spatial_dims), _INSTANCE_NORMS[spatial_dims]
        width = guided_channels
        self.visual_proj = conv(width, width, 1, device=device, dtype=dtype)
        self.query_proj = conv(width, key_channels, 1, device=device, dtype=dtype)
        self.query_norm = norm(key_channels, device=device, dtype=dtype)
        self.key_proj = nn.Linear(guidance_channels, key_channels, device=device, dtype=dtype)
        self.value_proj = nn.Linear(guidance_channels, width, device=device, dtype=dtype)
        self.attended_proj = conv(width, width, 1, device=device, dtype=dtype)
        self.attended_norm = norm(width, device=device, dtype=dtype)
        self.mm_proj = conv(width, width, 1, device=device, dtype=dtype)
        self.gate_hidden = conv(width, width, 1, bias=False, device=device, dtype=dtype)
        self.gate_out = conv(width, width, 1, bias=False, device=device, dtype=dtype)
        if identity_init:
            nn.init.zeros_(self.gate_out.weight)
        self.out_proj: nn.Module = (
            nn.Identity()
            if out_channels == guided_channels
            else conv(width, out_channels, 1, device=device, dtype=dtype)
        )

    def forward(self, guidance: Tensor, guided: Tensor, *, guidance_mask: Tensor | None = None) -> Tensor:
        """Let every position of ``guided`` attend over the guidance tokens and add the gated result.

        Args:
            guidance: ``(B, T, C_x)`` token sequence, ``(B, C_x)`` vector (one token), or
                ``(B, C_x, *spatial')`` map of any size whose positions are the tokens
                (``(B, C_x, h, w)`` in 2-D).
            guided: ``(B, C_y, *spatial)``, e.g. ``(B, C_y, H, W)``, with more than one position
                (the instance norms normalise over them).
            guidance_mask: ``(B, T)`` bool or integer padding mask of a token sequence (nonzero = real
                token); ``None`` = every token is real.

        Returns:
            ``(B, out_channels, *spatial)``. Under ``torch.autocast`` in the autocast dtype, like
            :class:`~igf.IterativeGatedFusion`'s output.

        Raises:
            ValueError: Inputs whose dims, channels or batch size do not match the constructor, a zero-size
                dimension other than the batch, a guided map of one position, or a mask that does not match
                a token-sequence guidance.
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
            guidance_weight=self.key_proj.weight,
            guided_weight=self.visual_proj.weight,
        )
        if math.prod(guided.shape[2:]) < 2:
            raise ValueError(
                f"guided must have more than one position (the instance norms normalise over them), "
                f"got shape {tuple(guided.shape)}"
            )
        tokens = _as_tokens(guidance, guidance_kind(guidance, self.guidance_1d))  # (B, T, C_x)
        if guidance_mask is not None:
            keep = guidance_mask.bool()  # (B, T)
            tokens = torch.where(keep[..., None], tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
        visual = F.gelu(self.visual_proj(guided))  # V_m, (B, C_y, *spatial)
        query = self.query_norm(self.query_proj(guided)).flatten(2)  # Q, (B, C_k, N)
        key = self.key_proj(tokens)  # K, (B, T, C_k)
        value = self.value_proj(tokens)  # V, (B, T, C_y)
        logits = torch.einsum("bkn,btk->bnt", query, key) / math.sqrt(self.key_channels)
        weights = logits.softmax(dim=-1) if guidance_mask is None else _masked_softmax(logits, keep)
        attended = torch.einsum("bnt,btc->bcn", weights.to(value.dtype), value)
        attended = attended.reshape(*attended.shape[:2], *guided.shape[2:])  # softmax(Q K^T / sqrt(C_k)) V
        language = self.attended_norm(self.attended_proj(attended))  # G
        fused = F.gelu(self.mm_proj(visual * language))  # F
        gate = torch.tanh(self.gate_out(F.relu(self.gate_hidden(fused))))  # S
        out: Tensor = self.out_proj(guided.to(fused.dtype) + gate * fused)
        return out

    def extra_repr(self) -> str:
        return (
            f"guidance_channels={self.guidance_channels}, guided_channels={self.guided_channels}, "
            f"key_channels={self.key_channels}, out_channels={self.out_channels}, spatial_dims={self.spatial_dims}"
            + (f", guidance_1d={self.guidance_1d!r}" if self.spatial_dims == 1 else "")
            + ("" if self.identity_init else ", identity_init=False")
        )


def _as_tokens(guidance: Tensor, kind: GuidanceKind) -> Tensor:
    """A vector as one token, a map's positions as tokens: ``(B, T, C_x)``."""
    if kind == "vector":
        return guidance[:, None, :]
    if kind == "tokens":
        return guidance
    return guidance.flatten(2).transpose(1, 2)


def _masked_softmax(logits: Tensor, keep: Tensor) -> Tensor:
    """Softmax of ``(B, N, T)`` logits over the tokens ``keep`` ``(B, T)`` selects; rows without one give zeros.

    Padded tokens' logits are replaced by ``-inf`` (selection, not addition). In a row with no real
    token all logits stay finite (so neither the softmax nor its gradient meets ``-inf - -inf``) and
    the row is then selected to zero, with zero gradient.
    """
    has_token = keep.any(dim=-1, keepdim=True)  # (B, 1)
    selectable = (keep | ~has_token)[:, None, :]  # (B, 1, T)
    minus_inf = torch.full((), float("-inf"), dtype=logits.dtype, device=logits.device)
    weights = torch.where(selectable, logits, minus_inf).softmax(dim=-1)
    return torch.where(has_token[:, None, :], weights, torch.zeros((), dtype=weights.dtype, device=weights.device))
