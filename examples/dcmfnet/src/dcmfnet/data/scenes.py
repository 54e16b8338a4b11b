"""Procedural scenes of the built-in benchmark: the symbolic description and its rendering.

A scene is a list of flat objects (a colour, a shape, a size, a centre and a radius in pixels)
painted back to front on a textured background with clutter. Objects may overlap, so a later
object can partly hide an earlier one; each object's mask is its *visible* part (as in the
REFER annotations). The symbolic description (:class:`SceneObject`) is what the expression
resolver (:mod:`dcmfnet.data.resolver`) reasons over; the image is what the model sees.

The main job's dataset (:mod:`dcmfnet.data.synthetic`) draws with its own, frozen colour, shape and
size tables, which differ from these: its module notes say why. Only the shape geometry
(:func:`shape_mask`, ``SHAPE_EXTENT``) is shared.

Example::

    >>> rng = np.random.default_rng(0)
    >>> objects = place_objects(rng, [("red", "circle", "big"), ("blue", "square", "small")], 64)
    >>> image, masks = render_scene(rng, objects, 64)
    >>> image.shape, masks.shape
    ((64, 64, 3), (2, 64, 64))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOURS",
    "MIN_VISIBLE",
    "SHAPES",
    "SHAPE_EXTENT",
    "SIZES",
    "SceneObject",
    "place_objects",
    "render_scene",
    "shape_mask",
    "visible_shares",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40),
    "yellow": (235, 225, 50),
    "green": (40, 175, 60),
    "blue": (45, 85, 240),
    "white": (235, 235, 235),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SIZES: tuple[str, ...] = ("small", "big")

#: Object radius range as a fraction of the image side, per size word (small objects are ~9 px wide at 64).
RADIUS_RANGE: dict[str, tuple[float, float]] = {"small": (0.065, 0.08), "big": (0.11, 0.14)}
#: Radius of the circle that holds each shape, relative to the object radius.
#: Radius of the circle containing each shape, in units of the object's radius.
SHAPE_EXTENT = {"circle": 1.0, "square": 0.85 * math.sqrt(2.0), "triangle": 1.15, "cross": 1.0}
#: Fewest share of an object's pixels that must stay visible under the objects painted after it.
MIN_VISIBLE = 0.6


@dataclass(frozen=True)
class SceneObject:
    """One object: attributes, centre ``(cx, cy)`` and radius in pixels (``y`` grows downwards)."""

    colour: str
    shape: str
    size: str
    cx: float
    cy: float
    radius: float

    @property
    def extent(self) -> float:
        """Radius of a circle that contains the shape."""
        return self.radius * SHAPE_EXTENT[self.shape]


def shape_mask(obj: SceneObject, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """The full (unoccluded) shape: a pixel belongs to it when its centre is inside.

    Args:
        obj: the object.
        xx: ``(S, S)`` pixel-centre x coordinates.
        yy: ``(S, S)`` pixel-centre y coordinates.

    Returns:
        ``(S, S)`` bool.
    """
    dx, dy = xx - obj.cx, yy - obj.cy
    r = obj.radius
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":
        return (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    if obj.shape == "cross":  # a plus sign: arms 0.66 r wide, 1.9 r long
        arm, reach = 0.33 * r, 0.95 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= reach)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= reach))
    # upward equilateral triangle with circumradius 1.15 r: apex at -R, base at +R/2
    big_r = SHAPE_EXTENT["triangle"] * r
    half_width = (dy + big_r) / (1.5 * big_r) * (big_r * math.sqrt(3.0) / 2.0)
    return (dy >= -big_r) & (dy <= big_r / 2.0) & (np.abs(dx) <= half_width)


def place_objects(
    rng: np.random.Generator,
    specs: list[tuple[str, str, str]],
    image_size: int,
    *,
    overlap: float = 0.0,
    centres: dict[int, tuple[float, float]] | None = None,
    scale: float = 1.0,
) -> list[SceneObject] | None:
    """Place objects at random inside the image.

    Args:
        rng: the random generator.
        specs: ``(colour, shape, size)`` per object, in painting order.
        image_size: side ``S`` of the image.
        overlap: how far two objects' bounding circles may overlap, as a share of the sum of
            their extents (0: apart; 0.3: centres may come as close as 70% of that sum); when
            positive, half the objects are drawn against an earlier one, so they overlap.
        centres: fixed centres of some objects (by index into ``specs``); the others are drawn.
        scale: multiplies the radii of :data:`RADIUS_RANGE`.

    Returns:
        the objects, or ``None`` when some object found no place in 60 tries (a fixed one: at once).
    """
    placed: list[SceneObject] = []
    centres = centres or {}
    for k, (colour, shape, size) in enumerate(specs):
        low_r, high_r = RADIUS_RANGE[size]
        radius = float(rng.uniform(low_r, high_r)) * image_size * scale
        extent = radius * SHAPE_EXTENT[shape]
        for _ in range(1 if k in centres else 60):
            if k in centres:
                cx, cy = centres[k]
            elif overlap > 0 and placed and rng.random() < 0.5:  # tuck it against an object: partial occlusion
                other = placed[int(rng.integers(len(placed)))]
                angle = rng.uniform(0, 2 * math.pi)
                distance = rng.uniform(1.0 - overlap, 1.0 - overlap / 3) * (extent + other.extent)
                cx, cy = other.cx + distance * math.cos(angle), other.cy + distance * math.sin(angle)
                if not extent * 0.8 <= min(cx, cy) <= max(cx, cy) <= image_size - extent * 0.8:
                    continue
            else:
                cx, cy = rng.uniform(extent * 0.8, image_size - extent * 0.8, size=2)
            if all(math.hypot(cx - o.cx, cy - o.cy) >= (1.0 - overlap) * (extent + o.extent) + 1.0 for o in placed):
                placed.append(SceneObject(colour, shape, size, float(cx), float(cy), radius))
                break
        else:
            return None
    return placed


def _background(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A dark textured background: flat, stripes, checkerboard or a gradient, plus noise."""
    size = xx.shape[0]
    base = rng.uniform(20, 95, size=3)
    amplitude = rng.uniform(8, 28)
    texture = int(rng.integers(4))
    if texture == 1:  # stripes in a random direction
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 12)
        pattern = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif texture == 2:  # checkerboard
        cell = rng.uniform(4, 10)
        pattern = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) * 2.0 - 1.0
    elif texture == 3:  # linear gradient
        angle = rng.uniform(0, 2 * math.pi)
        pattern = ((xx * math.cos(angle) + yy * math.sin(angle)) / size) * 2.0 - 1.0
    else:
        pattern = np.zeros_like(xx)
    tint = rng.uniform(0.5, 1.0, size=3)
    image = base + amplitude * pattern[..., None] * tint
    return image + rng.normal(0.0, 6.0, size=(*xx.shape, 3))


def _clutter(rng: np.random.Generator, image: np.ndarray, xx: np.ndarray, yy: np.ndarray, count: int) -> None:
    """Paint ``count`` thin greyish line segments (not objects: never referred to)."""
    size = xx.shape[0]
    for _ in range(count):
        x0, y0 = rng.uniform(0, size, size=2)
        angle, length = rng.uniform(0, math.pi), rng.uniform(0.15, 0.5) * size
        dx, dy = math.cos(angle), math.sin(angle)
        t = np.clip((xx - x0) * dx + (yy - y0) * dy, 0.0, length)
        distance = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
        grey = rng.uniform(70, 190) + rng.uniform(-15, 15, size=3)
        image[distance <= rng.uniform(0.5, 1.0)] = grey


def render_scene(
    rng: np.random.Generator,
    objects: list[SceneObject],
    image_size: int,
    *,
    clutter: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the objects in order (later ones on top) on a textured background with clutter.

    Args:
        rng: the random generator.
        objects: the ``N`` objects in painting order.
        image_size: side ``S`` of the image.
        clutter: number of clutter line segments under the objects.

    Returns:
        ``(S, S, 3)`` uint8 image and ``(N, S, S)`` bool visible masks (disjoint).
    """
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    image = _background(rng, xx, yy)
    _clutter(rng, image, xx, yy, clutter)
    masks = np.zeros((len(objects), image_size, image_size), dtype=bool)
    for i, obj in enumerate(objects):
        full = shape_mask(obj, xx, yy)
        masks[:i] &= ~full  # the new object hides what lies under it
        masks[i] = full
        colour = np.asarray(COLOURS[obj.colour], dtype=np.float32) + rng.uniform(-15, 15, size=3)
        shade = 1.0 + 0.12 * ((yy[full] - obj.cy) / max(obj.radius, 1.0))  # soft top light
        image[full] = colour * shade[:, None] + rng.normal(0.0, 5.0, size=(int(full.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), masks


def visible_shares(objects: list[SceneObject], masks: np.ndarray) -> np.ndarray:
    """Each object's visible share of its full shape, ``(N,)`` float."""
    size = masks.shape[-1]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    full = np.array([shape_mask(o, xx, yy).sum() for o in objects], dtype=np.float64)
    visible: np.ndarray = masks.reshape(len(objects), -1).sum(axis=1) / np.maximum(full, 1.0)
    return visible
