"""The referring-expression grammar of the built-in benchmark: meaning, words and the three kinds.

An :class:`Expression` is the meaning of a referring expression: a head noun phrase
(``[size] [colour] shape``) with at most one modifier,

* a rank: the ``rank``-th matching object counted from a ``direction`` ("the left red circle",
  "the square at the top", "the second square from the left");
* a relation to landmark objects: ``above``, ``below``, ``left_of``, ``right_of``, ``next_to``
  one landmark ("the small circle below the blue square"), or ``between`` the two objects that a
  plural noun names ("the triangle between the two squares").

:func:`realise` turns a meaning into words; :func:`dcmfnet.data.resolver.parse` reads the words
back. The three kinds mirror the paper's datasets (§4.1; docs/guides/reproducing.rst):

* ``refcoco_like``: short; appearance words and absolute position words ("the left red circle");
* ``refcocoplus_like``: no absolute position words; appearance words and relations to other
  objects ("the circle above the blue square", "the square next to the small triangle");
* ``refcocog_like``: longer; relations between objects, ``between`` and ordinals.

Example::

    >>> realise(Expression(Noun("circle", "red"), rank=2, direction="left"))
    'the second red circle from the left'
"""

from __future__ import annotations

from dataclasses import dataclass

from dcmfnet.data.scenes import COLOURS, SHAPES, SIZES

__all__ = [
    "ABSOLUTE_POSITION_WORDS",
    "DIRECTIONS",
    "KINDS",
    "ORDINALS",
    "PLURALS",
    "RELATIONS",
    "VOCABULARY",
    "Expression",
    "Grammar",
    "Noun",
    "realise",
]

DIRECTIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
ORDINALS: tuple[str, ...] = ("first", "second", "third")
RELATIONS: tuple[str, ...] = ("above", "below", "left_of", "right_of", "next_to", "between")
#: The words of each relation; ``between`` is followed by "the two" and a plural noun.
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "above": ("above",),
    "below": ("below",),
    "left_of": ("to", "the", "left", "of"),
    "right_of": ("to", "the", "right", "of"),
    "next_to": ("next", "to"),
    "between": ("between",),
}
#: "on the left", "at the top" (a rank-1 phrase after the noun).
POSITION_PREPOSITION: dict[str, str] = {"left": "on", "right": "on", "top": "at", "bottom": "at"}
#: Words that place an object in the image frame (RefCOCO+ forbids them, so does ``refcocoplus_like``).
ABSOLUTE_POSITION_WORDS: frozenset[str] = frozenset({*DIRECTIONS, *ORDINALS, "leftmost", "rightmost", "middle"})

#: The plural of each shape word ("the two crosses").
PLURALS: dict[str, str] = {shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES}
#: Every word an expression of any kind can use (for the word-level text encoder).
VOCABULARY: tuple[str, ...] = (
    "the", "on", "at", "of", "to", "from", "next", "above", "below", "between", "two",
    *DIRECTIONS, *ORDINALS, *SIZES, *COLOURS, *SHAPES, *PLURALS.values(),
)  # fmt: skip


@dataclass(frozen=True)
class Noun:
    """A noun phrase ``[size] [colour] shape``: the objects with these attributes."""

    shape: str
    colour: str | None = None
    size: str | None = None

    def matches(self, colour: str, shape: str, size: str) -> bool:
        """Whether an object with these attributes fits the noun."""
        return shape == self.shape and self.colour in (None, colour) and self.size in (None, size)

    def words(self, *, plural: bool = False) -> list[str]:
        """``[size] [colour] shape[s]``."""
        return [w for w in (self.size, self.colour) if w is not None] + [PLURALS[self.shape] if plural else self.shape]


@dataclass(frozen=True)
class Expression:
    """The meaning of a referring expression (see the module docstring).

    Attributes:
        head: the kind of object referred to.
        rank: ``k`` for "the k-th ``head`` from ``direction``" (1: the extreme one); 0 for none.
        direction: one of :data:`DIRECTIONS` when ``rank`` is set.
        relation: one of :data:`RELATIONS` or ``None``.
        landmark: the related object (a noun matching exactly one object), or for ``between``
            the plural noun matching exactly two objects.
    """

    head: Noun
    rank: int = 0
    direction: str | None = None
    relation: str | None = None
    landmark: Noun | None = None

    def __post_init__(self) -> None:
        if self.rank and self.relation:
            raise ValueError("an expression has a rank or a relation, not both")
        if bool(self.rank) != (self.direction is not None):
            raise ValueError(f"a rank needs a direction and a direction a rank, got {self.rank}, {self.direction}")
        if (self.relation is None) != (self.landmark is None):
            raise ValueError("a relation needs a landmark and a landmark a relation")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        if not 0 <= self.rank <= len(ORDINALS):
            raise ValueError(f"rank must be in 0..{len(ORDINALS)}, got {self.rank}")


def realise(expression: Expression, *, style: str = "ordinal") -> str:
    """Words for ``expression``.

    Args:
        expression: the meaning.
        style: how a rank of 1 is said: ``"adjective"`` ("the left red circle"), ``"phrase"``
            ("the red circle on the left") or ``"ordinal"`` ("the first red circle from the
            left"); ranks above 1 are always ordinals.

    Returns:
        the expression, lower case, words separated by single spaces.
    """
    head = expression.head.words()
    if expression.rank:
        direction = expression.direction
        assert direction is not None
        if expression.rank == 1 and style == "adjective":
            words = ["the", direction, *head]
        elif expression.rank == 1 and style == "phrase":
            words = ["the", *head, POSITION_PREPOSITION[direction], "the", direction]
        else:
            words = ["the", ORDINALS[expression.rank - 1], *head, "from", "the", direction]
    elif expression.relation is not None:
        assert expression.landmark is not None
        relation = list(RELATION_WORDS[expression.relation])
        if expression.relation == "between":
            words = ["the", *head, *relation, "the", "two", *expression.landmark.words(plural=True)]
        else:
            words = ["the", *head, *relation, "the", *expression.landmark.words()]
    else:
        words = ["the", *head]
    return " ".join(words)


@dataclass(frozen=True)
class Grammar:
    """What expressions one kind of the benchmark uses.

    Attributes:
        forms: share of each expression form: ``attributes`` (the head alone), ``position``
            (rank 1 said with a position word), ``ordinal`` (rank 1–3 said with an ordinal),
            ``relation`` (one landmark) and ``between``.
        relations: the binary relations the ``relation`` form may use.
        rank_styles: how the ``position`` form says rank 1 (see :func:`realise`).
    """

    forms: dict[str, float]
    relations: tuple[str, ...] = ()
    rank_styles: tuple[str, ...] = ("adjective", "phrase")


#: The three kinds (docs/guides/reproducing.rst).
KINDS: dict[str, Grammar] = {
    "refcoco_like": Grammar(forms={"attributes": 0.3, "position": 0.7}),
    "refcocoplus_like": Grammar(forms={"attributes": 0.3, "relation": 0.7}, relations=("above", "below", "next_to")),
    "refcocog_like": Grammar(
        forms={"attributes": 0.1, "relation": 0.45, "between": 0.15, "ordinal": 0.3},
        relations=("above", "below", "left_of", "right_of", "next_to"),
    ),
}
