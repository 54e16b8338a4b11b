"""Timing of a callable: warm-up, then ``torch.utils.benchmark.Timer.blocked_autorange``.

``Timer`` synchronises CUDA around every timed block (its default timer calls
``torch.cuda.synchronize()`` when CUDA is available), so the same code measures
CPU and CUDA work. Each block runs the callable ``number_per_run`` times; the
median and interquartile range are taken over the per-call times of the blocks.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils import benchmark


@dataclasses.dataclass(frozen=True)
class TimingResult:
    """Summary of repeated timings of one callable, in seconds per call.

    Attributes:
        median: median time per call.
        iqr: interquartile range (75th minus 25th percentile) of the time per call.
        q25: 25th percentile.
        q75: 75th percentile.
        min: fastest block (least disturbed by other processes on a shared machine).
        repeats: number of timed blocks.
        number_per_block: calls per timed block.
    """

    median: float
    iqr: float
    q25: float
    q75: float
    min: float
    repeats: int
    number_per_block: int

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(fn: Callable[[], object], device: torch.device, calls: int) -> None:
    """Call ``fn`` ``calls`` times and synchronise (allocator, cuDNN autotuning, caches)."""
    for _ in range(calls):
        fn()
    synchronize(device)


def measure(
    fn: Callable[[], object],
    device: torch.device,
    *,
    min_run_time: float = 1.0,
    warmup: int = 3,
    label: str = "",
) -> TimingResult:
    """Time ``fn`` after ``warmup`` calls.

    Args:
        fn: the work to time; it takes no arguments.
        device: where the work runs (CUDA is synchronised around each block).
        min_run_time: seconds of timed blocks to collect (at least two blocks are always run).
        warmup: untimed calls before timing.
        label: name stored in the ``torch.utils.benchmark`` measurement.

    Returns:
        The median and interquartile range of the time per call.
    """
    warm_up(fn, device, warmup)
    timer = benchmark.Timer(
        stmt="fn()",
        globals={"fn": fn},
        label=label,
        num_threads=torch.get_num_threads(),
    )
    m = timer.blocked_autorange(min_run_time=min_run_time)
    times = sorted(m.times)
    if len(times) < 2:  # one very slow block: add one more so the IQR means something
        extra = timer.timeit(number=m.number_per_run)
        times = sorted(times + list(extra.times))
    q = statistics.quantiles(times, n=4, method="inclusive")
    return TimingResult(
        median=statistics.median(times),
        iqr=q[2] - q[0],
        q25=q[0],
        q75=q[2],
        min=times[0],
        repeats=len(times),
        number_per_block=m.number_per_run,
    )


def page_faults_per_call(fn: Callable[[], object], device: torch.device, calls: int = 10) -> float | None:
    """Minor page faults of this process per call of ``fn`` (``None`` where ``getrusage`` does not exist).

    A fault is a first touch of memory the allocator has just taken from the operating
    system (which zeroes the page); glibc's ``malloc`` returns freed memory to the system when
    the top of its heap is free, so a call whose peak live memory moves can pay for them on
    every call. The count says how much of a case's time is the allocator's, not its arithmetic.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    synchronize(device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    synchronize(device)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def wall_time(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one synchronised call of ``fn`` (used for compile time, never for the timing)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _summarise(times: list[float], number: int) -> TimingResult:
    times = sorted(times)
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return TimingResult(statistics.median(times), q[2] - q[0], q[0], q[2], times[0], len(times), number)


def measure_interleaved(
    fns: list[Callable[[], object]],
    device: torch.device,
    *,
    min_run_time: float = 1.0,
    warmup: int = 3,
    min_rounds: int = 5,
    block_seconds: float = 0.02,
) -> list[TimingResult]:
    """Time several callables in alternating blocks (A B A B ...), for ratios that hold on a busy machine.

    Timing A for a while and then B lets a change in machine load between the two
    (other processes, thermal state) bias A / B; alternating blocks exposes both to
    the same conditions. Each block runs one callable enough times to last about
    ``block_seconds``; rounds continue until every callable got ``min_rounds`` blocks
    and about ``min_run_time`` seconds.

    Returns:
        One :class:`TimingResult` per callable, in order.
    """
    for fn in fns:
        warm_up(fn, device, warmup)
    numbers = [max(1, int(block_seconds / max(wall_time(fn, device), 1e-9))) for fn in fns]
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < min_run_time * len(fns):
        for i, fn in enumerate(fns):
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(numbers[i]):
                fn()
            synchronize(device)
            times[i].append((time.perf_counter() - t0) / numbers[i])
        rounds += 1
    return [_summarise(ts, n) for ts, n in zip(times, numbers, strict=True)]
