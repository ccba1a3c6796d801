"""
Fan-out: one ordered worker per target channel, so that a slow, hanging or failing target
neither holds up nor loses the messages of the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import immp

# How long, in total, a target's full queue may hold up the hook before the target is taken
# to be stuck. Up to then a full queue is backpressure (a burst loses nothing while the target
# keeps up); after that, until the target has emptied its queue, messages for it are dropped at
# once, counted and logged, and the other targets are served without waiting.
FULL_WAIT = 1.0


class Target:
    """
    A channel that copies go to: a bounded queue and the worker that empties it in order.

    ``deliver(target, job)`` does the work for one job; each call is cut off after ``timeout``
    seconds and a failure is logged with the target's name, then the next job runs.
    """

    def __init__(
        self,
        channel: immp.Channel,
        name: str,
        size: int,
        timeout: float | None,
        deliver: Callable[[Target, Any], Awaitable[None]],
        log: logging.Logger,
    ):
        self.channel = channel
        self.name = name
        self.timeout = math.inf if timeout is None else timeout
        self.log = log
        self._deliver = deliver
        self._send, self._receive = trio.open_memory_channel(size)
        #: Messages dropped because the queue stayed full, in total and since the target stalled.
        self.dropped = 0
        self._dropped_now = 0
        self.stuck = False
        self._waited = 0.0  # time spent waiting for room since the queue was last empty
        #: Set when the worker has finished (after :meth:`close`, once the queue is empty).
        self.done = trio.Event()
        #: Per-target settings the hook caches here (which plug options apply).
        self.options: Any = None

    async def put(self, job: Any) -> None:
        """Queue a job; see :data:`FULL_WAIT` for what happens when the queue is full."""
        try:
            self._send.send_nowait(job)
            return
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError:
            return  # the target was removed meanwhile
        if not self.stuck:
            started = trio.current_time()
            with trio.move_on_after(FULL_WAIT - self._waited):
                try:
                    await self._send.send(job)
                except trio.ClosedResourceError:
                    pass
                self._waited += trio.current_time() - started
                return
            self.stuck = True
            self.log.warning(
                "Target %s is stuck (its full queue held up the bridge for %ss): "
                "dropping messages for it until it catches up",
                self.name,
                FULL_WAIT,
            )
        self.dropped += 1
        self._dropped_now += 1

    def close(self) -> None:
        """Stop taking jobs; the worker finishes what is queued, then returns."""
        self._send.close()

    async def run(self) -> None:
        """The worker: deliver queued jobs one at a time, in order."""
        try:
            await self._work()
        finally:
            self.done.set()

    async def _work(self) -> None:
        async def handle(job: Any) -> None:
            try:
                await self._deliver(self, job)
            except Exception as exc:
                # A plug's own error says enough; anything else gets a traceback.
                trace = None if isinstance(exc, immp.PlugError) else exc
                self.log.error(
                    "Sending to %s failed: %s: %s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    exc_info=trace,
                )
            if self.stuck or self._waited:
                self._check_caught_up()

        def on_timeout() -> None:
            self.log.warning("Sending to %s timed out after %ss", self.name, self.timeout)
            if self.stuck or self._waited:
                self._check_caught_up()

        # One watchdog per target rather than a cancel scope or deadline per send (either costs
        # as much as the send to a fast plug); it cuts a send off after ``timeout``.
        async with self._receive:
            await immp.work_through(self._receive, handle, lambda: self.timeout, on_timeout)
        if self._dropped_now:
            self.log.warning(
                "Target %s closed; %d messages for it were dropped while its queue was full",
                self.name,
                self._dropped_now,
            )

    def _check_caught_up(self) -> None:
        if self._receive.statistics().current_buffer_used:
            return
        self._waited = 0.0
        if self.stuck:
            self.log.warning(
                "Target %s caught up; %d messages for it were dropped while its queue was full",
                self.name,
                self._dropped_now,
            )
            self.stuck = False
            self._dropped_now = 0
