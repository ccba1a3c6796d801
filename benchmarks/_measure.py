"""
What both bus benchmarks measure, written once so that ours and the original are measured
alike. It imports neither IMMP and only awaits what it is given, so it runs under trio
(``bus.py``) and under asyncio (``bus_original.py``, in the original's own environment).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import psutil

# Messages injected but not yet delivered to every target, at most, as a network reader under
# backpressure would keep (both implementations).
WINDOW = 256


async def inject(
    post: Callable[[int], Awaitable[None]],
    outs: Sequence,
    start: int,
    stop: int,
) -> None:
    """
    ``await post(i)`` for messages ``start`` to ``stop``, keeping at most ``WINDOW`` of them
    posted but not yet delivered to every plug in ``outs`` (``await out.wait_puts(count)``);
    returns once every plug has them all.
    """
    for i in range(start, stop):
        if i % 64 == 0:
            for out in outs:
                await out.wait_puts(i - WINDOW)
        await post(i)
    for out in outs:
        await out.wait_puts(stop)


def rss() -> int:
    """This process's resident memory now, in bytes."""
    return psutil.Process().memory_info().rss


async def measure(
    inject: Callable[[int, int], Awaitable[None]],
    outs: Sequence,
    n: int,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, float]:
    """
    ``await inject(start, stop)`` posts messages ``start`` to ``stop`` and returns once every
    target has them. Times N messages, then measures memory growth over N more (the first N fill
    every bounded history, so what grows after them is what would grow forever). ``settle``, if
    given, is awaited before each reading of RSS: a store's flush, so that the writes still
    queued for its thread (bounded, and gone a moment later) are not counted as growth.
    """
    started = time.perf_counter()
    await inject(0, n)
    elapsed = time.perf_counter() - started
    delivered = sum(out.put_count for out in outs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def settled_rss() -> int:
        if settle is not None:
            await settle()
        gc.collect()
        return rss()

    warm = await settled_rss()
    await inject(n, 2 * n)
    end = await settled_rss()
    return {
        "n": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        "deliveries_per_s": delivered / elapsed,
        "delivered": delivered,
        "peak_rss_mib": peak,
        "growth_kib_per_100k": (end - warm) / 1024 / n * 100_000,
    }


def print_result(result: dict, runs: int = 1) -> None:
    """Print one implementation's figures (medians when ``runs`` is above 1)."""
    median = f" (median of {runs} runs)" if runs > 1 else ""
    print(f"{result['impl']}: N={result['n']} K={result['k']}{median}")
    print(f"  messages in:  {result['msgs_per_s']:10.0f} /s  ({result['seconds']:.2f} s)")
    print(f"  deliveries:   {result['deliveries_per_s']:10.0f} /s  ({result['delivered']})")
    if "skipped_echoes" in result:
        print(f"  echoes skipped by the demo network: {result['skipped_echoes']}")
    print(f"  peak RSS:     {result['peak_rss_mib']:10.1f} MiB")
    print(
        f"  RSS growth:   {result['growth_kib_per_100k'] / 1024:10.2f} MiB per 100,000 messages"
        " (over N more messages after the N)"
    )


def arguments(doc: str) -> argparse.ArgumentParser:
    """The command line both bus benchmarks take (each adds its own options)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages injected (default 20000)")
    parser.add_argument("-k", type=int, default=2, help="bridged target plugs (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    return parser


def report(result: dict, as_json: bool, runs: int = 1) -> None:
    """One JSON line (for ``--compare``, which reads it) or the figures for a person."""
    if as_json:
        print(json.dumps(result))
    else:
        print_result(result, runs)


def immp_command() -> list[str]:
    """How to run the ``immp`` command of this environment (its script, else ``python -m``)."""
    found = shutil.which("immp")
    return [found] if found else [sys.executable, "-m", "immp"]


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]
