"""The benchmark's expression resolver on hand-built scenes: every relation and ordinal word, ambiguity, parsing."""

from __future__ import annotations

import pytest

from dcmfnet.data.expressions import KINDS, Expression, Noun, realise
from dcmfnet.data.resolver import parse, resolve
from dcmfnet.data.scenes import SceneObject

S = 64


def obj(colour: str, shape: str, cx: float, cy: float, size: str = "big") -> SceneObject:
    return SceneObject(colour, shape, size, cx, cy, 4.0 if size == "small" else 7.0)


# a row of three red squares (x = 10, 32, 54), a blue circle above the middle one, a green triangle below the
# right one, and a small yellow circle far off in the bottom-left corner
ROW = [
    obj("red", "square", 32, 32),  # 0 middle
    obj("red", "square", 10, 30),  # 1 left
    obj("red", "square", 54, 34),  # 2 right
    obj("blue", "circle", 32, 10),  # 3 above the middle square
    obj("green", "triangle", 54, 56),  # 4 below the right square
    obj("yellow", "circle", 8, 58, "small"),  # 5
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the red square", None),  # three of them
        ("the blue circle", 3),
        ("the left red square", 1),
        ("the right square", 2),
        ("the square on the left", 1),
        ("the square on the right", 2),
        ("the top circle", 3),
        ("the circle at the bottom", 5),
        ("the first square from the left", 1),
        ("the second square from the left", 0),
        ("the third square from the left", 2),
        ("the second square from the right", 0),
        ("the first square from the right", 2),
        ("the fourth square from the left", "error"),
        ("the third circle from the left", None),  # only two circles
        ("the square below the blue circle", None),  # the left square is below it too, diagonally (lenient cone)
        ("the square above the green triangle", None),  # so is the middle one above the triangle
        ("the circle above the red square", None),  # three red squares: the landmark is not one object
        ("the square to the left of the green triangle", None),  # the triangle is below, not beside
        ("the triangle below the right square", "error"),  # landmarks take no position word
        ("the square next to the blue circle", 0),
        ("the square next to the small circle", 1),
        ("the square next to the green triangle", 2),
        ("the square between the two circles", None),  # the segment from (32,10) to (8,58) misses every square
    ],
)
def test_words_on_a_row_of_squares(text: str, expected: int | str | None) -> None:
    if expected == "error":
        with pytest.raises(ValueError, match="cannot parse"):
            resolve(text, ROW, S)
    else:
        assert resolve(text, ROW, S) == expected


def test_left_of_right_of_above_below_and_between() -> None:
    scene = [
        obj("red", "circle", 12, 32),  # 0
        obj("red", "circle", 52, 32),  # 1
        obj("blue", "square", 32, 32),  # 2 between 0 and 1
        obj("green", "triangle", 32, 12, "small"),  # 3 above the square
        obj("green", "triangle", 32, 54, "small"),  # 4 below the square
    ]
    assert resolve("the circle to the left of the blue square", scene, S) == 0
    assert resolve("the circle to the right of the square", scene, S) == 1
    assert resolve("the triangle above the square", scene, S) == 3
    assert resolve("the small triangle below the blue square", scene, S) == 4
    assert resolve("the square between the two circles", scene, S) == 2
    assert resolve("the square between the two red circles", scene, S) == 2
    assert resolve("the circle between the two triangles", scene, S) is None  # the square is between them
    assert resolve("the square between the two triangles", scene, S) == 2


def test_ambiguity_within_the_margins_is_rejected() -> None:
    # two circles 3 px apart horizontally: neither is clearly the left one
    close = [obj("red", "circle", 30, 20), obj("red", "circle", 33, 44)]
    assert resolve("the left circle", close, S) is None
    assert resolve("the top circle", close, S) == 0  # 24 px apart vertically
    # two circles almost equally near the square: "next to" does not decide
    tie = [obj("blue", "square", 32, 32), obj("red", "circle", 12, 32), obj("red", "circle", 53, 32)]
    assert resolve("the circle next to the square", tie, S) is None
    # a circle diagonally above-left of the square is not clearly "above" it when another is almost above too
    diagonal = [obj("blue", "square", 32, 40), obj("red", "circle", 32, 14), obj("red", "circle", 12, 22)]
    assert resolve("the circle above the square", diagonal, S) is None
    assert resolve("the circle above the square", diagonal[:2], S) == 1


def test_a_landmark_is_never_its_own_referent() -> None:
    scene = [obj("red", "square", 20, 20), obj("blue", "square", 20, 50)]
    assert resolve("the square above the blue square", scene, S) == 0
    assert resolve("the square below the red square", scene, S) == 1


@pytest.mark.parametrize(
    "expression",
    [
        Expression(Noun("circle")),
        Expression(Noun("circle", "red", "small")),
        Expression(Noun("square", size="big"), rank=1, direction="top"),
        Expression(Noun("cross", "green"), rank=3, direction="bottom"),
        Expression(Noun("triangle"), relation="left_of", landmark=Noun("square", "blue", "big")),
        Expression(Noun("triangle"), relation="right_of", landmark=Noun("circle")),
        Expression(Noun("triangle"), relation="next_to", landmark=Noun("circle", size="small")),
        Expression(Noun("square", "white"), relation="between", landmark=Noun("cross", "yellow")),
    ],
)
@pytest.mark.parametrize("style", ["adjective", "phrase", "ordinal"])
def test_parse_reads_back_what_realise_says(expression: Expression, style: str) -> None:
    assert parse(realise(expression, style=style)) == expression


@pytest.mark.parametrize("text", ["red circle", "the circle the", "the circle near the square", "the red"])
def test_parse_names_the_offending_word(text: str) -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        parse(text)


def test_every_kind_uses_known_relations() -> None:
    assert set(KINDS) == {"refcoco_like", "refcocoplus_like", "refcocog_like"}
    assert "relation" not in KINDS["refcoco_like"].forms and not KINDS["refcoco_like"].relations
    assert "position" not in KINDS["refcocoplus_like"].forms and "ordinal" not in KINDS["refcocoplus_like"].forms
    assert {"relation", "between", "ordinal"} <= set(KINDS["refcocog_like"].forms)
