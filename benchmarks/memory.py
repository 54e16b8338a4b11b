"""Peak memory of one call, above what was allocated before it.

CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``torch.cuda.max_memory_allocated``
minus the bytes allocated before the call (caching-allocator tensors only; cuDNN
workspaces that cuDNN allocates through PyTorch are included).

CPU: ``tracemalloc`` does not see tensor storage (PyTorch allocates it with its own
C++ allocator), so the CPU number comes from ``torch.profiler`` with
``profile_memory=True``: every allocation and free of PyTorch's CPU allocator is
recorded with a timestamp, and the peak of the running sum is the peak of live
tensor bytes during the call. As a cross-check the process's resident-set high-water
mark (``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``) is
recorded too; it also counts the allocator's cached pages, oneDNN scratch space and
Python objects, so it is noisier and usually larger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from benchmarks.timing import synchronize

CUDA_METHOD = "torch.cuda.max_memory_allocated after reset_peak_memory_stats (minus bytes allocated before)"
CPU_METHOD = "torch.profiler(profile_memory=True): peak of live CPU-allocator bytes during the call"


@dataclasses.dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one call.

    Attributes:
        peak_bytes: peak bytes allocated by PyTorch during the call above the bytes live before it.
        method: how ``peak_bytes`` was measured.
        rss_peak_delta_bytes: CPU only: resident-set high-water mark during the call minus
            the resident set before it (``None`` where ``/proc`` is unavailable or on CUDA).
    """

    peak_bytes: int
    method: str
    rss_peak_delta_bytes: int | None = None


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_rss_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_profiler_peak(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Raw allocator events ("[memory]", signed nbytes) in time order; the public
    # per-op ``cpu_memory_usage`` cannot give a peak because it nets allocations and frees.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:  # type: ignore[attr-defined]
            live += e.nbytes()
            peak = max(peak, live)
    return peak


def peak_memory(fn: Callable[[], object], device: torch.device) -> MemoryResult:
    """Run ``fn`` once and return its peak memory (see the module docstring for the method).

    Call it after a warm-up call so that one-time allocations (lazy init, cuDNN
    autotuning) are not counted.
    """
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return MemoryResult(torch.cuda.max_memory_allocated(device) - before, CUDA_METHOD)
    rss_delta = None
    if _reset_rss_high_water_mark():
        rss_before = _proc_status_bytes("VmRSS")
        fn()
        rss_peak = _proc_status_bytes("VmHWM")
        if rss_before is not None and rss_peak is not None:
            rss_delta = rss_peak - rss_before
    return MemoryResult(_cpu_profiler_peak(fn), CPU_METHOD, rss_delta)
