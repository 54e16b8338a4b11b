"""Read an image as a viewer shows it: one reader for ``predict``, the Python API and the demo.

Every input becomes an ``(H, W, 3)`` uint8 RGB array in the orientation a viewer displays:

- **EXIF orientation** is applied (:func:`PIL.ImageOps.exif_transpose`): a phone photo stored
  sideways with orientation 6 comes out upright, and so does the mask predicted for it.
- **16- and 32-bit greyscale** (Pillow modes ``I;16``, ``I``, ``F``; arrays of any dtype other than
  uint8) is scaled linearly from the image's own value range ``[min, max]`` to ``[0, 255]``
  (a constant image becomes black), instead of being clipped to white.
- **Palette** images are converted to RGB (through RGBA when the palette has transparency).
- **Transparency** (RGBA, LA, palette transparency) is composited over :data:`BACKGROUND`
  (white, as most viewers and browsers show it); pass ``background`` to choose another colour.
- **Size**: the pixel count is read from the file's header, before any pixel is decoded, and an
  image over ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) is refused with a message giving
  its size and the cap. Decoding a 12000×12000 PNG would take seconds and gigabytes.

What is trusted: an image file is only decoded by Pillow, never executed; a file Pillow cannot
decode (truncated, not an image) is an :class:`ImageReadError` that names it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dcmfnet.errors import ImageReadError, InputError

__all__ = ["BACKGROUND", "DEFAULT_MAX_PIXELS", "ImageReadError", "image_from_array", "image_from_pil", "read_image"]

BACKGROUND: tuple[int, int, int] = (255, 255, 255)
"""Colour that transparent pixels are composited over (white)."""

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image accepted by default: 64 megapixels (192 MB as 8-bit RGB)."""

_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """Read an image file as the ``(H, W, 3)`` uint8 RGB array a viewer shows (see the module notes).

    Args:
        path: The image file (any format Pillow reads).
        max_pixels: Refuse images with more pixels than this (checked from the header); ``None``: no cap.
        background: RGB colour under transparent pixels.

    Raises:
        ImageReadError: The file does not exist or cannot be decoded.
        InputError: The image has more than ``max_pixels`` pixels.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"image {path} is a folder; expected an image file (PNG, JPEG or any format Pillow reads)")
    if not path.is_file():
        raise ImageReadError(f"image {path} does not exist")
    try:
        with Image.open(path) as handle:  # reads the header only
            _check_pixels(handle.size, max_pixels, f"image {path}")
            handle.load()
            return image_from_pil(handle, max_pixels=None, background=background)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise ImageReadError(f"cannot read image {path}: {error}") from error


def image_from_pil(
    image: Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """A PIL image as the ``(H, W, 3)`` uint8 RGB array a viewer shows (EXIF orientation applied).

    Raises:
        InputError: The image has more than ``max_pixels`` pixels.
    """
    _check_pixels(image.size, max_pixels, "image")
    image = ImageOps.exif_transpose(image)
    if image.mode in _HIGH_DEPTH_MODES:
        return image_from_array(np.asarray(image), max_pixels=None)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return image_from_array(np.asarray(image.convert("RGBA")), max_pixels=None, background=background)
    return np.array(image.convert("RGB"))


def image_from_array(
    array: np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = BACKGROUND,
) -> np.ndarray:
    """An ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` array as an ``(H, W, 3)`` uint8 RGB array.

    uint8 is taken as is, bool as 0/255, any other dtype is scaled from its value range
    ``[min, max]`` to ``[0, 255]``. A fourth channel is alpha, composited over ``background``.

    Raises:
        InputError: Another shape, a non-numeric dtype, non-finite values, or more than ``max_pixels`` pixels.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if min(array.shape[:2]) == 0:
        raise InputError(f"the image array is empty: shape {array.shape}")
    _check_pixels((array.shape[1], array.shape[0]), max_pixels, "image array")
    pixels = _to_uint8(array)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:].astype(np.float32) / 255.0
        colour = np.asarray(background, dtype=np.float32)
        blended = pixels[:, :, :3].astype(np.float32) * alpha + colour * (1.0 - alpha)
        return np.rint(blended).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as is, bool as 0/255, other numbers scaled from ``[min, max]`` to ``[0, 255]``."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"expected a numeric image array, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError("the image array holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.rint(scaled).astype(np.uint8)


def _check_pixels(size: tuple[int, int], max_pixels: int | None, what: str) -> None:
    """Refuse a ``(width, height)`` with more than ``max_pixels`` pixels."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{what} is {width}x{height} = {width * height:,} pixels, over the cap of {max_pixels:,} pixels "
            "(raise max_pixels / --max-pixels to accept it)"
        )
