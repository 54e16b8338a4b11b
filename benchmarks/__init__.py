"""Micro- and end-to-end benchmarks for ``igf`` and the DCMFNet example.

Run everything with one command::

    python -m benchmarks.run [--device cpu|cuda] [--quick] --output-dir DIR

Modules:
    timing:  median / interquartile range of a callable (``torch.utils.benchmark``).
    memory:  peak memory of one call (CUDA allocator stats, or the CPU allocator
             trace recorded by ``torch.profiler``).
    flops:   FLOPs with ``torch.utils.flop_counter`` and the "conv floor" replay.
    cases:   what is measured (gates, fusion unit, IGF variants, DCMFNet).
    report:  markdown tables, target ratios and PNG plots from the JSON records.
    run:     the command-line entry point.
"""
