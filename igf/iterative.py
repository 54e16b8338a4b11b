"""Iterative Gated Fusion, the IGF module of DCMFNet (paper §3.1, Eq. 1-4, Fig. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, cast, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from igf._autocast import autocast_cast, autocast_off
from igf._validation import (
    check_channels,
    check_choice,
    check_guidance_mask,
    check_parameter_dtype,
    check_positive_int,
    check_same_batch,
    check_tensor,
)
from igf.functional import masked_attention, masked_mean, resize_to
from igf.fused import CheckpointedASGateStep, fused_path_applies
from igf.fusion import BilinearFusionUnit
from igf.gates import GATES, ASGate, GateFactory
from igf.spatial import check_spatial_dims, conv_layer, conv_same, guided_layout, kernel_tuple

__all__ = ["OUTPUT_MODES", "TOKEN_POOLINGS", "IGFOutput", "IterativeGatedFusion", "OutputMode", "TokenPooling"]

OutputMode = Literal["all_fusions", "last_fusion", "last_gate", "fusions_and_last_gate"]

OUTPUT_MODES: tuple[str, ...] = ("all_fusions", "last_fusion", "last_gate", "fusions_and_last_gate")
"""The output modes of paper Table 5, by the name ``output_mode=`` accepts."""

TokenPooling = Literal["mean", "attention"]

TOKEN_POOLINGS: tuple[str, ...] = ("mean", "attention")
"""How a token-sequence guidance is pooled, by the name ``token_pooling=`` accepts (not in the paper)."""

Guidance1D = Literal["tokens", "map"]
"""With ``spatial_dims=1``, what a three-dim guidance is: tokens ``(B, T, C_x)`` or a map ``(B, C_x, t)``."""

# Modes whose output reads the last gate's G_L; in the others the last gate is never built.
_MODES_USING_LAST_GATE = ("last_gate", "fusions_and_last_gate")
# Modes whose output concatenates L maps rather than one.
_MODES_CONCATENATING = ("all_fusions", "fusions_and_last_gate")


class IGFOutput(NamedTuple):
    """Output of :class:`IterativeGatedFusion` with ``return_intermediates=True``.

    Attributes:
        output: The IGF output, ``(B, out_channels, H, W)``.
        fusions: ``(F_1, ..., F_L)``, each ``(B, C'_v, H, W)``.
        gates: ``(G_1, ..., G_k)``, each ``(B, C'_v, H, W)``; ``k = L - 1`` in
            the ``all_fusions`` and ``last_fusion`` modes (``G_L`` is never
            computed there) and ``k = L`` otherwise.
    """

    output: Tensor
    fusions: tuple[Tensor, ...]
    gates: tuple[Tensor, ...]


class IterativeGatedFusion(nn.Module):
    r"""Iterative Gated Fusion: a guidance feature steers a guided feature map over L fusion-gate steps.

    With ``x = Conv1x1(X)`` and ``G_0 = Conv1x1(Y)``, each step :math:`t = 1..L`
    fuses and gates (Eq. 1-3)

    .. math::

        F_t = \mathrm{Fusion}_t(x, G_{t-1}), \qquad G_t = \mathrm{Gate}_t(F_t, G_{t-1}),

    and the output (Eq. 4, default mode) is :math:`\mathrm{Conv3x3}([F_1; \dots; F_L])`,
    shaped like the guided input, so IGF can replace ``Y`` in a network.

    The guided map may be 1-D ``(B, C_y, T)`` (a sequence: audio, sensor, video frame features),
    2-D ``(B, C_y, H, W)`` (the paper's image features; the default) or 3-D ``(B, C_y, D, H, W)``
    (a clip or a volume), chosen by ``spatial_dims`` at construction: every convolution has that
    rank, and the gates' and output kernel sizes may differ per dimension (``kernel_size=(1, 3, 3)``
    mixes no frames). Shapes below are written for ``spatial_dims=2``; ``H, W`` stands for ``T`` in
    1-D and for ``D, H, W`` in 3-D. A 2-D model's state dict keeps its keys and shapes.

    Guidance can be a vector ``(B, C_x)`` (e.g. a sentence embedding): it is
    projected once as a vector and broadcast, never tiled to ``(B, C, H, W)``.
    Or it can be a map ``(B, C_x, h, w)`` of any size (e.g. coarser visual
    features): it is resized (linear, bilinear or trilinear, by rank) to the guided
    map's ``H x W``. Since such resizing and a 1x1 convolution commute, the projection
    runs at the smaller of the two resolutions. A map of size 1 in every dimension is
    treated as a vector.
    Beyond the paper, a token sequence ``(B, T, C_x)`` with an optional padding
    mask ``(B, T)`` is pooled to a vector by a masked mean (which equals pooling
    the projected tokens). With ``token_pooling="attention"`` (also not in the
    paper, which guides with one sentence vector) each position of the guided map
    instead attends over the real tokens and uses its attended vector as a
    per-position guidance: a map guidance derived from the words,
    :math:`X_p = \mathrm{softmax}_{\text{real } t}(q_p \cdot k_t / \sqrt{C'_l})\, L_t` with
    :math:`q = W_q Y` (``attention_query``, 1x1) and :math:`k = W_k L`
    (``attention_key``, linear); a sample without real tokens gets a zero vector,
    as the mean gives. The guidance branch ``tanh(W1 x)`` of every fusion
    unit is computed once per forward, not once per use.

    Args:
        guidance_channels: :math:`C_x`, channels of the guidance input.
        guided_channels: :math:`C_y`, channels of the guided input.
        num_layers: Number of fusion-gate steps :math:`L` (paper: 5).
        heads: Bilinear heads per fusion unit (paper: 5).
        gate: ``"asgate"`` (paper, default), ``"convgru"``, ``"convlstm"``, or a
            :class:`~igf.gates.GateFactory` such as a gate class: called as
            ``gate(hidden_channels, kernel_size=..., device=..., dtype=...)``
            and returning a module with the call shape of :class:`~igf.ASGate`.
        hidden_channels: :math:`C'_v`, width of the iterated state ``G_t`` and
            ``F_t``. Default: ``guided_channels`` (the paper uses ``C_y / 2``
            in its first two encoder IGFs to save memory).
        guidance_hidden_channels: :math:`C'_l`, width of the projected guidance
            ``x``. Default: ``hidden_channels``.
        out_channels: Channels of the output. Default: ``guided_channels``.
        output_mode: What the output convolution reads (paper Table 5):
            ``"all_fusions"`` (default, Eq. 4) ``[F_1..F_L]``; ``"last_fusion"``
            ``F_L``; ``"last_gate"`` ``G_L``; ``"fusions_and_last_gate"``
            ``[F_1..F_{L-1}; G_L]``. Only modules whose output is read are built:
            in ``"all_fusions"`` and ``"last_fusion"`` there are ``L - 1`` gates.
        kernel_size: Odd kernel size of the gates' and the output convolutions (paper: 3), one for
            every spatial dimension or one per dimension (e.g. ``(1, 3, 3)`` in 3-D).
        spatial_dims: 1, 2 (default) or 3: the rank of the guided map (see above).
        guidance_1d: With ``spatial_dims=1`` only, what a guidance of three dims is: ``"tokens"``
            (default), a token sequence ``(B, T, C_x)``, or ``"map"``, a 1-D map ``(B, C_x, t)``
            resized to the guided length.
        token_pooling: How a token-sequence guidance becomes a guidance (not in the paper):
            ``"mean"`` (default), the masked mean, a vector; ``"attention"``, each guided
            position's attention over the tokens, a map (see above; adds ``attention_query``
            and ``attention_key``, :math:`C'_l` wide). Vector and map guidance are unaffected.
        checkpoint: Recompute each step's activations in the backward pass
            instead of storing them (activation checkpointing), trading
            compute for memory in training. No effect without autograd. With
            ``fused=True`` and ASGate gates a step keeps only ``G_{t-1}`` and
            ``G_t`` and its backward recomputes ``F_t`` and ``z_t`` only
            (:class:`igf.fused.CheckpointedASGateStep`); otherwise each step runs
            under ``torch.utils.checkpoint``.
        fused: Run the fusion units and ASGate gates as the memory-lean fused
            functions of :mod:`igf.fused` when autograd records (default). They
            keep no ``h * C'_v``-wide tensor for backward and compute the same
            values. ``False`` gives the plain modules (autograd of standard ops).
            ``torch.export``, ONNX export and TorchScript tracing always take the
            plain path.
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    Inputs:
        - **guidance**: ``(B, C_x)`` vector, ``(B, C_x, h, w)`` map of any ``h, w``,
          or ``(B, T, C_x)`` token sequence.
        - **guided**: ``(B, C_y, H, W)``.
        - **guidance_mask** (keyword): ``(B, T)`` bool or integer padding mask
          of a token-sequence guidance (nonzero = real token); ``None`` = all tokens.
        - **return_intermediates** (keyword): also return every ``F_t`` and ``G_t``.

    Returns:
        ``(B, out_channels, H, W)``, or an :class:`IGFOutput` when
        ``return_intermediates=True``.

    Raises:
        ValueError: Non-positive sizes, unknown gate or output mode, or inputs
            whose shapes do not match the constructor (number of dims,
            channels, batch size) or have a zero-size dimension, or a
            ``guidance_mask`` that does not match a token-sequence guidance.
        TypeError: Non-tensor or non-floating-point inputs, inputs whose dtype
            differs from the parameters' outside autocast, or a ``gate`` that is
            neither a known name nor callable.

    State dict keys: ``guidance_proj``, ``guided_proj`` (1x1 convolutions),
    ``fusions.{t}`` (:class:`~igf.BilinearFusionUnit`), ``gates.{t}``,
    ``out_proj``; with ``token_pooling="attention"`` also ``attention_query``,
    ``attention_key``.

    Example:
        >>> import torch
        >>> from igf import IterativeGatedFusion
        >>> igf = IterativeGatedFusion(768, 256, num_layers=5, hidden_channels=128)
        >>> sentence = torch.randn(2, 768)
        >>> visual = torch.randn(2, 256, 30, 30)
        >>> igf(sentence, visual).shape
        torch.Size([2, 256, 30, 30])
        >>> coarse = torch.randn(2, 768, 15, 15)
        >>> out = igf(coarse, visual, return_intermediates=True)
        >>> len(out.fusions), len(out.gates)
        (5, 4)
        >>> tokens, mask = torch.randn(2, 7, 768), torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
        >>> igf(tokens, visual, guidance_mask=mask).shape
        torch.Size([2, 256, 30, 30])
    """

    def __init__(
        self,
        guidance_channels: int,
        guided_channels: int,
        *,
        num_layers: int = 5,
        heads: int = 5,
        gate: str | GateFactory = "asgate",
        hidden_channels: int | None = None,
        guidance_hidden_channels: int | None = None,
        out_channels: int | None = None,
        output_mode: OutputMode = "all_fusions",
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int = 2,
        guidance_1d: Guidance1D = "tokens",
        token_pooling: TokenPooling = "mean",
        checkpoint: bool = False,
        fused: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.guidance_channels = check_positive_int("guidance_channels", guidance_channels)
        self.guided_channels = check_positive_int("guided_channels", guided_channels)
        self.num_layers = check_positive_int("num_layers", num_layers)
        check_positive_int("heads", heads)
        hidden_channels = guided_channels if hidden_channels is None else hidden_channels
        self.hidden_channels = check_positive_int("hidden_channels", hidden_channels)
        guidance_hidden_channels = hidden_channels if guidance_hidden_channels is None else guidance_hidden_channels
        check_positive_int("guidance_hidden_channels", guidance_hidden_channels)
        out_channels = guided_channels if out_channels is None else out_channels
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.output_mode = check_choice("output_mode", output_mode, OUTPUT_MODES)
        self.spatial_dims = rank = check_spatial_dims(spatial_dims)
        self.kernel_size = kernel_tuple(rank, kernel_size)
        self.guidance_1d = check_choice("guidance_1d", guidance_1d, ("tokens", "map"))
        if guidance_1d == "map" and rank != 1:
            raise ValueError(f"guidance_1d='map' is for spatial_dims=1 (a 1-D guidance map), got spatial_dims={rank}")
        self.token_pooling = check_choice("token_pooling", token_pooling, TOKEN_POOLINGS)
        if token_pooling == "attention" and guidance_1d == "map":
            raise ValueError("token_pooling='attention' pools token guidance, but guidance_1d='map' reads no tokens")
        self.heads = heads
        self.guidance_hidden_channels = guidance_hidden_channels
        self.checkpoint = bool(checkpoint)
        self.fused = bool(fused)
        gate_factory = _resolve_gate(gate)
        self.gate_name = gate if isinstance(gate, str) else getattr(gate, "__name__", repr(gate))
        self.guidance_proj = conv_layer(
            rank, guidance_channels, guidance_hidden_channels, 1, device=device, dtype=dtype
        )
        self.guided_proj = conv_layer(rank, guided_channels, hidden_channels, 1, device=device, dtype=dtype)
        self.attention_query: nn.Module | None = None
        self.attention_key: nn.Module | None = None
        if token_pooling == "attention":
            self.attention_query = conv_layer(
                rank, guided_channels, guidance_hidden_channels, 1, device=device, dtype=dtype
            )
            self.attention_key = nn.Linear(guidance_channels, guidance_hidden_channels, device=device, dtype=dtype)
        self.fusions = nn.ModuleList(
            BilinearFusionUnit(
                guidance_hidden_channels,
                hidden_channels,
                heads=heads,
                spatial_dims=rank,
                fused=fused,
                device=device,
                dtype=dtype,
            )
            for _ in range(num_layers)
        )
        num_gates = num_layers if output_mode in _MODES_USING_LAST_GATE else num_layers - 1
        # a factory written for 2-D maps is called as before; other ranks are named to it
        gate_kwargs: dict[str, Any] = {"device": device, "dtype": dtype} | ({} if rank == 2 else {"spatial_dims": rank})
        gate_kernel = kernel_size if isinstance(kernel_size, int) else self.kernel_size
        self.gates = nn.ModuleList(
            gate_factory(hidden_channels, kernel_size=gate_kernel, **gate_kwargs) for _ in range(num_gates)
        )
        for built_gate in self.gates:
            if isinstance(built_gate, ASGate):
                built_gate.fused = self.fused
        read_maps = num_layers if output_mode in _MODES_CONCATENATING else 1
        self.out_proj = conv_layer(
            rank, read_maps * hidden_channels, out_channels, self.kernel_size, device=device, dtype=dtype
        )

    @overload
    def forward(
        self,
        guidance: Tensor,
        guided: Tensor,
        *,
        guidance_mask: Tensor | None = ...,
        return_intermediates: Literal[False] = ...,
    ) -> Tensor: ...

    @overload
    def forward(
        self,
        guidance: Tensor,
        guided: Tensor,
        *,
        guidance_mask: Tensor | None = ...,
        return_intermediates: Literal[True],
    ) -> IGFOutput: ...

    def forward(
        self,
        guidance: Tensor,
        guided: Tensor,
        *,
        guidance_mask: Tensor | None = None,
        return_intermediates: bool = False,
    ) -> Tensor | IGFOutput:
        """Fuse ``guidance`` into ``guided`` over the L steps (Eq. 1-3) and read the output (Eq. 4).

        Shapes are written for ``spatial_dims=2``: ``H, W`` stands for ``T`` in 1-D and ``D, H, W`` in 3-D.

        Args:
            guidance: :math:`X`: a vector ``(B, C_x)``; a map ``(B, C_x, h, w)`` of any size, resized
                to ``(H, W)``; or a token sequence ``(B, T, C_x)``, pooled as ``token_pooling`` says.
            guided: :math:`Y`, ``(B, C_y, H, W)``. ``B`` may be 0 (an empty output of the right shape).
            guidance_mask: ``(B, T)`` bool or integer padding mask of a token sequence
                (nonzero = real token); ``None`` = every token is real.
            return_intermediates: Also return every :math:`F_t` and :math:`G_t`.

        Returns:
            ``(B, out_channels, H, W)``; with ``return_intermediates=True`` an :class:`IGFOutput`
            ``(output, fusions, gates)``, each ``F_t`` and ``G_t`` ``(B, C'_v, H, W)``.

        Raises:
            ValueError: Inputs whose number of dims (for the rank), channels or batch size do not
                match the constructor, a zero-size dimension other than ``B``, or a bad ``guidance_mask``.
            TypeError: Non-tensor or non-floating-point inputs, or a dtype that differs from the
                parameters' outside autocast.
        """
        self._check_inputs(guidance, guided, guidance_mask)
        size = tuple(guided.shape[2:])
        if self._is_token_sequence(guidance) and self.token_pooling == "attention":
            guidance = self._attend_to_tokens(guidance, guided, guidance_mask)
        elif self._is_token_sequence(guidance):
            guidance = self._project_guidance(masked_mean(guidance, guidance_mask), size)
        else:
            guidance = self._project_guidance(guidance, size)
        hidden = self.guided_proj(guided)
        if self.checkpoint and self._lean_checkpoint_applies():
            output, fusions, gates = self._forward_lean_checkpoint(guidance, hidden)
        else:
            output, fusions, gates = self._forward_steps(guidance, hidden)
        if return_intermediates:
            return IGFOutput(output, tuple(fusions), tuple(gates))
        return output

    def _forward_steps(self, guidance: Tensor, hidden: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Steps t = 1..L (Eq. 1-3), each under ``torch.utils.checkpoint`` if asked, then Eq. 4."""
        cell: Tensor | None = None
        fusions: list[Tensor] = []
        gates: list[Tensor] = []
        for step in range(self.num_layers):
            if self.checkpoint and torch.is_grad_enabled():
                fusion, next_hidden, next_cell = activation_checkpoint(
                    self._step, step, guidance, hidden, cell, use_reentrant=False
                )
            else:
                fusion, next_hidden, next_cell = self._step(step, guidance, hidden, cell)
            fusions.append(fusion)
            if next_hidden is not None:
                hidden, cell = next_hidden, next_cell
                gates.append(hidden)
        return self.out_proj(self._read_maps(fusions, hidden)), fusions, gates

    def _read_maps(self, fusions: list[Tensor], last_hidden: Tensor) -> Tensor:
        """What the output convolution reads in ``output_mode`` (paper Table 5)."""
        if self.output_mode == "all_fusions":
            return torch.cat(fusions, dim=1)
        if self.output_mode == "last_fusion":
            return fusions[-1]
        if self.output_mode == "last_gate":
            return last_hidden
        return torch.cat([*fusions[:-1], last_hidden], dim=1)

    def _lean_checkpoint_applies(self) -> bool:
        """The fused checkpointed step needs the fused path and plain ASGate gates (not subclasses)."""
        return fused_path_applies(self.fused) and all(type(gate) is ASGate for gate in self.gates)

    def _forward_lean_checkpoint(self, guidance: Tensor, hidden: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``checkpoint=True`` with ASGate: :class:`~igf.fused.CheckpointedASGateStep` per step.

        The output convolution (Eq. 4) is split by input channels: each step adds
        ``conv(F_t, W_out[:, t])`` so that no ``F_t`` is kept; bias and a read ``G_L`` are added last.
        """
        width = self.hidden_channels
        weight, bias = autocast_cast(self.out_proj.weight, self.out_proj.bias)  # one copy, sliced per step
        assert weight is not None and bias is not None
        read_fusions = {"all_fusions": range(self.num_layers), "last_fusion": [self.num_layers - 1]}.get(
            self.output_mode, range(self.num_layers - 1) if self.output_mode == "fusions_and_last_gate" else []
        )
        slot = {step: index for index, step in enumerate(read_fusions)}
        fusions: list[Tensor] = []
        gates: list[Tensor] = []
        partials: list[Tensor] = []
        for step in range(self.num_layers):
            unit = cast(BilinearFusionUnit, self.fusions[step])
            gate = cast(ASGate, self.gates[step]) if step < len(self.gates) else None
            w_out = weight[:, slot[step] * width : (slot[step] + 1) * width] if step in slot else None
            convs = (unit.proj_guidance, unit.proj_guided) + (() if gate is None else (gate.conv_z, gate.conv_g))
            params = [p for conv in convs for p in (conv.weight, conv.bias)]
            x, h, *cast_params = autocast_cast(guidance, hidden, *params)
            if gate is None:
                cast_params += [None] * 4
            with autocast_off(hidden):
                fusion, next_hidden, partial = CheckpointedASGateStep.apply(
                    x, h, *cast_params[:4], unit.heads, *cast_params[4:], w_out
                )
            fusions.append(fusion)
            if w_out is not None:
                partials.append(partial)
            if gate is not None:
                hidden = next_hidden
                gates.append(hidden)
        if self.output_mode in _MODES_USING_LAST_GATE:
            (last_hidden,) = autocast_cast(hidden)
            assert last_hidden is not None
            partials.append(conv_same(last_hidden, weight[:, len(read_fusions) * width :]))
        return torch.stack(partials).sum(0) + bias.view(-1, *(1,) * self.spatial_dims), fusions, gates

    def _step(
        self, step: int, guidance: Tensor, hidden: Tensor, cell: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """One fusion-gate iteration: ``F_t = Fusion_t(x, G_{t-1})``, ``G_t = Gate_t(F_t, G_{t-1})``."""
        unit = cast(BilinearFusionUnit, self.fusions[step])
        fusion = unit.fuse_unchecked(guidance, hidden)
        if step >= len(self.gates):  # G_L is not read by the output: not built, not run.
            return fusion, None, None
        next_hidden, next_cell = self.gates[step](fusion, hidden, cell)
        return fusion, next_hidden, next_cell

    def _is_token_sequence(self, guidance: Tensor) -> bool:
        """Whether ``guidance`` is a token sequence ``(B, T, C_x)`` (three dims, unless ``guidance_1d="map"``)."""
        return guidance.dim() == 3 and self.guidance_1d == "tokens"

    def _attend_to_tokens(self, tokens: Tensor, guided: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` for ``token_pooling="attention"``: each position's attended tokens, projected, ``(B, C'_l, *spatial)``.

        The tokens are projected before the attention (``T`` vectors, not one per position): the
        attention weights of a position sum to one, or to zero for a sample without real tokens,
        whose ``x`` is then the projection's bias, the projection of a zero vector.
        """
        assert self.attention_query is not None and self.attention_key is not None
        if mask is not None:  # padding selected away before any product (it may hold NaN or inf)
            tokens = torch.where(
                mask.bool()[..., None], tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device)
            )
        weight, bias = self.guidance_proj.weight, self.guidance_proj.bias
        queries = self.attention_query(guided).flatten(2).transpose(1, 2)  # (B, N, C'_l)
        attended = masked_attention(queries, self.attention_key(tokens), F.linear(tokens, weight.flatten(1)), mask)
        per_position = torch.unflatten(attended.transpose(1, 2), 2, guided.shape[2:])  # (B, C'_l, *spatial)
        assert bias is not None
        return per_position + bias.view(-1, *(1,) * self.spatial_dims)

    def _project_guidance(self, guidance: Tensor, size: tuple[int, ...]) -> Tensor:
        """``x = Conv1x1(X)``: ``(B, C'_l)`` for a vector, ``(B, C'_l, *size)`` for a map."""
        weight, bias = self.guidance_proj.weight, self.guidance_proj.bias
        if guidance.dim() > 2 and all(extent == 1 for extent in guidance.shape[2:]):
            guidance = guidance.flatten(1)  # a map of size 1 resizes to a constant map: it is a vector
        if guidance.dim() == 2:
            return F.linear(guidance, weight.flatten(1), bias)
        if tuple(guidance.shape[2:]) == size:
            return cast(Tensor, self.guidance_proj(guidance))
        if math.prod(guidance.shape[2:]) < math.prod(size):
            # Project at the lower resolution, then resize (interpolation weights sum to one: same result).
            return resize_to(self.guidance_proj(guidance), size)
        return cast(Tensor, self.guidance_proj(resize_to(guidance, size)))

    def _check_inputs(self, guidance: Tensor, guided: Tensor, guidance_mask: Tensor | None) -> None:
        rank = self.spatial_dims
        check_tensor("guided", guided, ndims=(2 + rank,), layout=guided_layout(rank, "C_y"), spatial_dims=rank)
        forms = {2: "(B, C_x)", 3: "(B, T, C_x)", 2 + rank: guided_layout(rank, "C_x", any_size=True)}
        if rank == 1:
            forms[3] = "(B, T, C_x)" if self.guidance_1d == "tokens" else guided_layout(1, "C_x", any_size=True)
        layout = ", ".join(forms[ndim] for ndim in sorted(forms)[:-1]) + " or " + forms[max(forms)]
        check_tensor("guidance", guidance, ndims=sorted(forms), layout=layout, spatial_dims=rank)
        if guidance_mask is not None:
            check_guidance_mask(guidance_mask, guidance, is_token_sequence=self._is_token_sequence(guidance))
        check_channels("guided", guided, self.guided_channels)
        check_channels("guidance", guidance, self.guidance_channels, dim=2 if self._is_token_sequence(guidance) else 1)
        check_same_batch("guidance", guidance, "guided", guided)
        check_parameter_dtype("guided", guided, self.guided_proj.weight)
        check_parameter_dtype("guidance", guidance, self.guidance_proj.weight)

    def extra_repr(self) -> str:
        one_d = f", guidance_1d={self.guidance_1d!r}" if self.spatial_dims == 1 else ""
        return (
            f"guidance_channels={self.guidance_channels}, guided_channels={self.guided_channels}, "
            f"num_layers={self.num_layers}, heads={self.heads}, gate={self.gate_name!r}, "
            f"hidden_channels={self.hidden_channels}, guidance_hidden_channels={self.guidance_hidden_channels}, "
            f"out_channels={self.out_channels}, output_mode={self.output_mode!r}, kernel_size={self.kernel_size}, "
            f"spatial_dims={self.spatial_dims}{one_d}, token_pooling={self.token_pooling!r}, "
            f"checkpoint={self.checkpoint}, fused={self.fused}"
        )


def _resolve_gate(gate: str | GateFactory) -> GateFactory:
    if isinstance(gate, str):
        check_choice("gate", gate, tuple(GATES))
        return GATES[gate]
    if not callable(gate):
        raise TypeError(f"gate must be one of {list(GATES)} or a callable gate factory, got {type(gate).__name__}")
    return gate
