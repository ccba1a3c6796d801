"""
The bus benchmark's scenario on the original IMMP 0.12.1 (asyncio), for comparison.

Run it in its own environment (the original owns the import name ``immp``)::

    hatch -e original run bench-bus [-n 20000] [-k 2] [--json]

or through ``hatch run bench-bus --compare``. The scenario is the one of ``benchmarks/bus.py``:
N messages posted in one dummy plug's channel, bridged by ``immp.hook.sync.SyncHook`` to K other
dummy plugs, which echo what they are sent back into their channel as a network does. The
injector keeps at most ``WINDOW`` messages in flight, as ``bus.py`` does, so that neither
implementation is measured on an unbounded backlog. Figures are measured the same way as there:
rate over the N messages, peak RSS (``ru_maxrss``) after them, and RSS growth over N more.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from _measure import arguments, inject, measure, report

import immp
from immp.hook.sync import SyncHook
from immp.plug.dummy import DummyPlug


class CountingDummyPlug(DummyPlug):
    """The original dummy plug, counting what it is sent so the benchmark can wait for it."""

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        self.put_count = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []

    async def start(self):
        # The original's timer posts every 10 s; keep the benchmark's stream pure.
        await immp.Plug.start(self)

    async def put(self, channel, msg):
        receipts = await super().put(channel, msg)
        self.put_count += 1
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= self.put_count]
            for waiter in ready:
                self._waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(None)
        return receipts

    async def wait_puts(self, count: int) -> None:
        if self.put_count >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        await asyncio.wait_for(future, 60)


async def scenario(n: int, k: int, tuned_gc: bool = False) -> dict:
    host = immp.Host()
    source = CountingDummyPlug("in", {}, host)
    outs = [CountingDummyPlug(f"out{i}", {}, host) for i in range(1, k + 1)]
    names = []
    for plug in (source, *outs):
        host.add_plug(plug)
        host.add_channel(f"{plug.name}-room", plug.channel)
        names.append(f"{plug.name}-room")
    host.add_hook(SyncHook("sync", {"channels": {"bus": names}}, host))
    runner = asyncio.ensure_future(host.run())
    while not host.running:  # noqa: ASYNC110 (the original host has no "running" event)
        await asyncio.sleep(0.01)
    if tuned_gc:
        # What our host does to the collector while it runs (immp._host._Collector), to see
        # how much of the difference that alone makes.
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
        gc.freeze()
    user = immp.User(id_="alice", real_name="Alice")

    async def post(i: int) -> None:
        source.queue(
            immp.SentMessage(
                id_=source.counter(), channel=source.channel, text=f"message {i}", user=user
            )
        )

    result = await measure(lambda start, stop: inject(post, outs, start, stop), outs, n)
    await host.quit()
    try:
        await asyncio.wait_for(runner, 10)
    except (TimeoutError, asyncio.CancelledError):
        pass
    if tuned_gc:
        gc.unfreeze()
    return {
        "impl": f"original IMMP {getattr(immp, '__version__', '0.12.1')}"
        + (" (our collector settings)" if tuned_gc else ""),
        "k": k,
        **result,
    }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument(
        "--tuned-gc",
        action="store_true",
        help="set the garbage collector as our host does while it runs (for comparison)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report(asyncio.run(scenario(args.n, args.k, args.tuned_gc)), args.json)


if __name__ == "__main__":
    main()
