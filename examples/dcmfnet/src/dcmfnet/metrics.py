"""Referring-segmentation metrics exactly as the paper's benchmarks score them (§4.1).

Over every (image, expression) pair of a split, with the predicted mask ``sigmoid(logit) >= 0.5``
(that is ``logit >= 0``) scored at the original image size:

* per pair ``I = |pred ∧ gt|`` and ``U = |pred ∨ gt|``;
* overall IoU ``= ΣI / ΣU``;
* mean IoU ``=`` mean of ``I / U`` (a pair with ``U = 0``, both masks empty, counts as IoU 1);
* Prec@X ``=`` share of pairs with IoU ``>= X`` for X in {0.5, 0.6, 0.7, 0.8, 0.9}.

:meth:`ReferringMetrics.compute_by_group` gives the same metrics over each group of pairs (the built-in
benchmark's expression forms), to see where a model wins or loses.

:class:`ReferringMetrics` keeps the per-pair counts keyed by dataset index, so that under
``torch.distributed`` the ranks' counts can be gathered and every pair counted exactly once
(``DistributedSampler`` pads the last batch by repeating indices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["PRECISION_THRESHOLDS", "ReferringMetrics", "intersection_and_union", "masks_from_logits"]

PRECISION_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def masks_from_logits(logits: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Resize logits to each sample's original size (bilinear) and threshold at probability 0.5.

    Args:
        logits: ``(B, 1, h, w)`` logits.
        sizes: ``B`` original sizes ``(H_i, W_i)``.

    Returns:
        ``B`` bool masks of shape ``(H_i, W_i)``.
    """
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"expected logits of shape (B, 1, h, w), got {tuple(logits.shape)}")
    if len(sizes) != logits.shape[0]:
        raise ValueError(f"got {len(sizes)} sizes for {logits.shape[0]} logits")
    logits = logits.float()
    if len(set(sizes)) == 1:
        size = tuple(sizes[0])
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return list((logits[:, 0] >= 0).unbind(0))
    masks = []
    for logit, size in zip(logits, sizes, strict=True):
        if logit.shape[-2:] != tuple(size):
            logit = F.interpolate(logit[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
        masks.append(logit[0] >= 0)
    return masks


def intersection_and_union(
    predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel counts ``I = |pred ∧ gt|`` and ``U = |pred ∨ gt|`` per pair.

    Args:
        predictions: ``B`` bool masks ``(H_i, W_i)`` (or a ``(B, H, W)`` bool tensor).
        targets: ``B`` bool masks of the same shapes.

    Returns:
        ``(I, U)``, two ``(B,)`` int64 tensors on the CPU.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"got {len(predictions)} predictions for {len(targets)} targets")
    inter, union = [], []
    for pred, gt in zip(predictions, targets, strict=True):
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(gt.shape)}")
        pred, gt = pred.bool(), gt.to(pred.device).bool()
        inter.append((pred & gt).sum())
        union.append((pred | gt).sum())
    if not inter:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.stack(inter).long().cpu(), torch.stack(union).long().cpu()


def _record(counts: dict[int, tuple[int, int]], index: int, value: tuple[int, int]) -> None:
    """Store ``value`` for ``index``; a repeat must carry the same counts (a padded sampler's repeat)."""
    previous = counts.setdefault(index, value)
    if previous != value:
        raise ValueError(
            f"dataset index {index} was scored twice with different counts (I, U) {previous} and {value}: "
            "indices must identify the (image, expression) pairs"
        )


class ReferringMetrics:
    """Accumulates per-pair intersection and union, keyed by dataset index.

    Example::

        metrics = ReferringMetrics()
        metrics.update(pred_masks, gt_masks, indices)   # per batch, on every rank
        result = metrics.synchronize().compute()        # same dict on every rank
    """

    def __init__(self) -> None:
        self._counts: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def reset(self) -> None:
        """Forget every pair."""
        self._counts.clear()

    def update(
        self,
        predictions: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        indices: Sequence[int] | torch.Tensor,
    ) -> None:
        """Score a batch of predicted masks against the ground truth.

        Args:
            predictions: ``B`` bool masks at the original resolution (see :func:`masks_from_logits`).
            targets: ``B`` ground-truth bool masks of the same shapes.
            indices: ``B`` dataset indices; a pair seen again (a padded sampler) is counted once.

        Raises:
            ValueError: an index seen again with other counts.
        """
        inter, union = intersection_and_union(predictions, targets)
        self.update_counts(indices, inter, union)

    def update_counts(
        self,
        indices: Sequence[int] | torch.Tensor,
        intersections: Sequence[int] | torch.Tensor,
        unions: Sequence[int] | torch.Tensor,
    ) -> None:
        """Record already computed ``I`` and ``U`` for the given dataset indices."""
        indices = torch.as_tensor(indices).tolist()
        intersections = torch.as_tensor(intersections).tolist()
        unions = torch.as_tensor(unions).tolist()
        if not len(indices) == len(intersections) == len(unions):
            raise ValueError("indices, intersections and unions must have the same length")
        for index, inter, union in zip(indices, intersections, unions, strict=True):
            if inter > union:
                raise ValueError(f"intersection {inter} > union {union} for index {index}")
            _record(self._counts, int(index), (int(inter), int(union)))

    def synchronize(self) -> ReferringMetrics:
        """Merge the counts of every rank (no-op without an initialised process group).

        Returns:
            ``self``, holding the union of all ranks' pairs, each index once.
        """
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[dict[int, tuple[int, int]] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self._counts)
            merged: dict[int, tuple[int, int]] = {}
            for counts in gathered:
                for index, value in (counts or {}).items():
                    _record(merged, index, value)
            self._counts = merged
        return self

    def per_sample_iou(self) -> dict[int, float]:
        """IoU of each pair, by dataset index (``U = 0`` counts as 1)."""
        return {index: (inter / union if union > 0 else 1.0) for index, (inter, union) in self._counts.items()}

    def _overall_iou_standard_error(self, overall: float) -> float:
        counts = torch.tensor(list(self._counts.values()), dtype=torch.float64)
        n, mean_union = counts.shape[0], float(counts[:, 1].mean())
        if n < 2 or mean_union == 0:
            return 0.0
        residuals = counts[:, 0] - overall * counts[:, 1]
        return float(residuals.square().sum().div(n * (n - 1)).sqrt()) / mean_union

    def compute(self) -> dict[str, float | int]:
        """The metrics of the module notes as fractions in [0, 1].

        ``overall_iou_standard_error`` is the scoring noise of the overall IoU: how much it would move if the
        split were drawn again with the same size, from the delta method for a ratio of sums,
        ``sqrt(sum((I_i - r U_i)^2) / (n (n - 1))) / mean(U)`` with ``r`` the overall IoU (0 for one pair).
        Compare it with the spread over training seeds before reading a difference.

        Returns:
            ``{"overall_iou", "overall_iou_standard_error", "mean_iou", "precision@0.5", ..., "precision@0.9",
            "num_samples"}``.
        """
        if not self._counts:
            raise ValueError("no samples were scored")
        total_inter = sum(inter for inter, _ in self._counts.values())
        total_union = sum(union for _, union in self._counts.values())
        ious = torch.tensor(list(self.per_sample_iou().values()), dtype=torch.float64)
        overall = total_inter / total_union if total_union > 0 else 1.0
        result: dict[str, float | int] = {
            "overall_iou": overall,
            "overall_iou_standard_error": self._overall_iou_standard_error(overall),
            "mean_iou": float(ious.mean()),
        }
        for threshold in PRECISION_THRESHOLDS:
            result[f"precision@{threshold}"] = float((ious >= threshold).double().mean())
        result["num_samples"] = len(self._counts)
        return result

    def compute_by_group(self, groups: Mapping[int, str]) -> dict[str, dict[str, float | int]]:
        """:meth:`compute` over the pairs of each group (e.g. the expression form of each pair).

        Args:
            groups: Dataset index → group name; it must cover every scored index (others are ignored).

        Returns:
            Group name → the :meth:`compute` dict of that group's pairs, for each group with a scored pair,
            sorted by name; the groups' ``num_samples`` add up to ``len(self)``.

        Raises:
            ValueError: No pair was scored, or a scored index has no group (the message names one).
        """
        if not self._counts:
            raise ValueError("no samples were scored")
        members: dict[str, ReferringMetrics] = {}
        for index, counts in self._counts.items():
            if index not in groups:
                raise ValueError(
                    f"expected a group for every scored dataset index, got none for index {index} "
                    f"({len(groups)} indices have a group)"
                )
            members.setdefault(groups[index], ReferringMetrics())._counts[index] = counts
        return {name: members[name].compute() for name in sorted(members)}
