"""The spatial rank of a layer: 1-D sequences ``(B, C, T)``, 2-D maps ``(B, C, H, W)``, 3-D volumes ``(B, C, D, H, W)``.

Every igf layer takes ``spatial_dims`` (1, 2 or 3; 2 by default) at construction and builds its
convolutions with :func:`conv_class`; guidance maps are resized with the rank's interpolation
(:func:`igf.functional.resize_to`). :func:`guided_layout` names the expected shape in error messages.

Example::

    >>> conv_class(3)
    <class 'torch.nn.modules.conv.Conv3d'>
    >>> guided_layout(1, "C_y")
    '(B, C_y, T)'
    >>> kernel_tuple(3, (1, 3, 3))
    (1, 3, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SPATIAL_DIMS",
    "check_spatial_dims",
    "conv_class",
    "conv_layer",
    "conv_same",
    "guided_layout",
    "interpolation_mode",
    "kernel_tuple",
    "same_padding",
]

SPATIAL_DIMS: tuple[int, ...] = (1, 2, 3)
"""The spatial ranks igf supports."""

_CONVS: dict[int, type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_AXES = {1: ("T",), 2: ("H", "W"), 3: ("D", "H", "W")}
_CONV_FUNCTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def check_spatial_dims(spatial_dims: object) -> int:
    """Return ``spatial_dims`` if it is 1, 2 or 3 (an ``int``, not a ``bool``), else raise ``ValueError``."""
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int) or spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {list(SPATIAL_DIMS)}, got {spatial_dims!r}")
    return spatial_dims


def conv_class(spatial_dims: int) -> type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Conv3d`` for ``spatial_dims`` 1, 2 or 3."""
    return _CONVS[check_spatial_dims(spatial_dims)]


def interpolation_mode(spatial_dims: int) -> str:
    """``F.interpolate``'s smooth mode for the rank: ``linear``, ``bilinear`` or ``trilinear``."""
    return _MODES[check_spatial_dims(spatial_dims)]


def guided_layout(spatial_dims: int, channels: str = "C", *, any_size: bool = False) -> str:
    """The shape of a feature map of the rank, for messages: ``(B, C, T)``, ``(B, C, H, W)``, ``(B, C, D, H, W)``.

    With ``any_size=True`` the axes are lower case (``(B, C, h, w)``): a map of any size, e.g. a guidance
    map that is resized to the guided map.
    """
    axes = _AXES[check_spatial_dims(spatial_dims)]
    return "(" + ", ".join(("B", channels, *(axis.lower() if any_size else axis for axis in axes))) + ")"


def kernel_tuple(spatial_dims: int, kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """A kernel size as one odd, positive int per spatial dimension (``same`` padding is ``k // 2``).

    Args:
        spatial_dims: 1, 2 or 3.
        kernel_size: one int for every dimension, or a sequence of ``spatial_dims`` ints (e.g. ``(1, 3, 3)``
            for a video: no mixing across frames).

    Raises:
        ValueError: a size that is not a positive odd int, or a sequence of the wrong length.
    """
    rank = check_spatial_dims(spatial_dims)
    sizes = (kernel_size,) * rank if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(sizes) != rank or not all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 == 1 for k in sizes
    ):
        raise ValueError(
            f"kernel_size must be odd and positive (so that padding keeps the size): one int or {rank} of them "
            f"for spatial_dims={rank}, got {kernel_size!r}"
        )
    return sizes


def conv_layer(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Conv1d | nn.Conv2d | nn.Conv3d:
    """A convolution of the rank with bias and ``same`` padding (``k // 2`` per dimension; ``kernel_size`` checked).

    Example::

        >>> conv_layer(3, 4, 8, (1, 3, 3))
        Conv3d(4, 8, kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))
    """
    kernel = kernel_tuple(spatial_dims, kernel_size)
    padding = tuple(size // 2 for size in kernel)
    conv = conv_class(spatial_dims)
    return conv(in_channels, out_channels, kernel, padding=padding, device=device, dtype=dtype)  # type: ignore[arg-type]


def same_padding(weight: Tensor) -> list[int]:
    """The padding ``k // 2`` per spatial dimension that keeps the size for a convolution ``weight`` of odd kernel."""
    return [size // 2 for size in weight.shape[2:]]


def conv_same(inputs: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The convolution of the weight's rank (``conv1d``/``conv2d``/``conv3d``) with :func:`same_padding`.

    Args:
        inputs: ``(B, C_in, *spatial)`` with ``weight.dim() - 2`` spatial dimensions.
        weight: ``(C_out, C_in, *kernel)``, every kernel size odd.
        bias: ``(C_out,)`` or ``None``.

    Returns:
        ``(B, C_out, *spatial)``.
    """
    return _CONV_FUNCTIONS[weight.dim() - 2](inputs, weight, bias, padding=same_padding(weight))
