"""
The watchdog: a time limit on each of many calls that one worker makes one after another.

A cancel scope per call (``trio.fail_after``) costs a few microseconds to enter and leave, as
much as the rest of a hook's ``on_receive`` on the hot path. A worker that calls one thing at a
time instead tells its watchdog when each call starts and ends (two attribute writes), and the
watchdog, a task of its own that wakes once per ``timeout`` (or at the current call's deadline),
cancels the worker's scope when a call overruns. The deadline is exact: the watchdog always
sleeps until the current call's start plus ``timeout`` at the latest.

::

    async with trio.open_nursery() as nursery:
        watchdog = Watchdog(lambda: hook.timeout)
        nursery.start_soon(watchdog.run)
        while more_work:
            with watchdog.scope():          # a fresh scope after each overrun
                while more_work:
                    watchdog.begin()
                    try:
                        await call()
                    finally:
                        watchdog.end()
                continue
            log("timed out")                # only reached when the watchdog cut a call off
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio


class Watchdog:
    """
    Cuts off the current call of one worker after ``timeout()`` seconds (``None`` or
    ``math.inf``: never). ``timeout`` is read at the start of each call, so it may change.
    """

    __slots__ = ("_calls", "_changed", "_limit", "_now", "_scope", "_started", "_timeout")

    def __init__(self, timeout: Callable[[], float | None]):
        self._timeout = timeout
        # The run's clock, looked up once: trio.current_time() goes through two more calls.
        self._now = trio.lowlevel.current_clock().current_time
        self._limit = self._read()
        self._started: float | None = None
        self._calls = 0
        self._scope = trio.CancelScope()
        self._changed: trio.Event | None = None

    def _read(self) -> float:
        value = self._timeout()
        return math.inf if value is None else value

    def scope(self) -> trio.CancelScope:
        """A fresh cancel scope for the worker to run its calls in."""
        self._scope = trio.CancelScope()
        return self._scope

    def begin(self) -> None:
        """Say that a call starts now."""
        self._calls += 1
        self._started = self._now()
        limit = self._timeout()
        if limit != self._limit:
            # Rare: the limit changed; wake the watchdog so it sleeps by the new one.
            self._limit = math.inf if limit is None else limit
            if self._changed is not None:
                self._changed.set()

    def end(self) -> None:
        """Say that the current call returned (or raised)."""
        self._started = None

    async def run(self) -> None:
        """The watchdog task: start it in the worker's nursery; cancel it with the worker."""
        while True:
            calls, started, limit = self._calls, self._started, self._limit
            # Idle: a call that starts while this sleeps is seen when it wakes, which is before
            # that call's own deadline; then it sleeps until that deadline.
            deadline = (trio.current_time() if started is None else started) + limit
            self._changed = trio.Event()
            with trio.move_on_at(deadline):
                await self._changed.wait()
                continue  # the limit changed: start over with the new one
            if started is not None and self._calls == calls and self._started is not None:
                self._scope.cancel()


async def take(receive: trio.MemoryReceiveChannel):
    """
    The next item of a memory channel, for a worker that empties it in order: what is already
    queued is taken without a trip through the scheduler (only a cancellation check), and only
    an empty channel waits. Raises ``trio.EndOfChannel`` once the channel is closed and empty.
    """
    try:
        item = receive.receive_nowait()
    except trio.WouldBlock:
        return await receive.receive()
    await trio.lowlevel.checkpoint_if_cancelled()
    return item


async def work_through(
    receive: trio.MemoryReceiveChannel,
    handle: Callable[[object], Awaitable[None]],
    timeout: Callable[[], float | None],
    on_timeout: Callable[[], None],
) -> None:
    """
    Run ``await handle(item)`` for every item of a memory channel, one at a time and in order,
    until the channel is closed and empty. A call still running after ``timeout()`` seconds is
    cut off, ``on_timeout()`` is called, and the next item runs. ``handle`` deals with its own
    exceptions. This is the loop the module docstring describes, written once.
    """
    watchdog = Watchdog(timeout)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog.run)
        done = False
        while not done:
            with watchdog.scope():
                while True:
                    try:
                        item = await take(receive)
                    except trio.EndOfChannel:
                        break
                    watchdog.begin()
                    try:
                        await handle(item)
                    finally:
                        watchdog.end()
                done = True  # closed and empty
            if not done:
                on_timeout()
        nursery.cancel_scope.cancel()
