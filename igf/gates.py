"""Gating units of IGF: ASGate (paper Eq. 3, Fig. 5) and the ConvGRU / ConvLSTM alternatives (Table 6).

Every gate has the same call shape, which is also the contract for a custom gate
passed to :class:`~igf.IterativeGatedFusion`::

    new_hidden, new_cell = gate(fusion, hidden, cell)

``fusion`` is the fusion unit's output :math:`F_t`, ``hidden`` the previous gate
output :math:`G_{t-1}` (both ``(B, C, H, W)``), and ``cell`` an optional extra
recurrent state (only :class:`ConvLSTMGate` uses it; the others return ``None``).
A gate is built as ``factory(channels, *, kernel_size, device, dtype)``, plus
``spatial_dims=`` for a rank other than 2.

Every gate takes ``spatial_dims`` (1, 2 by default, or 3): its maps are then
``(B, C, T)``, ``(B, C, H, W)`` or ``(B, C, D, H, W)`` and its convolutions have
that rank, with one kernel size for every dimension or one per dimension
(e.g. ``(1, 3, 3)``: no mixing across the frames of a clip). Shapes below are
written for ``spatial_dims=2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

import torch
from torch import Tensor, nn

from igf._autocast import autocast_cast, autocast_off
from igf._in_place import concat_with_product, sigmoid_of_temporary
from igf._validation import check_channels, check_positive_int, check_tensor
from igf.cpu_tanh import tanh, tanh_of_temporary
from igf.fused import FusedASGate, fused_path_applies
from igf.spatial import check_spatial_dims, conv_layer, guided_layout, kernel_tuple

__all__ = ["GATES", "ASGate", "ConvGRUGate", "ConvLSTMGate", "GateFactory"]


class GateFactory(Protocol):
    """Anything that builds a gate module: a gate class or a function with this signature.

    ``factory(channels, *, kernel_size, device, dtype)`` must return an
    ``nn.Module`` called as ``new_hidden, new_cell = gate(fusion, hidden, cell)``
    with ``fusion`` and ``hidden`` of shape ``(B, channels, H, W)``; ``new_cell``
    is any extra recurrent state (or ``None``) handed back at the next step.
    :class:`~igf.IterativeGatedFusion` passes ``spatial_dims=`` too when its rank is
    not 2 (maps ``(B, channels, T)`` or ``(B, channels, D, H, W)``), so a factory
    written for 2-D maps needs no change.

    Example:
        >>> import torch
        >>> from igf import ASGate, IterativeGatedFusion
        >>> class ResidualASGate(ASGate):
        ...     def forward(self, fusion, hidden, cell=None):
        ...         new_hidden, _ = super().forward(fusion, hidden)
        ...         return hidden + new_hidden, None
        >>> igf = IterativeGatedFusion(16, 8, num_layers=3, gate=ResidualASGate)
        >>> igf(torch.randn(2, 16), torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __call__(
        self,
        channels: int,
        *,
        kernel_size: int | tuple[int, ...],
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> nn.Module: ...


class _ConvGate(nn.Module):
    """Shared constructor arguments and input checks of the convolutional gates."""

    def __init__(self, channels: int, kernel_size: int | Sequence[int], spatial_dims: int) -> None:
        super().__init__()
        self.channels = check_positive_int("channels", channels)
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.kernel_size = kernel_tuple(spatial_dims, kernel_size)

    def _check_inputs(self, fusion: Tensor, hidden: Tensor, cell: Tensor | None) -> None:
        rank, layout = self.spatial_dims, guided_layout(self.spatial_dims)
        check_tensor("fusion", fusion, ndims=(2 + rank,), layout=layout, spatial_dims=rank)
        check_tensor("hidden", hidden, ndims=(2 + rank,), layout=layout, spatial_dims=rank)
        check_channels("fusion", fusion, self.channels)
        if hidden.shape != fusion.shape:
            raise ValueError(f"hidden must have the shape of fusion {tuple(fusion.shape)}, got {tuple(hidden.shape)}")
        if cell is not None and cell.shape != fusion.shape:
            raise ValueError(f"cell must have the shape of fusion {tuple(fusion.shape)}, got {tuple(cell.shape)}")

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, spatial_dims={self.spatial_dims}"


class ASGate(_ConvGate):
    r"""Adaptive Selection Gate (paper Eq. 3).

    .. math::

        z_t &= \sigma(W_z * (F_t + G_{t-1}) + b_z) \\
        f_t &= F_t \odot z_t \\
        G_t &= \tanh(W_g * [F_t; f_t] + b_g)

    Args:
        channels: :math:`C'_v`, channels of ``fusion`` and ``hidden``.
        kernel_size: Odd kernel size of both convolutions (paper: 3), or one per spatial dimension.
        spatial_dims: 1, 2 (default) or 3: the rank of the maps.
        fused: Use the memory-lean fused function when autograd records (see below).
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    Inputs:
        - **fusion**: :math:`F_t`, ``(B, C, H, W)``.
        - **hidden**: :math:`G_{t-1}`, ``(B, C, H, W)``.
        - **cell**: ignored; accepted for the common gate call shape.

    Returns:
        ``(G_t, None)`` with ``G_t`` of shape ``(B, C, H, W)``.

    With ``fused=True`` (default) a training forward runs as
    :class:`igf.fused.FusedASGate`, which keeps ``F_t``, ``G_{t-1}``, ``z_t`` and
    ``G_t`` for backward and recomputes ``F_t + G_{t-1}`` and ``[F_t; f_t]`` there.

    State dict keys: ``conv_z`` (:math:`W_z`), ``conv_g`` (:math:`W_g`).
    At ``channels=256`` it has 1,769,984 parameters (paper Table 6).

    Example:
        >>> import torch
        >>> from igf import ASGate
        >>> gate = ASGate(8)
        >>> fusion, hidden = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
        >>> new_hidden, _ = gate(fusion, hidden)
        >>> new_hidden.shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int = 2,
        fused: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, spatial_dims)
        self.fused = bool(fused)
        kernel = self.kernel_size
        self.conv_z = conv_layer(spatial_dims, channels, channels, kernel, device=device, dtype=dtype)
        self.conv_g = conv_layer(spatial_dims, 2 * channels, channels, kernel, device=device, dtype=dtype)

    def forward(self, fusion: Tensor, hidden: Tensor, cell: Tensor | None = None) -> tuple[Tensor, None]:
        """One ASGate step (Eq. 3); shapes for ``spatial_dims=2`` (``(T,)`` in 1-D, ``(D, H, W)`` in 3-D).

        Args:
            fusion: :math:`F_t`, ``(B, C, H, W)``; ``B`` may be 0.
            hidden: :math:`G_{t-1}`, ``(B, C, H, W)``.
            cell: Ignored; accepted for the common gate call shape.

        Returns:
            ``(G_t, None)``, ``G_t`` of shape ``(B, C, H, W)``.
        """
        self._check_inputs(fusion, hidden, None)
        if fused_path_applies(self.fused):
            conv_z, conv_g = self.conv_z, self.conv_g
            args = autocast_cast(fusion, hidden, conv_z.weight, conv_z.bias, conv_g.weight, conv_g.bias)
            with autocast_off(fusion):
                new_hidden: Tensor = FusedASGate.apply(*args)[0]
            return new_hidden, None
        selection = sigmoid_of_temporary(self.conv_z(fusion + hidden))
        return tanh_of_temporary(self.conv_g(concat_with_product(fusion, selection))), None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fused={self.fused}"


class ConvGRUGate(_ConvGate):
    r"""Convolutional GRU cell as an IGF gate (paper Table 6), with :math:`F_t` as input.

    .. math::

        [r_t; u_t] &= \sigma(W_{ru} * [F_t; G_{t-1}] + b_{ru}) \\
        \tilde n_t &= \tanh(W_n * [F_t; r_t \odot G_{t-1}] + b_n) \\
        G_t &= (1 - u_t) \odot G_{t-1} + u_t \odot \tilde n_t

    Args:
        channels: :math:`C'_v`, channels of ``fusion`` and ``hidden``.
        kernel_size: Odd kernel size of both convolutions (paper: 3), or one per spatial dimension.
        spatial_dims: 1, 2 (default) or 3: the rank of the maps.
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    Inputs:
        - **fusion**: :math:`F_t`, ``(B, C, H, W)``.
        - **hidden**: :math:`G_{t-1}`, ``(B, C, H, W)``.
        - **cell**: ignored; accepted for the common gate call shape.

    Returns:
        ``(G_t, None)`` with ``G_t`` of shape ``(B, C, H, W)``.

    State dict keys: ``conv_gates`` (reset then update channels), ``conv_candidate``.
    At ``channels=256`` it has 3,539,712 parameters (paper Table 6).

    Example:
        >>> import torch
        >>> from igf import ConvGRUGate
        >>> gate = ConvGRUGate(8)
        >>> new_hidden, _ = gate(torch.randn(1, 8, 4, 6), torch.randn(1, 8, 4, 6))
        >>> new_hidden.shape
        torch.Size([1, 8, 4, 6])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, spatial_dims)
        kernel = self.kernel_size
        self.conv_gates = conv_layer(spatial_dims, 2 * channels, 2 * channels, kernel, device=device, dtype=dtype)
        self.conv_candidate = conv_layer(spatial_dims, 2 * channels, channels, kernel, device=device, dtype=dtype)

    def forward(self, fusion: Tensor, hidden: Tensor, cell: Tensor | None = None) -> tuple[Tensor, None]:
        """One ConvGRU step; shapes for ``spatial_dims=2`` (``(T,)`` in 1-D, ``(D, H, W)`` in 3-D).

        Args:
            fusion: :math:`F_t`, ``(B, C, H, W)``; ``B`` may be 0.
            hidden: :math:`G_{t-1}`, ``(B, C, H, W)``.
            cell: Ignored; accepted for the common gate call shape.

        Returns:
            ``(G_t, None)``, ``G_t`` of shape ``(B, C, H, W)``.
        """
        self._check_inputs(fusion, hidden, None)
        reset, update = torch.sigmoid(self.conv_gates(torch.cat([fusion, hidden], dim=1))).chunk(2, dim=1)
        candidate = tanh(self.conv_candidate(torch.cat([fusion, reset * hidden], dim=1)))
        return torch.lerp(hidden, candidate, update), None


class ConvLSTMGate(_ConvGate):
    r"""Convolutional LSTM cell (no peepholes) as an IGF gate (paper Table 6).

    .. math::

        [i_t; f_t; o_t] &= \sigma(\cdot),\ g_t = \tanh(\cdot)
            \ \text{ of }\ W * [F_t; G_{t-1}] + b \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        G_t &= o_t \odot \tanh(c_t)

    The cell state starts at zero with ``hidden``'s dtype, device and shape.

    Args:
        channels: :math:`C'_v`, channels of ``fusion`` and ``hidden``.
        kernel_size: Odd kernel size of the convolution (paper: 3), or one per spatial dimension.
        spatial_dims: 1, 2 (default) or 3: the rank of the maps.
        device: Factory argument for the parameters.
        dtype: Factory argument for the parameters.

    Inputs:
        - **fusion**: :math:`F_t`, ``(B, C, H, W)``.
        - **hidden**: :math:`G_{t-1}`, ``(B, C, H, W)``.
        - **cell**: :math:`c_{t-1}`, ``(B, C, H, W)``, or ``None`` for zeros.

    Returns:
        ``(G_t, c_t)``, both ``(B, C, H, W)``.

    State dict key: ``conv`` with output channels ordered ``(i, f, o, g)``.
    At ``channels=256`` it has 4,719,616 parameters (paper Table 6).

    Example:
        >>> import torch
        >>> from igf import ConvLSTMGate
        >>> gate = ConvLSTMGate(8)
        >>> hidden, cell = gate(torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4))
        >>> hidden, cell = gate(torch.randn(1, 8, 4, 4), hidden, cell)
        >>> cell.shape
        torch.Size([1, 8, 4, 4])
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, spatial_dims)
        self.conv = conv_layer(spatial_dims, 2 * channels, 4 * channels, self.kernel_size, device=device, dtype=dtype)

    def forward(self, fusion: Tensor, hidden: Tensor, cell: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One ConvLSTM step; shapes for ``spatial_dims=2`` (``(T,)`` in 1-D, ``(D, H, W)`` in 3-D).

        Args:
            fusion: :math:`F_t`, ``(B, C, H, W)``; ``B`` may be 0.
            hidden: :math:`G_{t-1}`, ``(B, C, H, W)``.
            cell: :math:`c_{t-1}`, ``(B, C, H, W)``, or ``None`` for zeros.

        Returns:
            ``(G_t, c_t)``, both ``(B, C, H, W)``.
        """
        self._check_inputs(fusion, hidden, cell)
        gates = self.conv(torch.cat([fusion, hidden], dim=1))
        input_gate, forget_gate, output_gate, candidate = gates.chunk(4, dim=1)
        new_cell = torch.sigmoid(input_gate) * tanh(candidate)
        if cell is not None:
            new_cell = new_cell + torch.sigmoid(forget_gate) * cell
        return torch.sigmoid(output_gate) * tanh(new_cell), new_cell


GATES: Mapping[str, GateFactory] = MappingProxyType(
    {"asgate": ASGate, "convgru": ConvGRUGate, "convlstm": ConvLSTMGate}
)
"""Built-in gates by the name :class:`~igf.IterativeGatedFusion` accepts for ``gate=``."""
