"""The built-in benchmark: three kinds of procedural referring scenes (no download, deterministic by seed).

Each scene holds ``min_objects``–``max_objects`` objects (5 colours, 4 shapes, 2 sizes, small
ones about 9 pixels wide at 64x64) on a textured background with clutter, partly hiding each other in a
share of scenes (:mod:`dcmfnet.data.scenes`). The scene is built around the target so the image
alone cannot tell which object is meant: objects share two of its three attributes, and when the
expression's form needs it, exact twins share all three, so a position, an ordinal or a relation
to another object is needed (:mod:`dcmfnet.data.expressions`). The expression is the shortest
of its form that singles out the target, and the resolver (:mod:`dcmfnet.data.resolver`)
parses it back and checks that it refers to the target and nothing else. Scene ``i`` of a split
depends only on ``(seed, kind, split, i)``.

Example::

    >>> ds = BenchmarkReferring(kind="refcocog_like", split="val", num_samples=4)
    >>> raw = ds.raw(0)
    >>> raw.image.shape, raw.mask.dtype
    ((64, 64, 3), dtype('bool'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dcmfnet.data.base import RawSample, ReferringDataset
from dcmfnet.data.expressions import DIRECTIONS, KINDS, ORDINALS, Expression, Grammar, Noun, realise
from dcmfnet.data.resolver import resolve, unique_referent
from dcmfnet.data.scenes import (
    COLOURS,
    MIN_VISIBLE,
    SHAPES,
    SIZES,
    SceneObject,
    place_objects,
    render_scene,
    visible_shares,
)
from dcmfnet.data.transforms import ReferringTransform

__all__ = ["SPLITS", "BenchmarkReferring", "BenchmarkScene", "generate_benchmark_scene"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
_Spec = tuple[str, str, str]


@dataclass(frozen=True)
class BenchmarkScene:
    """A rendered scene and its expression.

    Attributes:
        image: ``(S, S, 3)`` uint8.
        masks: ``(N, S, S)`` bool visible masks (disjoint).
        objects: the ``N`` objects, in painting order.
        target: index of the referred object.
        expression: the referring expression.
        form: the expression's form (``attributes``, ``position``, ``ordinal``, ``relation``, ``between``).
    """

    image: np.ndarray
    masks: np.ndarray
    objects: tuple[SceneObject, ...]
    target: int
    expression: str
    form: str


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _random_spec(rng: np.random.Generator) -> _Spec:
    return _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _pick(rng, SIZES)


def _specs(rng: np.random.Generator, form: str, count: int) -> list[_Spec]:
    """Target first (then, for ``between``, the landmark pair), objects sharing two of its attributes,
    twins if ``form`` needs a modifier, then fillers."""
    colour, shape, size = target = _random_spec(rng)
    other_shapes = [s for s in SHAPES if s != shape]
    specs = [target]
    if form == "between":
        pair = (_pick(rng, list(COLOURS)), _pick(rng, other_shapes), _pick(rng, SIZES))
        specs += [pair, pair]
    specs.append((colour, _pick(rng, other_shapes), size))  # same colour and size
    specs.append((_pick(rng, [c for c in COLOURS if c != colour]), shape, size))  # same shape and size
    if rng.random() < 0.5:
        specs.append((colour, shape, SIZES[1 - SIZES.index(size)]))  # same colour and shape
    if form != "attributes":
        specs += [target] * (1 + int(rng.random() < 0.4))  # twins: only the modifier tells them apart
    while len(specs) < count:
        specs.append(_random_spec(rng))
    return specs


def _between_centres(rng: np.random.Generator, image_size: int) -> dict[int, tuple[float, float]]:
    """Centres of the target (0) on the segment between the landmark pair (1, 2), at least half the image apart."""
    low, high = 0.12 * image_size, 0.88 * image_size
    while True:
        (x1, y1), (x2, y2) = rng.uniform(low, high, size=(2, 2))
        length = math.hypot(x2 - x1, y2 - y1)
        if length >= 0.5 * image_size:
            break
    t, offset = rng.uniform(0.35, 0.65), rng.uniform(-0.1, 0.1) * length
    cx = x1 + t * (x2 - x1) - offset * (y2 - y1) / length
    cy = y1 + t * (y2 - y1) + offset * (x2 - x1) / length
    return {0: (float(cx), float(cy)), 1: (float(x1), float(y1)), 2: (float(x2), float(y2))}


def _nouns(obj: SceneObject) -> list[list[Noun]]:
    """The nouns that fit ``obj``, grouped by length (shape; +colour or +size; all three)."""
    return [
        [Noun(obj.shape)],
        [Noun(obj.shape, obj.colour), Noun(obj.shape, size=obj.size)],
        [Noun(obj.shape, obj.colour, obj.size)],
    ]


def _count(noun: Noun, objects: list[SceneObject]) -> int:
    return sum(noun.matches(o.colour, o.shape, o.size) for o in objects)


def _landmarks(rng: np.random.Generator, objects: list[SceneObject], target: int, relation: str) -> list[Noun]:
    """Shortest nouns naming exactly one other object (two for ``between``), in random order."""
    wanted = 2 if relation == "between" else 1
    found: list[Noun] = []
    for j in rng.permutation(len(objects)):
        if j == target:
            continue
        for group in _nouns(objects[j]):
            fits = [n for n in group if _count(n, objects) == wanted and not _fits(n, objects[target])]
            if fits:
                found.append(fits[int(rng.integers(len(fits)))])
                break
    return list(dict.fromkeys(found))


def _fits(noun: Noun, obj: SceneObject) -> bool:
    return noun.matches(obj.colour, obj.shape, obj.size)


def _modifiers(
    rng: np.random.Generator, form: str, relation: str | None, head: Noun, objects: list[SceneObject], target: int
) -> list[Expression]:
    """Every expression of ``form`` (and ``relation``) with this head, in random order."""
    if form == "attributes":
        return [Expression(head)]
    if form in ("position", "ordinal"):
        ranks = [1] if form == "position" else list(range(1, len(ORDINALS) + 1))
        found = [Expression(head, rank=k, direction=d) for k in ranks for d in DIRECTIONS]
    else:
        assert relation is not None
        found = [Expression(head, relation=relation, landmark=m) for m in _landmarks(rng, objects, target, relation)]
    return [found[i] for i in rng.permutation(len(found))]


def _describe(
    rng: np.random.Generator, form: str, relation: str | None, objects: list[SceneObject], target: int, size: int
) -> Expression | None:
    """The shortest expression of ``form`` that singles out ``objects[target]``, or ``None``.

    Apart from the ``attributes`` form, the head noun alone must fit several objects (the
    modifier is needed).
    """
    for group in _nouns(objects[target]):
        for h in rng.permutation(len(group)):
            head = group[h]
            if form != "attributes" and _count(head, objects) < 2:
                continue
            for expr in _modifiers(rng, form, relation, head, objects, target):
                if unique_referent(expr, objects, size) == target:
                    return expr
    return None


def _choose_form(rng: np.random.Generator, grammar: Grammar) -> tuple[str, str | None]:
    """A form by the grammar's shares, and for ``relation`` one of its relations (``between`` for ``between``)."""
    forms = list(grammar.forms)
    shares = np.asarray([grammar.forms[f] for f in forms], dtype=np.float64)
    form = forms[int(rng.choice(len(forms), p=shares / shares.sum()))]
    relation = _pick(rng, grammar.relations) if form == "relation" else "between" if form == "between" else None
    return form, relation


def generate_benchmark_scene(
    rng: np.random.Generator,
    kind: str,
    *,
    image_size: int = 64,
    min_objects: int = 4,
    max_objects: int = 8,
    occlusion_probability: float = 0.5,
    max_overlap: float = 0.45,
    clutter: int = 4,
    object_scale: float = 1.0,
) -> BenchmarkScene:
    """Generate one scene of ``kind`` and its expression.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        kind: one of :data:`~dcmfnet.data.expressions.KINDS`.
        image_size: side ``S`` of the square image.
        min_objects: fewest objects (at least 4).
        max_objects: most objects.
        occlusion_probability: share of scenes whose objects may overlap (the later one on top).
        max_overlap: how far objects overlap in those scenes (``overlap`` of :func:`place_objects`);
            every object keeps at least 60% of its pixels visible.
        clutter: most clutter line segments in the background.
        object_scale: multiplies every object's radius (1: small objects ~9 px wide at 64x64).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown benchmark kind {kind!r}; valid: {sorted(KINDS)}")
    if not 4 <= min_objects <= max_objects:
        raise ValueError(f"need 4 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    grammar = KINDS[kind]
    # the first draw, fixed before the scene so retries keep the shares (BenchmarkReferring.form draws it alone)
    form, relation = _choose_form(rng, grammar)
    while True:
        specs = _specs(rng, form, int(rng.integers(min_objects, max_objects + 1)))
        overlap = max_overlap if rng.random() < occlusion_probability else 0.0
        centres = _between_centres(rng, image_size) if form == "between" else None
        placed = place_objects(rng, specs, image_size, overlap=overlap, centres=centres, scale=object_scale)
        if placed is None:
            continue
        order = rng.permutation(len(placed))  # painting order; the target is placed[0]
        objects = [placed[i] for i in order]
        target = int(np.flatnonzero(order == 0)[0])
        meaning = _describe(rng, form, relation, objects, target, image_size)
        if meaning is None:
            continue
        style = _pick(rng, grammar.rank_styles) if form == "position" else "ordinal"
        expression = realise(meaning, style=style)
        if resolve(expression, objects, image_size) != target:  # the words, read back, must say the same
            continue
        image, masks = render_scene(rng, objects, image_size, clutter=int(rng.integers(clutter + 1)))
        if visible_shares(objects, masks).min() < MIN_VISIBLE:
            continue
        return BenchmarkScene(image, masks, tuple(objects), target, expression, form)


class BenchmarkReferring(ReferringDataset):
    """One kind of the built-in benchmark as a referring dataset.

    Args:
        kind: ``refcoco_like``, ``refcocoplus_like`` or ``refcocog_like``.
        split: ``train``, ``val`` or ``test`` (disjoint random streams of scenes).
        num_samples: scenes in the split (one expression each).
        seed: dataset seed; scene ``i`` depends only on ``(seed, kind, split, i)``.
        transform: applied to each raw sample (``None``: tensors at the generated size).
        cache: keep generated samples in memory (a scene costs a few milliseconds; 8000 samples
            of 64x64 take about 130 MB).
        **options: passed to :func:`generate_benchmark_scene` (``image_size``, ``min_objects`` …).
    """

    def __init__(
        self,
        *,
        kind: str,
        split: str,
        num_samples: int,
        seed: int = 0,
        transform: ReferringTransform | None = None,
        cache: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(transform=transform)
        if kind not in KINDS:
            raise ValueError(f"unknown benchmark kind {kind!r}; valid: {sorted(KINDS)}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; the benchmark has splits {SPLITS}")
        if num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.kind, self.split, self.num_samples, self.seed = kind, split, num_samples, seed
        self.options = options
        self._cache: dict[int, RawSample] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, index: int) -> np.random.Generator:
        """The random stream of scene ``index``: a function of ``(seed, kind, split, index)``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return np.random.default_rng([self.seed, list(KINDS).index(self.kind), SPLITS.index(self.split), index])

    def scene(self, index: int) -> BenchmarkScene:
        """Generate scene ``index`` (deterministic; not cached, a few milliseconds)."""
        return generate_benchmark_scene(self._rng(index), self.kind, **self.options)

    def form(self, index: int) -> str:
        """The expression form of sample ``index``, ``scene(index).form``, without generating the scene.

        The form is the scene's first random draw, so this takes microseconds (no image is rendered).
        """
        return _choose_form(self._rng(index), KINDS[self.kind])[0]

    def raw(self, index: int) -> RawSample:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = self.scene(index)
        sample = RawSample(
            image=scene.image,
            mask=scene.masks[scene.target].copy(),
            expression=scene.expression,
            image_id=f"{self.kind}-{self.split}-{index:06d}",
        )
        if self._cache is not None:
            self._cache[index] = sample
        return sample
