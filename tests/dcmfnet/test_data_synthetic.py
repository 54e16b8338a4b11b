"""The built-in synthetic referring dataset: determinism, exact masks, distractors, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dcmfnet.data import ReferringTransform, ShuffledExpressions, SyntheticReferring, swap_left_right
from dcmfnet.data.synthetic import COLOURS, SHAPES, SIZES, VOCABULARY, generate_scene


def _words_match(expression: str, colour: str, shape: str, size: str) -> bool:
    words = set(expression.split())
    return (colour in words and shape in words) and not (set(SIZES) & words and size not in words)


@pytest.mark.parametrize("seed", range(40))
def test_scene_has_distractors_and_a_unique_referent(seed: int) -> None:
    scene = generate_scene(np.random.default_rng(seed), image_size=64)
    target = scene.objects[scene.target]
    others = [o for i, o in enumerate(scene.objects) if i != scene.target]
    assert len(scene.objects) >= 3
    # the image alone cannot tell: some object shares the colour, another the shape
    assert any(o.colour == target.colour and o.shape != target.shape for o in others)
    assert any(o.shape == target.shape and o.colour != target.colour for o in others)
    assert _words_match(scene.expression, target.colour, target.shape, target.size)
    matching = [o for o in others if _words_match(scene.expression, o.colour, o.shape, o.size)]
    if scene.kind == "position":
        assert len(matching) == 1 and set(scene.expression.split()) & {"left", "right", "top", "bottom"}
        twin = matching[0]
        words = set(scene.expression.split())
        if "left" in words:
            assert target.cx < twin.cx
        if "right" in words:
            assert target.cx > twin.cx
        if "top" in words:
            assert target.cy < twin.cy
        if "bottom" in words:
            assert target.cy > twin.cy
    else:
        assert matching == []  # colour + shape (+ size) picks the target alone
    assert set(scene.expression.split()) <= set(VOCABULARY)


def test_masks_are_exact_and_disjoint() -> None:
    scene = generate_scene(np.random.default_rng(3), image_size=64)
    assert scene.masks.dtype == bool and scene.masks.shape == (len(scene.objects), 64, 64)
    assert (scene.masks.sum(axis=0) <= 1).all()
    for obj, mask in zip(scene.objects, scene.masks, strict=True):
        assert mask.sum() > 20
        pixels = scene.image[mask].astype(float).mean(axis=0)
        assert np.abs(pixels - np.asarray(COLOURS[obj.colour])).max() < 35  # painted in its colour
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() + 0.5 - obj.cx) < 3 and abs(ys.mean() + 0.5 - obj.cy) < 4


def test_deterministic_by_seed_and_splits_differ() -> None:
    a = SyntheticReferring(split="train", num_samples=5, seed=1)
    b = SyntheticReferring(split="train", num_samples=5, seed=1)
    c = SyntheticReferring(split="val", num_samples=5, seed=1)
    d = SyntheticReferring(split="train", num_samples=5, seed=2)
    for i in range(5):
        assert np.array_equal(a.raw(i).image, b.raw(i).image) and a.raw(i).expression == b.raw(i).expression
    assert not np.array_equal(a.raw(0).image, c.raw(0).image)
    assert not np.array_equal(a.raw(0).image, d.raw(0).image)


def test_all_attribute_words_occur() -> None:
    ds = SyntheticReferring(split="train", num_samples=300, seed=0)
    words = {w for i in range(len(ds)) for w in ds.expression(i).split()}
    assert set(COLOURS) | set(SHAPES) | set(SIZES) | {"left", "right", "top", "bottom"} <= words


def test_item_tensors_and_generation_speed() -> None:
    ds = SyntheticReferring(split="val", num_samples=200, image_size=48, transform=ReferringTransform(size=48))
    start = time.perf_counter()
    items = [ds[i] for i in range(200)]
    assert time.perf_counter() - start < 5.0  # a few ms per sample at most
    item = items[0]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 48, 48) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["original_mask"].dtype == torch.bool and torch.equal(item["original_mask"], item["mask"][0].bool())


def test_transform_resizes_mask_with_image_and_flip_swaps_words() -> None:
    raw = SyntheticReferring(split="val", num_samples=1, image_size=64).raw(0)
    image, mask, text = ReferringTransform(size=32)(raw.image, raw.mask, "the left red circle")
    assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32) and text == "the left red circle"
    flipped_image, flipped_mask, flipped_text = ReferringTransform(size=32, hflip_probability=1.0)(
        raw.image, raw.mask, "the left red circle"
    )
    assert flipped_text == "the right red circle"
    assert torch.equal(flipped_mask, mask.flip(-1)) and torch.allclose(flipped_image, image.flip(-1))
    assert swap_left_right("Right of the leftmost cup") == "Left of the rightmost cup"


def test_shuffled_expressions_is_a_derangement() -> None:
    ds = SyntheticReferring(split="val", num_samples=50)
    shuffled = ShuffledExpressions(ds, seed=0)
    assert sorted(shuffled.source.tolist()) == list(range(50))
    assert all(shuffled.source[i] != i for i in range(50))
    assert shuffled[3]["expression"] == ds.expression(int(shuffled.source[3]))
    assert torch.equal(shuffled[3]["mask"], ds[3]["mask"])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticReferring(split="dev", num_samples=3)
    with pytest.raises(ValueError, match="min_objects"):
        SyntheticReferring(split="val", num_samples=3, min_objects=2)[0]
