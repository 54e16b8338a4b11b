"""The mask overlay (``predict --output``, the demo, the galleries) shows on an object of any colour."""

from __future__ import annotations

import numpy as np
import pytest

from dcmfnet.visualize import OVERLAY_TINTS, contrasting_tint, overlay_mask

#: Object colours to draw on, including each tint itself and black and white.
OBJECT_COLOURS = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (240, 240, 240), (10, 10, 10), *OVERLAY_TINTS]


def scene(colour: tuple[int, int, int], background: tuple[int, int, int] = (128, 128, 128)) -> tuple[np.ndarray, ...]:
    """A 64x64 image with a disc of ``colour`` (the mask) on ``background``."""
    ys, xs = np.mgrid[:64, :64]
    mask = (ys - 32) ** 2 + (xs - 30) ** 2 <= 14**2
    image = np.empty((64, 64, 3), dtype=np.uint8)
    image[...] = background
    image[mask] = colour
    return image, mask


def rings(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 1-pixel band just inside the mask's edge and the one just outside it."""
    padded = np.pad(mask, 1)
    neighbours = [padded[2:, 1:-1], padded[:-2, 1:-1], padded[1:-1, 2:], padded[1:-1, :-2]]
    inner = mask & ~np.logical_and.reduce(neighbours)
    outer = ~mask & np.logical_or.reduce(neighbours)
    return inner, outer


def distance(a: np.ndarray, b: np.ndarray | tuple[int, int, int]) -> np.ndarray:
    return np.linalg.norm(a.astype(np.float32) - np.asarray(b, dtype=np.float32), axis=-1)


@pytest.mark.parametrize("colour", OBJECT_COLOURS)
def test_outline_and_tint_stand_out_from_the_object(colour: tuple[int, int, int]) -> None:
    image, mask = scene(colour)
    out = overlay_mask(image, mask)
    inner, outer = rings(mask)
    # The outline differs strongly from the object (a translucent red outline on a red object moved
    # one channel by 35 of 255).
    assert distance(out[inner], colour).min() > 150, f"outline too close to the object {colour}"
    # The tinted inside changes visibly, the outside band contrasts with the outline.
    inside = mask & ~inner
    assert distance(out[inside], colour).min() > 70
    assert distance(out[outer], out[inner][0]).min() > 150
    # Far from the mask nothing changes.
    far = ~mask & ~outer
    assert np.array_equal(out[far], image[far])


def test_red_object_is_not_tinted_red() -> None:
    image, mask = scene((220, 30, 30))
    out = overlay_mask(image, mask)
    assert contrasting_tint(image[mask]) != (255, 40, 40)
    inner, _ = rings(mask)
    assert np.abs(out[inner].astype(int) - (220, 30, 30)).max() > 150


def test_outline_shows_on_a_background_of_the_tint() -> None:
    """The black-or-white band outside keeps the edge visible where the background has the tint's colour."""
    image, mask = scene((220, 30, 30))
    tint = contrasting_tint(image[mask])
    image[~mask] = tint
    out = overlay_mask(image, mask)
    _, outer = rings(mask)
    assert distance(out[outer], tint).min() > 150


def test_fixed_colour_width_and_inputs() -> None:
    image, mask = scene((30, 200, 40))
    out = overlay_mask(image, mask, colour=(255, 0, 255), alpha=0.0, outline_width=2)
    inner, _ = rings(mask)
    assert (out[inner] == (255, 0, 255)).all()
    two_in = mask & ~inner & ~rings(mask & ~inner)[0]
    assert np.array_equal(out[two_in], image[two_in])  # alpha 0: beyond the 2-pixel band the image is kept
    assert np.array_equal(overlay_mask(image, np.zeros_like(mask)), image)
    with pytest.raises(ValueError, match=r"differ in size"):
        overlay_mask(image, mask[:10])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        overlay_mask(image, mask, alpha=1.5)
    with pytest.raises(ValueError, match=r"outline_width must be at least 1, got 0"):
        overlay_mask(image, mask, outline_width=0)
