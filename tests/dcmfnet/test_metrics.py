"""Metrics exactly as the paper scores them (§4.1), against a naive reference."""

from __future__ import annotations

import pytest
import torch

from dcmfnet import metrics as metrics_module
from dcmfnet.metrics import ReferringMetrics, intersection_and_union, masks_from_logits


def _reference(preds: list[torch.Tensor], gts: list[torch.Tensor]) -> dict[str, float]:
    inter = [float((p & g).sum()) for p, g in zip(preds, gts, strict=True)]
    union = [float((p | g).sum()) for p, g in zip(preds, gts, strict=True)]
    ious = [i / u if u else 1.0 for i, u in zip(inter, union, strict=True)]
    out = {"overall_iou": sum(inter) / sum(union), "mean_iou": sum(ious) / len(ious)}
    for t in (0.5, 0.6, 0.7, 0.8, 0.9):
        out[f"precision@{t}"] = sum(iou >= t for iou in ious) / len(ious)
    return out


def test_matches_reference_on_random_masks() -> None:
    g = torch.Generator().manual_seed(0)
    preds = [torch.rand(5 + i, 7, generator=g) > 0.4 for i in range(30)]
    gts = [torch.rand(5 + i, 7, generator=g) > 0.5 for i in range(30)]
    gts[0] = preds[0].clone()  # one perfect pair
    metrics = ReferringMetrics()
    for start in range(0, 30, 4):
        metrics.update(preds[start : start + 4], gts[start : start + 4], list(range(start, min(start + 4, 30))))
    result = metrics.compute()
    expected = _reference(preds, gts)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert result["num_samples"] == 30


def test_hand_computed_values_and_empty_pair() -> None:
    metrics = ReferringMetrics()
    metrics.update_counts([0, 1, 2, 3], [9, 3, 0, 0], [10, 5, 4, 0])  # IoUs 0.9, 0.6, 0.0, 1.0 (both empty)
    result = metrics.compute()
    assert result["overall_iou"] == pytest.approx(12 / 19)
    assert result["mean_iou"] == pytest.approx((0.9 + 0.6 + 0.0 + 1.0) / 4)
    assert result["precision@0.5"] == 0.75 and result["precision@0.6"] == 0.75
    assert result["precision@0.7"] == 0.5 and result["precision@0.9"] == 0.5


def test_compute_by_group_hand_computed_and_sorted_by_name() -> None:
    metrics = ReferringMetrics()
    metrics.update_counts([0, 1, 2, 3, 4], [9, 3, 0, 0, 2], [10, 5, 4, 0, 8])  # IoUs 0.9, 0.6, 0.0, 1.0, 0.25
    groups = {0: "b", 1: "a", 2: "b", 3: "a", 4: "a", 9: "c"}  # index 9 was not scored: no group "c"
    result = metrics.compute_by_group(groups)
    assert list(result) == ["a", "b"]
    a, b = result["a"], result["b"]
    assert a["num_samples"] == 3 and b["num_samples"] == 2
    assert a["overall_iou"] == pytest.approx(5 / 13) and b["overall_iou"] == pytest.approx(9 / 14)
    assert a["mean_iou"] == pytest.approx((0.6 + 1.0 + 0.25) / 3) and b["mean_iou"] == pytest.approx(0.45)
    assert a["precision@0.5"] == pytest.approx(2 / 3) and a["precision@0.7"] == pytest.approx(1 / 3)
    assert b["precision@0.5"] == 0.5 and b["precision@0.9"] == 0.5
    # sqrt(sum((I - r U)^2) / (n (n - 1))) / mean(U): residuals ±14/13 and 0 for a, ±36/14 for b
    assert a["overall_iou_standard_error"] == pytest.approx((2 * (14 / 13) ** 2 / 6) ** 0.5 / (13 / 3))
    assert b["overall_iou_standard_error"] == pytest.approx((36 / 14) / 7)
    assert set(a) == set(metrics.compute())


def test_compute_by_group_needs_a_group_for_every_scored_index() -> None:
    metrics = ReferringMetrics()
    metrics.update_counts([0, 1, 4], [1, 1, 1], [2, 2, 2])
    with pytest.raises(ValueError, match=r"expected a group for every scored dataset index, got none for index 4"):
        metrics.compute_by_group({0: "a", 1: "b"})
    with pytest.raises(ValueError, match="no samples were scored"):
        ReferringMetrics().compute_by_group({0: "a"})


def test_repeated_index_counted_once() -> None:
    metrics = ReferringMetrics()
    metrics.update_counts([0, 1], [1, 2], [2, 2])
    metrics.update_counts([0], [1], [2])  # a DistributedSampler's padding repeats index 0
    assert metrics.compute()["num_samples"] == 2
    assert metrics.compute()["overall_iou"] == pytest.approx(3 / 4)


def test_masks_from_logits_threshold_and_resize() -> None:
    logits = torch.tensor([[[[-1.0, 0.0], [0.5, -0.1]]]])
    (mask,) = masks_from_logits(logits, [(2, 2)])
    assert mask.tolist() == [[False, True], [True, False]]  # sigmoid >= 0.5 <=> logit >= 0
    big = masks_from_logits(torch.ones(2, 1, 4, 4), [(8, 6), (3, 5)])
    assert [m.shape for m in big] == [(8, 6), (3, 5)] and all(m.all() for m in big)
    with pytest.raises(ValueError, match="shape"):
        intersection_and_union([torch.zeros(2, 2, dtype=torch.bool)], [torch.zeros(3, 2, dtype=torch.bool)])
    with pytest.raises(ValueError, match="no samples"):
        ReferringMetrics().compute()


def test_repeated_index_with_other_counts_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = ReferringMetrics()
    metrics.update_counts([0, 1], [1, 2], [2, 2])
    with pytest.raises(ValueError, match=r"index 1 .*different counts"):
        metrics.update_counts([1], [1], [2])
    with pytest.raises(ValueError, match="index 3 "):
        ReferringMetrics().update_counts([3, 3], [0, 1], [1, 1])  # within one batch too
    # merging the ranks' counts: the same pair with other counts on two ranks is an error too
    ranks = [{0: (1, 2), 1: (2, 2)}, {1: (2, 2), 2: (0, 1)}]

    def all_gather_object(output: list[object], _: object) -> None:
        output[:] = ranks

    monkeypatch.setattr(metrics_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(metrics_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(metrics_module.dist, "all_gather_object", all_gather_object)
    assert ReferringMetrics().synchronize().compute()["num_samples"] == 3  # same counts: a padded repeat
    ranks[1][1] = (1, 2)
    with pytest.raises(ValueError, match="index 1 "):
        ReferringMetrics().synchronize()


def test_overall_iou_standard_error_matches_a_bootstrap() -> None:
    """The delta-method scoring noise agrees with resampling the pairs (the split drawn again, same size)."""
    generator = torch.Generator().manual_seed(0)
    unions = torch.randint(20, 200, (400,), generator=generator)
    inters = (unions.double() * torch.rand(400, generator=generator, dtype=torch.float64)).long()
    metrics = ReferringMetrics()
    metrics.update_counts(range(400), inters, unions)
    result = metrics.compute()
    draws = torch.randint(0, 400, (2000, 400), generator=generator)
    bootstrap = (inters[draws].sum(1).double() / unions[draws].sum(1).double()).std()
    assert result["overall_iou_standard_error"] == pytest.approx(float(bootstrap), rel=0.1)
    one = ReferringMetrics()
    one.update_counts([0], [3], [4])
    assert one.compute()["overall_iou_standard_error"] == 0.0
