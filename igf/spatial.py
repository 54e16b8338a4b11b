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

from torch import nn

__all__ = ["SPATIAL_DIMS", "check_spatial_dims", "conv_class", "guided_layout", "interpolation_mode", "kernel_tuple"]

SPATIAL_DIMS: tuple[int, ...] = (1, 2, 3)
"""The spatial ranks igf supports."""

_CONVS: dict[int, type[nn.Conv1d] | type[nn.Conv2d] | type[nn.Conv3d]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_AXES = {1: ("T",), 2: ("H", "W"), 3: ("D", "H", "W")}


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


def guided_layout(spatial_dims: int, channels: str = "C") -> str:
    """The shape of a feature map of the rank, for messages: ``(B, C, T)``, ``(B, C, H, W)``, ``(B, C, D, H, W)``."""
    return "(" + ", ".join(("B", channels, *_AXES[check_spatial_dims(spatial_dims)])) + ")"


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
            f"kernel_size must be a positive odd int or {rank} of them for spatial_dims={rank}, got {kernel_size!r}"
        )
    return sizes
