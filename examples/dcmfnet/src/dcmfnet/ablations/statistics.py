"""Confidence intervals over seeds: Student-t intervals of a mean and of paired differences.

The t quantile is computed exactly (to float precision) from the closed-form distribution function
of Student's t with an integer number of degrees of freedom (Abramowitz & Stegun 26.7.3–26.7.4),
inverted by bisection, so no statistics library is needed.

Example::

    >>> round(t_quantile(4), 3)          # two-sided 95%, 4 degrees of freedom
    2.776
    >>> interval = mean_interval([0.61, 0.64, 0.60])
    >>> round(interval.mean, 4), round(interval.half_width, 4)
    (0.6167, 0.0517)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Interval", "compare", "mean_interval", "paired_difference", "t_quantile", "verdict"]

#: The verdicts of a row against the paper (docs/guides/reproducing.rst).
HOLDS, REVERSES, WITHIN_NOISE = "holds", "reverses", "within noise"


def _central_probability(t: float, dof: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``dof`` degrees of freedom (A&S 26.7.3 odd, 26.7.4 even)."""
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        # (2/π)(θ + sin θ (cos θ + 2/3 cos³θ + … + 2·4…(ν−3) / (1·3…(ν−2)) cos^(ν−2) θ))
        term, series = math.cos(theta), 0.0
        for j in range(1, (dof - 1) // 2 + 1):
            series += term
            term *= cos2 * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + math.sin(theta) * series)
    # sin θ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + … + 1·3…(ν−3) / (2·4…(ν−2)) cos^(ν−2) θ)
    term, series = 1.0, 0.0
    for j in range(1, dof // 2 + 1):
        series += term
        term *= cos2 * (2 * j - 1) / (2 * j)
    return math.sin(theta) * series


def t_quantile(dof: int, confidence: float = 0.95) -> float:
    """The two-sided Student-t critical value: ``t`` with ``P(|T| <= t) = confidence``.

    Args:
        dof: Degrees of freedom, a positive int (``S - 1`` for ``S`` seeds).
        confidence: Coverage of the interval, in (0, 1).

    Returns:
        The quantile ``t_{(1 + confidence) / 2, dof}`` (12.706 for 1 dof at 95%, 1.96 as dof grows).

    Raises:
        ValueError: ``dof`` is not a positive int, or ``confidence`` is outside (0, 1).
    """
    if not isinstance(dof, int) or isinstance(dof, bool) or dof < 1:
        raise ValueError(f"dof must be a positive int, got {dof!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    low, high = 0.0, math.pi / 2  # bisection on θ = atan(t / √ν), where the probability is monotone
    for _ in range(200):
        middle = (low + high) / 2
        if _central_probability(math.sqrt(dof) * math.tan(middle), dof) < confidence:
            low = middle
        else:
            high = middle
    return math.sqrt(dof) * math.tan((low + high) / 2)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and the half-width of its confidence interval.

    Attributes:
        mean: The sample mean.
        half_width: ``t · s / √n``; ``None`` for a single value (no spread to estimate).
        count: The number of values ``n``.
    """

    mean: float
    half_width: float | None
    count: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval (``n - 1`` degrees of freedom) of ``values``.

    Raises:
        ValueError: ``values`` is empty.
    """
    count = len(values)
    if count == 0:
        raise ValueError("mean_interval needs at least one value, got none")
    mean = math.fsum(values) / count
    if count == 1:
        return Interval(mean, None, 1)
    deviation = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (count - 1))
    return Interval(mean, t_quantile(count - 1, confidence) * deviation / math.sqrt(count), count)


def paired_difference(
    variant: Mapping[int, float], reference: Mapping[int, float], confidence: float = 0.95
) -> Interval | None:
    """Mean and CI of ``variant[s] - reference[s]`` over the seeds ``s`` both have (paired by seed).

    Args:
        variant: Seed → metric of the ablated model.
        reference: Seed → metric of the full model.

    Returns:
        The interval of the differences, or ``None`` when no seed is shared.
    """
    seeds = sorted(set(variant) & set(reference))
    if not seeds:
        return None
    return mean_interval([variant[seed] - reference[seed] for seed in seeds], confidence)


def verdict(difference: Interval | None, paper_difference: float | None) -> str:
    """Reads a paired difference against the paper's direction (docs/guides/reproducing.rst).

    Args:
        difference: Our paired difference (variant − full model) with its CI.
        paper_difference: The paper's variant − full model.

    Returns:
        ``"holds"`` when the CI excludes 0 on the paper's side, ``"reverses"`` when it excludes 0
        on the other side, ``"within noise"`` when it contains 0; ``"—"`` when the paper shows no
        difference or there is nothing to compare, ``"n/a (1 seed)"`` without a CI.
    """
    if difference is None or paper_difference is None or paper_difference == 0:
        return "—"
    if difference.low is None or difference.high is None:
        return "n/a (1 seed)"
    if difference.low <= 0 <= difference.high:
        return WITHIN_NOISE
    return HOLDS if (difference.low > 0) == (paper_difference > 0) else REVERSES


def compare(difference: Interval | None) -> str:
    """Reads a paired difference (row − full model) where the paper gives no direction (Table P).

    Returns:
        ``"above the full model"`` or ``"below the full model"`` when the CI excludes 0, ``"within noise"``
        when it contains 0, ``"n/a (1 seed)"`` without a CI, ``"—"`` with nothing to compare.
    """
    if difference is None:
        return "—"
    if difference.low is None or difference.high is None:
        return "n/a (1 seed)"
    if difference.low <= 0 <= difference.high:
        return WITHIN_NOISE
    return "above the full model" if difference.low > 0 else "below the full model"
