"""A built-in procedural referring-segmentation dataset (no download, deterministic by seed).

Every scene holds 3 or more flat objects (a colour, a shape and a size each) on a noisy
background, with an exact mask per object, and one expression that singles out the target.
The scene is built around the target so that the image alone cannot tell which object is
meant: there is always

* a distractor of the target's colour with another shape ("the red circle" vs a red square),
* a distractor of the target's shape with another colour (vs a blue circle),

so at least two words are needed. A share of scenes (``size_probability``) also holds a twin of
the target in the other size ("the big red circle" vs a small red circle), and a share
(``position_probability``) holds an identical twin placed clearly apart, told apart by a position
word ("the red circle on the left", "the top red circle"). Extra distractors never match the
expression. Scene ``i`` of a split depends only on ``(seed, split, i)``.

This is the main job's dataset (``configs/cpu_synthetic.yaml``), and it stays frozen: its colour,
shape and size tables (:data:`COLOURS`, :data:`SHAPES`, ``_RADIUS``) are its own, apart from those
of the benchmark's scene generator (:mod:`dcmfnet.data.scenes`, :mod:`dcmfnet.data.benchmark`: five
colours of other RGB values, a cross, radius ranges, occlusion and clutter). Sharing either table
would change the scenes drawn for every seed, so the main job would train and be scored on other
data, and the results measured on it (the README's, and every run's ``metrics.jsonl``) would no
longer be reproducible by the same command. Only the shape geometry is shared (:func:`~dcmfnet.data.scenes.shape_mask`,
``SHAPE_EXTENT``), as it draws the same pixels for both. A new kind of scene belongs in the
benchmark's generator.

Example::

    >>> ds = SyntheticReferring(split="val", num_samples=4, image_size=64)
    >>> raw = ds.raw(0)
    >>> raw.image.shape, raw.mask.dtype, isinstance(raw.expression, str)
    ((64, 64, 3), dtype('bool'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dcmfnet.data.base import RawSample, ReferringDataset
from dcmfnet.data.scenes import SHAPE_EXTENT, SceneObject, shape_mask
from dcmfnet.data.transforms import ReferringTransform

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "VOCABULARY",
    "Scene",
    "SceneObject",
    "SyntheticReferring",
    "generate_scene",
]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 40),
    "green": (40, 180, 60),
    "blue": (50, 100, 235),
    "yellow": (235, 215, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "big")
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Object radius as a fraction of the image side, per size word.
_RADIUS = {"small": 0.085, "big": 0.14}
_POSITION_WORDS = {"x": ("left", "right"), "y": ("top", "bottom")}

#: Every word the expressions use (for word-level text encoders).
VOCABULARY: tuple[str, ...] = (
    "the",
    "on",
    "at",
    "left",
    "right",
    "top",
    "bottom",
    *SIZES,
    *COLOURS,
    *SHAPES,
)


@dataclass(frozen=True)
class Scene:
    """A rendered scene.

    Attributes:
        image: ``(S, S, 3)`` uint8.
        masks: ``(N, S, S)`` bool, one exact mask per object (objects never overlap).
        objects: the ``N`` objects.
        target: index of the referred object.
        expression: the referring expression.
        kind: how the expression disambiguates: ``"attributes"``, ``"size"`` or ``"position"``.
    """

    image: np.ndarray
    masks: np.ndarray
    objects: tuple[SceneObject, ...]
    target: int
    expression: str
    kind: str


def _place(
    rng: np.random.Generator,
    specs: list[tuple[str, str, str]],
    image_size: int,
    *,
    twin_axis: str | None,
) -> list[SceneObject] | None:
    """Place objects without overlap; objects 0 and 1 are separated along ``twin_axis`` if given."""
    placed: list[SceneObject] = []
    margin = 1.0
    for k, (colour, shape, size) in enumerate(specs):
        radius = _RADIUS[size] * image_size
        extent = radius * SHAPE_EXTENT[shape]
        for _ in range(60):
            low, high = extent + margin, image_size - extent - margin
            cx, cy = rng.uniform(low, high, size=2)
            candidate = SceneObject(colour, shape, size, float(cx), float(cy), float(radius))
            if any(math.hypot(cx - o.cx, cy - o.cy) < extent + o.extent + 2.0 for o in placed):
                continue
            if k == 1 and twin_axis is not None:
                first = placed[0]
                d_main = abs(cx - first.cx) if twin_axis == "x" else abs(cy - first.cy)
                d_other = abs(cy - first.cy) if twin_axis == "x" else abs(cx - first.cx)
                if d_main < 0.25 * image_size or d_other > 0.6 * d_main:
                    continue
            placed.append(candidate)
            break
        else:
            return None
    return placed


def _render(rng: np.random.Generator, objects: list[SceneObject], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    background = rng.uniform(15, 70, size=3)
    image = np.empty((image_size, image_size, 3), dtype=np.float32)
    image[:] = background
    image += rng.normal(0.0, 6.0, size=image.shape)
    masks = np.zeros((len(objects), image_size, image_size), dtype=bool)
    for i, obj in enumerate(objects):
        masks[i] = shape_mask(obj, xx, yy)
        colour = np.asarray(COLOURS[obj.colour], dtype=np.float32) + rng.uniform(-20, 20, size=3)
        image[masks[i]] = colour + rng.normal(0.0, 4.0, size=(int(masks[i].sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), masks


def generate_scene(
    rng: np.random.Generator,
    *,
    image_size: int = 64,
    min_objects: int = 3,
    max_objects: int = 5,
    size_probability: float = 0.2,
    position_probability: float = 0.2,
) -> Scene:
    """Generate one scene and its expression.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        image_size: side ``S`` of the square image in pixels.
        min_objects: fewest objects in a scene (at least 3: target and two distractors).
        max_objects: most objects in a scene.
        size_probability: share of scenes whose target has a twin in the other size.
        position_probability: share of scenes whose target has an identical twin.

    Returns:
        the :class:`Scene`.
    """
    if min_objects < 3 or max_objects < min_objects:
        raise ValueError(f"need 3 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if image_size < 24:
        raise ValueError(f"image_size must be at least 24 pixels, got {image_size}")
    colours, shapes = list(COLOURS), list(SHAPES)
    while True:
        colour, shape, size = (
            colours[rng.integers(len(colours))],
            shapes[rng.integers(len(shapes))],
            SIZES[rng.integers(len(SIZES))],
        )
        u = rng.random()
        kind = (
            "size"
            if u < size_probability
            else "position"
            if u < size_probability + position_probability
            else "attributes"
        )
        other_size = SIZES[1 - SIZES.index(size)]
        specs = [(colour, shape, size)]
        if kind == "size":
            specs.append((colour, shape, other_size))
        elif kind == "position":
            specs.append((colour, shape, size))
        other_colours = [c for c in colours if c != colour]
        other_shapes = [s for s in shapes if s != shape]
        specs.append((colour, other_shapes[rng.integers(len(other_shapes))], SIZES[rng.integers(2)]))
        specs.append((other_colours[rng.integers(len(other_colours))], shape, SIZES[rng.integers(2)]))
        count = int(rng.integers(max(min_objects, len(specs)), max(max_objects, len(specs)) + 1))
        while len(specs) < count:
            c, s = colours[rng.integers(len(colours))], shapes[rng.integers(len(shapes))]
            if (c, s) != (colour, shape):  # extra distractors never match the expression
                specs.append((c, s, SIZES[rng.integers(2)]))
        twin_axis = ("x", "y")[rng.integers(2)] if kind == "position" else None
        placed = _place(rng, specs, image_size, twin_axis=twin_axis)
        if placed is not None:
            break
    words = [colour, shape]
    if kind == "size" or (kind == "attributes" and rng.random() < 0.3):
        words.insert(0, size)
    description = " ".join(words)
    if kind == "position":
        assert twin_axis is not None
        target, twin = placed[0], placed[1]
        first, second = _POSITION_WORDS[twin_axis]
        coordinate = (lambda o: o.cx) if twin_axis == "x" else (lambda o: o.cy)
        word = first if coordinate(target) < coordinate(twin) else second
        preposition = "on" if twin_axis == "x" else "at"
        templates = (f"the {word} {description}", f"the {description} {preposition} the {word}")
    else:
        templates = (description, f"the {description}")
    expression = templates[rng.integers(len(templates))]
    # shuffle object order so the target is not always first
    order = rng.permutation(len(placed))
    objects = [placed[i] for i in order]
    target = int(np.flatnonzero(order == 0)[0])
    image, masks = _render(rng, objects, image_size)
    return Scene(image=image, masks=masks, objects=tuple(objects), target=target, expression=expression, kind=kind)


class SyntheticReferring(ReferringDataset):
    """The built-in referring-segmentation dataset.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint random streams of scenes).
        num_samples: number of scenes in the split (one expression each).
        image_size: side of the generated square images.
        seed: dataset seed; scene ``i`` of ``split`` depends only on ``(seed, split, i)``.
        min_objects: fewest objects per scene (>= 3).
        max_objects: most objects per scene.
        size_probability: share of scenes disambiguated by a size word.
        position_probability: share of scenes disambiguated by a position word.
        transform: applied to each raw sample (``None``: tensors at the generated size).
    """

    def __init__(
        self,
        *,
        split: str,
        num_samples: int,
        image_size: int = 64,
        seed: int = 0,
        min_objects: int = 3,
        max_objects: int = 5,
        size_probability: float = 0.2,
        position_probability: float = 0.2,
        transform: ReferringTransform | None = None,
    ) -> None:
        super().__init__(transform=transform)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; the synthetic dataset has splits {SPLITS}")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.split = split
        self.num_samples = num_samples
        self.image_size = image_size
        self.seed = seed
        self.options = {
            "image_size": image_size,
            "min_objects": min_objects,
            "max_objects": max_objects,
            "size_probability": size_probability,
            "position_probability": position_probability,
        }

    def __len__(self) -> int:
        return self.num_samples

    def scene(self, index: int) -> Scene:
        """Generate scene ``index`` (deterministic)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        return generate_scene(rng, **self.options)  # type: ignore[arg-type]

    def raw(self, index: int) -> RawSample:
        scene = self.scene(index)
        return RawSample(
            image=scene.image,
            mask=scene.masks[scene.target],
            expression=scene.expression,
            image_id=f"synthetic-{self.split}-{index:06d}",
        )
