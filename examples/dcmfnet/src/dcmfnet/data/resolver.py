"""The expression resolver: parse a benchmark expression and find what it refers to in a scene.

The resolver reads the words back into an :class:`~dcmfnet.data.expressions.Expression`
(:func:`parse`) and evaluates it on the scene's symbolic description (the objects' attributes
and centres), never on the generator's intent. Geometry words are judged with a margin, twice:

* *strictly* (clear margins): the referent must satisfy the expression this way;
* *leniently* (small margins): no other object may satisfy it even this way.

An expression refers to object ``i`` (:func:`resolve`) when both readings give exactly ``{i}``,
so a referent never hinges on a pixel. The margins are shares of the image side ``S``.

Example::

    >>> from dcmfnet.data.scenes import SceneObject
    >>> objects = [SceneObject("red", "circle", "big", 10, 30, 5), SceneObject("red", "circle", "big", 50, 30, 5)]
    >>> resolve("the left red circle", objects, 64)
    0
    >>> resolve("the red circle", objects, 64) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dcmfnet.data.expressions import (
    DIRECTIONS,
    ORDINALS,
    PLURALS,
    POSITION_PREPOSITION,
    RELATION_WORDS,
    Expression,
    Noun,
)
from dcmfnet.data.scenes import COLOURS, SHAPES, SIZES, SceneObject

__all__ = ["Margins", "parse", "referents", "resolve", "unique_referent"]


@dataclass(frozen=True)
class Margins:
    """Geometric margins, as shares of the image side.

    Attributes:
        rank: positions are uncertain by this much: a candidate counts as the ``k``-th from a side
            if it is under some shift of the positions by at most this (the same in both readings,
            so the referent is the only candidate that could be ``k``-th).
        direction: ``above``/``below``/``left_of``/``right_of``: the offset along the relation's
            axis is at least this, and the cross-axis offset at most ``cone`` times it.
        cone: see ``direction``.
        near: ``next_to``: the referent is at least this much nearer the landmark than any other
            candidate, and at most ``near_limit`` away from it (edge to edge).
        near_limit: see ``near``.
        between: ``between``: the projection onto the landmarks' segment lies in
            ``[between, 1 - between]`` and the distance to it is at most ``between_width`` of its length.
        between_width: see ``between``.
    """

    rank: float
    direction: float
    cone: float
    near: float
    near_limit: float
    between: float
    between_width: float


#: What the referent must satisfy.
STRICT = Margins(rank=0.1, direction=0.12, cone=1.0, near=0.1, near_limit=0.25, between=0.2, between_width=0.25)
#: What no other object may satisfy.
LENIENT = Margins(rank=0.1, direction=0.04, cone=1.5, near=-0.03, near_limit=0.35, between=0.08, between_width=0.4)


class _Words:
    """A cursor over an expression's words."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = text.lower().split()
        self.at = 0

    def peek(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def take(self, *expected: str) -> str:
        word = self.peek()
        if word is None or (expected and word not in expected):
            wanted = " or ".join(repr(e) for e in expected) or "a word"
            raise ValueError(f"cannot parse {self.text!r}: expected {wanted} at word {self.at + 1}, got {word!r}")
        self.at += 1
        return word

    def take_all(self, words: Sequence[str]) -> None:
        for word in words:
            self.take(word)


def _noun(words: _Words, *, plural: bool = False) -> Noun:
    size = words.take() if words.peek() in SIZES else None
    colour = words.take() if words.peek() in COLOURS else None
    if plural:
        word = words.take(*PLURALS.values())
        return Noun(next(s for s, p in PLURALS.items() if p == word), colour, size)
    return Noun(words.take(*SHAPES), colour, size)


def parse(text: str) -> Expression:
    """Read an expression of the benchmark grammar back into its meaning.

    Raises:
        ValueError: the text is not in the grammar (the message names the word).
    """
    words = _Words(text)
    words.take("the")
    rank, direction, ordinal = 0, None, False
    if words.peek() in ORDINALS:
        rank, ordinal = ORDINALS.index(words.take()) + 1, True
    elif words.peek() in DIRECTIONS:
        rank, direction = 1, words.take()
    head = _noun(words)
    relation, landmark = None, None
    following = words.peek()
    if ordinal:
        words.take_all(("from", "the"))
        direction = words.take(*DIRECTIONS)
    elif rank == 0 and following in ("on", "at"):
        words.take()
        words.take("the")
        direction = words.take(*(d for d, p in POSITION_PREPOSITION.items() if p == following))
        rank = 1
    elif rank == 0 and following is not None:
        for name, relation_words in RELATION_WORDS.items():
            if tuple(words.words[words.at : words.at + len(relation_words)]) == relation_words:
                relation = name
                words.take_all(relation_words)
                break
        else:
            words.take(*(w[0] for w in RELATION_WORDS.values()))  # raises, naming the word
        words.take("the")
        if relation == "between":
            words.take("two")
        landmark = _noun(words, plural=relation == "between")
    if words.peek() is not None:
        raise ValueError(f"cannot parse {text!r}: unexpected word {words.peek()!r} at word {words.at + 1}")
    return Expression(head, rank=rank, direction=direction, relation=relation, landmark=landmark)


def _matching(noun: Noun, objects: Sequence[SceneObject]) -> list[int]:
    return [i for i, o in enumerate(objects) if noun.matches(o.colour, o.shape, o.size)]


def _coordinate(obj: SceneObject, direction: str) -> float:
    """Position along ``direction`` (smaller = nearer that side of the image)."""
    return {"left": obj.cx, "right": -obj.cx, "top": obj.cy, "bottom": -obj.cy}[direction]


def _ranked(candidates: list[int], objects: Sequence[SceneObject], expr: Expression, margin: float) -> list[int]:
    """Candidates that can be the ``rank``-th from ``direction`` when positions are uncertain by ``margin``."""
    assert expr.direction is not None
    position = {i: _coordinate(objects[i], expr.direction) for i in candidates}
    chosen = []
    for i in candidates:
        surely_before = sum(position[j] < position[i] - margin for j in candidates if j != i)
        maybe_before = sum(position[j] < position[i] + margin for j in candidates if j != i)
        if surely_before <= expr.rank - 1 <= maybe_before:
            chosen.append(i)
    return chosen


def _directed(obj: SceneObject, landmark: SceneObject, relation: str, m: Margins, size: float) -> bool:
    dx, dy = obj.cx - landmark.cx, obj.cy - landmark.cy
    along, across = {"above": (-dy, dx), "below": (dy, dx), "left_of": (-dx, dy), "right_of": (dx, dy)}[relation]
    return along >= m.direction * size and abs(across) <= m.cone * along


def _gap(a: SceneObject, b: SceneObject) -> float:
    return math.hypot(a.cx - b.cx, a.cy - b.cy) - a.extent - b.extent


def _between(obj: SceneObject, ends: tuple[SceneObject, SceneObject], m: Margins) -> bool:
    (x0, y0), (x1, y1) = (ends[0].cx, ends[0].cy), (ends[1].cx, ends[1].cy)
    vx, vy = x1 - x0, y1 - y0
    length2 = vx * vx + vy * vy
    t = ((obj.cx - x0) * vx + (obj.cy - y0) * vy) / length2
    distance = abs((obj.cx - x0) * vy - (obj.cy - y0) * vx) / math.sqrt(length2)
    return m.between <= t <= 1.0 - m.between and distance <= m.between_width * math.sqrt(length2)


def referents(expr: Expression, objects: Sequence[SceneObject], image_size: int, margins: Margins) -> list[int]:
    """Indices of the objects ``expr`` fits with geometric ``margins`` (empty if a landmark is not unique).

    Args:
        expr: the meaning.
        objects: the scene's objects.
        image_size: side ``S`` of the image (margins are shares of it).
        margins: :data:`STRICT` or :data:`LENIENT`.
    """
    candidates = _matching(expr.head, objects)
    if expr.rank:
        return _ranked(candidates, objects, expr, margins.rank * image_size)
    if expr.relation is None:
        return candidates
    assert expr.landmark is not None
    marks = _matching(expr.landmark, objects)
    if len(marks) != (2 if expr.relation == "between" else 1):
        return []  # "the blue square" / "the two squares" must name exactly that many objects
    candidates = [i for i in candidates if i not in marks]
    if expr.relation == "between":
        ends = (objects[marks[0]], objects[marks[1]])
        return [i for i in candidates if _between(objects[i], ends, margins)]
    landmark = objects[marks[0]]
    if expr.relation == "next_to":
        gaps = {i: _gap(objects[i], landmark) for i in candidates}
        limit = margins.near_limit * image_size
        return [
            i
            for i in candidates
            if gaps[i] <= limit and all(gaps[j] - gaps[i] >= margins.near * image_size for j in gaps if j != i)
        ]
    return [i for i in candidates if _directed(objects[i], landmark, expr.relation, margins, image_size)]


def unique_referent(expr: Expression, objects: Sequence[SceneObject], image_size: int) -> int | None:
    """The one object ``expr`` refers to under both readings, or ``None`` if it is ambiguous or empty."""
    strict = referents(expr, objects, image_size, STRICT)
    if len(strict) != 1 or referents(expr, objects, image_size, LENIENT) != strict:
        return None
    return strict[0]


def resolve(text: str, objects: Sequence[SceneObject], image_size: int) -> int | None:
    """Parse ``text`` and return the one object it refers to, or ``None`` (see :func:`unique_referent`)."""
    return unique_referent(parse(text), objects, image_size)
