"""The built-in benchmark kinds: unique referents over thousands of scenes, determinism, word rules, configs."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from dcmfnet.data import BenchmarkReferring
from dcmfnet.data.benchmark import BenchmarkScene, generate_benchmark_scene
from dcmfnet.data.build import build_dataset, max_tokens_for
from dcmfnet.data.expressions import ABSOLUTE_POSITION_WORDS, KINDS, VOCABULARY
from dcmfnet.data.resolver import parse, resolve
from dcmfnet.data.scenes import COLOURS, MIN_VISIBLE, SHAPES, SIZES, SceneObject, visible_shares
from dcmfnet.train_config import load_run_config

KIND_NAMES = sorted(KINDS)
SCENES_PER_KIND = 2000


def _scenes(kind: str, count: int) -> list[BenchmarkScene]:
    return [generate_benchmark_scene(np.random.default_rng([7, i]), kind) for i in range(count)]


@pytest.fixture(scope="module", params=KIND_NAMES)
def kind_scenes(request: pytest.FixtureRequest) -> tuple[str, list[BenchmarkScene]]:
    return request.param, _scenes(request.param, SCENES_PER_KIND)


def _head_fits(expression: str, obj: SceneObject) -> bool:
    """Independent of the resolver: the head noun's words (before any modifier) all describe ``obj``."""
    words = expression.split()
    shape_at = next(i for i, w in enumerate(words) if w in SHAPES)
    adjectives = {w for w in words[:shape_at] if w in COLOURS or w in SIZES}
    return words[shape_at] == obj.shape and adjectives <= {obj.colour, obj.size}


def test_every_expression_refers_to_its_target_alone(kind_scenes: tuple[str, list[BenchmarkScene]]) -> None:
    _, scenes = kind_scenes
    for scene in scenes:
        assert resolve(scene.expression, scene.objects, 64) == scene.target, scene.expression
        assert _head_fits(scene.expression, scene.objects[scene.target])
        fitting = sum(_head_fits(scene.expression, o) for o in scene.objects)
        # a modifier is there because the head alone is ambiguous
        assert (fitting == 1) == (scene.form == "attributes"), (scene.expression, fitting)
        assert 4 <= len(scene.objects) <= 8
        assert scene.masks[scene.target].sum() > 0 and (scene.masks.sum(axis=0) <= 1).all()


def test_referents_do_not_hinge_on_a_pixel(kind_scenes: tuple[str, list[BenchmarkScene]]) -> None:
    """Moving every object by up to a pixel never makes another object the referent (the resolver's margins)."""
    _, scenes = kind_scenes
    rng = np.random.default_rng(0)
    kept = 0
    for scene in scenes[:500]:
        shift = rng.uniform(-1.0, 1.0, size=(len(scene.objects), 2))
        moved = [
            SceneObject(o.colour, o.shape, o.size, o.cx + dx, o.cy + dy, o.radius)
            for o, (dx, dy) in zip(scene.objects, shift, strict=True)
        ]
        referent = resolve(scene.expression, moved, 64)
        assert referent in (scene.target, None), scene.expression
        kept += referent == scene.target
    assert kept >= 0.9 * 500


def test_kinds_use_their_words(kind_scenes: tuple[str, list[BenchmarkScene]]) -> None:
    kind, scenes = kind_scenes
    forms = collections.Counter(scene.form for scene in scenes)
    assert set(forms) == set(KINDS[kind].forms)  # every form of the kind occurs
    for scene in scenes:
        words = set(scene.expression.split())
        assert words <= set(VOCABULARY)
        if kind == "refcocoplus_like":
            assert not words & ABSOLUTE_POSITION_WORDS, scene.expression
    lengths = [len(scene.expression.split()) for scene in scenes]
    if kind == "refcoco_like":
        assert max(lengths) <= 7
    relations = {parse(scene.expression).relation for scene in scenes}
    assert relations - {None} == set(KINDS[kind].relations) | ({"between"} if "between" in forms else set())


def test_refcocog_like_is_longer() -> None:
    mean = {k: np.mean([len(s.expression.split()) for s in _scenes(k, 300)]) for k in KIND_NAMES}
    assert mean["refcocog_like"] > mean["refcocoplus_like"] > mean["refcoco_like"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_deterministic_by_seed_and_streams_differ(kind: str) -> None:
    def sample(ds: BenchmarkReferring, i: int) -> tuple[bytes, bytes, str]:
        raw = ds.raw(i)
        return raw.image.tobytes(), raw.mask.tobytes(), raw.expression

    a = BenchmarkReferring(kind=kind, split="train", num_samples=20, seed=3)
    b = BenchmarkReferring(kind=kind, split="train", num_samples=20, seed=3, cache=False)
    assert [sample(a, i) for i in range(20)] == [sample(b, i) for i in range(20)]
    assert [sample(a, i) for i in range(20)] == [sample(a, i) for i in range(20)]  # from the cache
    for other in (
        BenchmarkReferring(kind=kind, split="val", num_samples=20, seed=3),
        BenchmarkReferring(kind=kind, split="train", num_samples=20, seed=4),
        BenchmarkReferring(kind=next(k for k in KIND_NAMES if k != kind), split="train", num_samples=20, seed=3),
    ):
        assert sum(sample(a, i)[0] == sample(other, i)[0] for i in range(20)) == 0


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_form_is_the_scenes_form_without_rendering(kind: str) -> None:
    ds = BenchmarkReferring(kind=kind, split="val", num_samples=12, seed=2)
    assert [ds.form(i) for i in range(12)] == [ds.scene(i).form for i in range(12)]
    assert {ds.form(i) for i in range(12)} <= set(KINDS[kind].forms)
    with pytest.raises(IndexError, match="index 12 out of range for 12 samples"):
        ds.form(12)


def test_scenes_are_hard() -> None:
    """Objects share the target's attributes, some overlap, some are small, backgrounds vary."""
    scenes = _scenes("refcocog_like", 300)
    shares = [sum(o.colour == s.objects[s.target].colour for o in s.objects) for s in scenes]
    assert np.mean(shares) > 2.0
    assert np.mean([any(o.size == "small" for o in s.objects) for s in scenes]) > 0.8
    shares = [visible_shares(list(s.objects), s.masks) for s in scenes]
    assert 0.25 < np.mean([(v < 0.95).any() for v in shares]) < 0.6  # some object partly hidden
    assert 0.05 < np.mean([v[s.target] < 0.95 for v, s in zip(shares, scenes, strict=True)]) < 0.3  # the target
    assert min(v.min() for v in shares) >= MIN_VISIBLE
    assert len({tuple(s.image[0, 0]) for s in scenes}) > 100


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_ablation_config_builds_its_kind(kind: str) -> None:
    cfg = load_run_config(f"ablation_{kind}")
    assert cfg.data.dataset == kind
    assert cfg.optim.schedule_by == "steps" and cfg.train.max_steps and cfg.train.max_train_minutes is None
    assert cfg.train.num_threads == 1 and cfg.train.progress_bar is False
    assert list(cfg.model.text_vocabulary) == list(VOCABULARY)  # every word known to the word encoder
    ds = build_dataset(cfg.data, "val", train=False)
    assert isinstance(ds, BenchmarkReferring) and len(ds) == cfg.data.benchmark.val_samples
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    longest = max(len(s.expression.split()) for s in _scenes(kind, 300))
    assert max_tokens_for(cfg.data) >= longest + 1  # [CLS] + words


def test_clean_ablation_config_builds_few_whole_objects_per_scene() -> None:
    """The second operating point's config: refcocog-like expressions, no fillers beyond 4 objects, none hidden."""
    cfg = load_run_config("ablation_clean_refcocog_like")
    assert cfg.data.dataset == "refcocog_like" and cfg.data.benchmark.clutter == 0
    assert cfg.data.benchmark.val_samples == cfg.data.benchmark.test_samples == 2000
    assert cfg.train.eval_every_steps and cfg.train.max_steps and cfg.train.max_steps % cfg.train.eval_every_steps == 0
    assert list(cfg.model.text_vocabulary) == list(VOCABULARY)
    ds = build_dataset(cfg.data, "val", train=False)
    assert isinstance(ds, BenchmarkReferring) and len(ds) == 2000
    scenes = [ds.scene(i) for i in range(40)]
    assert min(len(s.objects) for s in scenes) == 4 and np.mean([len(s.objects) for s in scenes]) < 5.5
    assert all((visible_shares(list(s.objects), s.masks) == 1.0).all() for s in scenes)  # nothing occluded
    assert {s.form for s in scenes} == set(KINDS["refcocog_like"].forms)


def test_object_scale_enlarges_objects() -> None:
    def mean_radius(scale: float) -> float:
        rngs = [np.random.default_rng([9, i]) for i in range(50)]
        scenes = [generate_benchmark_scene(rng, "refcoco_like", object_scale=scale) for rng in rngs]
        return float(np.mean([o.radius for s in scenes for o in s.objects]))

    assert mean_radius(1.25) > 1.15 * mean_radius(1.0)
