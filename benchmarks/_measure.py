"""
What both bus benchmarks measure, written once so that ours and the original are measured
alike. It imports neither IMMP and only awaits what it is given, so it runs under trio
(``bus.py``) and under asyncio (``bus_original.py``, in the original's own environment).
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Awaitable, Callable, Sequence

import psutil


def rss() -> int:
    """This process's resident memory now, in bytes."""
    return psutil.Process().memory_info().rss


async def measure(
    inject: Callable[[int, int], Awaitable[None]], outs: Sequence, n: int
) -> dict[str, float]:
    """
    ``await inject(start, stop)`` posts messages ``start`` to ``stop`` and returns once every
    target has them. Times N messages, then measures memory growth over N more (the first N fill
    every bounded history, so what grows after them is what would grow forever).
    """
    started = time.perf_counter()
    await inject(0, n)
    elapsed = time.perf_counter() - started
    delivered = sum(out.put_count for out in outs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gc.collect()
    warm = rss()
    await inject(n, 2 * n)
    gc.collect()
    end = rss()
    return {
        "n": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        "deliveries_per_s": delivered / elapsed,
        "delivered": delivered,
        "peak_rss_mib": peak,
        "growth_kib_per_100k": (end - warm) / 1024 / n * 100_000,
    }
