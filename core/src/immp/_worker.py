"""
Workers: a bounded queue and the one task that handles its items in order, each call with a
time limit. The host gives one to every unprioritised hook; the sync hook one to every target.

The time limit is the watchdog:

A cancel scope per call (``trio.fail_after``) costs a few microseconds to enter and leave, as
much as the rest of a hook's ``on_receive`` on the hot path; so did reading the clock at the
start of each call (8% of a bridged message's instructions, six calls per message). A worker
that calls one thing at a time instead counts its calls, once as each starts and once as it
ends (odd: one is under way), and the watchdog, a task of its own, looks at the count every
eighth of ``timeout``: a call it saw under way at looks ``timeout`` apart is cut off (its
worker's scope cancelled). So a call is never cut off before ``timeout``, and at most an eighth
of it after.

::

    async with trio.open_nursery() as nursery:
        watchdog = Watchdog(lambda: hook.timeout)
        nursery.start_soon(watchdog.run)
        while more_work:
            with watchdog.scope():          # a fresh scope after each overrun
                while more_work:
                    watchdog.calls += 1     # under way
                    try:
                        await call()
                    finally:
                        watchdog.calls += 1 # done
                continue
            log("timed out")                # only reached when the watchdog cut a call off
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

import trio

#: While hooks handle a received message (and host observers want send latencies): the
#: ``trio.current_time()`` at which the host took it. Workers carry it from the producer's task
#: to the item's handler, so that a send made by a hook's worker, or by a sync target's, knows
#: which arrival it relays. ``None`` otherwise.
relaying: ContextVar[float | None] = ContextVar("immp_relaying", default=None)
#: The worker whose task this is (set by :meth:`Worker.run` for its own task).
current_worker: ContextVar[Worker | None] = ContextVar("immp_worker", default=None)

#: A loop that takes queued items without waiting (a worker, the host's pump) checks for
#: cancellation once per this many items, not per item: the check is a coroutine call, as
#: dear as the rest of taking an item, and a loop that finds its queue never empty must still
#: notice a cancellation soon. The check comes before the item is taken, so that a worker's
#: time limit never cuts off an item it did not start.
CHECK_EVERY = 16


class _Relayed:
    """A queued item with the arrival time of the received message it came from."""

    __slots__ = ("arrived", "item")

    def __init__(self, arrived: float, item: tuple):
        self.arrived = arrived
        self.item = item


class Watchdog:
    """
    Cuts off the current call of one worker once it has run for ``timeout()`` seconds (``None``
    or ``math.inf``: never); see the module docstring. The worker adds one to :attr:`calls` as a
    call starts and one as it ends. ``timeout`` is read at each look, so it may change: a new
    limit counts from the next look (within an eighth of the old one; within a second of an
    infinite one), and time a call spent under an infinite limit does not count towards a finite
    one that follows (a sync target's limit is infinite while its plug is disconnected).
    """

    __slots__ = ("_scope", "_timeout", "calls")

    #: Looks per ``timeout``: how late at most (a fraction of it) an overrunning call is cut off.
    LOOKS = 8
    #: Seconds between looks while the limit is infinite (for a limit that becomes finite).
    IDLE_LOOK = 1.0

    def __init__(self, timeout: Callable[[], float | None]):
        self._timeout = timeout
        #: Calls started plus calls ended: odd while one is under way.
        self.calls = 0
        self._scope = trio.CancelScope()

    def scope(self) -> trio.CancelScope:
        """A fresh cancel scope for the worker to run its calls in."""
        self._scope = trio.CancelScope()
        return self._scope

    async def run(self) -> None:
        """The watchdog task: start it in the worker's nursery; cancel it with the worker."""
        seen, since = 0, 0.0  # the call under way at the last look, and when it was first seen
        while True:
            limit = self._timeout()
            if limit is None:
                limit = math.inf
            calls = self.calls
            if calls & 1 and limit == math.inf:
                seen = 0  # time under an infinite limit does not count once it is finite again
            elif calls & 1:
                now = trio.current_time()
                if calls != seen:
                    seen, since = calls, now  # it started at most a look ago: never early
                elif now - since >= limit:
                    seen = 0
                    self._scope.cancel()
            else:
                seen = 0
            look = self.IDLE_LOOK if limit == math.inf else max(limit / self.LOOKS, 0.001)
            await trio.sleep(look)


async def take(receive: trio.MemoryReceiveChannel):
    """
    The next item of a memory channel, for a worker that empties it in order: what is already
    queued is taken without a trip through the scheduler (only a cancellation check, made
    before the item is taken so that a cancellation never loses one), and only an empty channel
    waits. Raises ``trio.EndOfChannel`` once the channel is closed and empty.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        return receive.receive_nowait()
    except trio.WouldBlock:
        return await receive.receive()


class Queue:
    """
    A bounded first-in first-out queue with one consumer: what a :class:`Worker` reads.

    A trio memory channel does the same for any number of tasks on either side, and costs that
    generality on every item (six items per bridged message go through a queue like this): here
    a put onto room is a deque append, and a put onto an idle consumer one reschedule. Producers
    that wait for room (only while it is full) park in order.
    """

    __slots__ = ("_consumer", "_room", "closed", "items", "size", "waiting")

    def __init__(self, size: int):
        self.size = size
        #: What is queued, oldest first: read it (a consumer tests it for items without a
        #: method call: ``if queue.items``), never change it but through the methods.
        self.items: deque = deque()
        self._consumer: trio.lowlevel.Task | None = None
        self._room = trio.lowlevel.ParkingLot()
        #: Producers parked in :meth:`put`, waiting for room.
        self.waiting = 0
        #: Set by :meth:`close` (no more puts) and when the consumer is gone.
        self.closed = False

    def __len__(self) -> int:
        return len(self.items)

    def offer(self, item: Any) -> bool:
        """Queue ``item`` if there is room (``True``); ``False`` if full. Closed: dropped."""
        if self.closed:
            return True
        items = self.items
        if len(items) >= self.size:
            return False
        items.append(item)
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            trio.lowlevel.reschedule(consumer)
        return True

    async def put(self, item: Any) -> None:
        """
        Queue ``item``, waiting (in order with other waiters) while the queue is full. Raises
        ``trio.ClosedResourceError`` if it is closed (before or while waiting).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.offer(item):
            self.waiting += 1
            try:
                await self._room.park()
            finally:
                self.waiting -= 1
        if self.closed:
            raise trio.ClosedResourceError("the queue was closed")
        await trio.lowlevel.cancel_shielded_checkpoint()

    def close(self) -> None:
        self.closed = True
        consumer = self._consumer
        if consumer is not None:
            self._consumer = None
            trio.lowlevel.reschedule(consumer)
        self._room.unpark_all()

    async def take(self) -> Any:
        """:meth:`get` after a cancellation check, and without a trip through the scheduler
        when an item is there (see :func:`take`)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.items:
            return self.pop()
        return await self.get()

    def pop(self) -> Any:
        """The next item, which must be there (``len(queue)``): room for a waiting producer."""
        item = self.items.popleft()
        if self.waiting:
            self._room.unpark()
        return item

    async def get(self) -> Any:
        """The next item; waits while empty. Raises ``trio.EndOfChannel`` once closed and empty."""
        items = self.items
        while not items:
            if self.closed:
                raise trio.EndOfChannel
            self._consumer = trio.lowlevel.current_task()

            def abort(_):
                self._consumer = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        return self.pop()


class Worker:
    """
    A bounded queue of items and the task that handles them in order, one at a time.

    - Each item is a tuple of arguments: ``await handle(*item)`` runs for it. A call still
      running after ``timeout()`` seconds is cut off and ``on_timeout()`` is called; a call
      that raises is passed to ``on_error(exc)``. Either way the next item runs.
    - :meth:`offer` queues an item if there is room, at once. :meth:`put` is backpressure while
      the queue is full, up to ``stuck_after`` seconds. With ``patient`` (the host's hooks),
      that clock restarts whenever the worker takes an item: a slow worker slows its producers
      down and loses nothing, and only one that takes nothing for that long is stuck. Without
      it (the sync hook's targets, which must not slow their sibling targets down), the clock
      counts all the time the queue held producers up since it was last empty. Once stuck,
      until it has emptied its queue, items for the worker are dropped at once, counted, and
      logged (``label`` names it in the log). ``on_dropped(item)``, if given, is called for
      each item dropped, then or because the worker was closed.
    - ``finished(item)``, if given, is called once the call for an item returned, raised or
      was cut off (after ``on_error`` or ``on_timeout``), before the next item (not for a call
      cancelled with the worker's task).

    Start :meth:`run` in a nursery; :meth:`close` lets it finish what is queued and return.
    """

    def __init__(
        self,
        label: str,
        size: int,
        handle: Callable[..., Awaitable[None]],
        *,
        on_error: Callable[[Exception], None],
        timeout: Callable[[], float | None],
        on_timeout: Callable[[], None],
        stuck_after: float,
        patient: bool,
        log: logging.Logger,
        on_dropped: Callable[[tuple], None] | None = None,
        finished: Callable[[tuple], None] | None = None,
    ):
        self.label = label
        self.stuck_after = stuck_after
        self.patient = patient
        self.log = log
        self._handle = handle
        self._on_error = on_error
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._on_dropped = on_dropped
        self._finished = finished
        self._queue = Queue(size)
        #: Items taken from the queue so far: the worker's sign of progress.
        self.taken = 0
        #: Items dropped because the queue stayed full, in total and since the worker got stuck.
        self.dropped = 0
        self._dropped_now = 0
        self.stuck = False
        #: Whether the hook it feeds holds the journal entries it is handed (the pipeline's).
        self.journaled = False
        self._held = 0.0  # seconds producers waited since the queue was last empty (not patient)
        # When a call last ended a wait for what every worker waits for alike (see excused())
        self._caught_up_at = -math.inf
        #: Set when :meth:`run` has returned.
        self.done = trio.Event()

    def __len__(self) -> int:
        """Items waiting in the queue."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or :meth:`run` returned): items are dropped."""
        return self._queue.closed

    @contextlib.contextmanager
    def excused(self) -> Iterator[None]:
        """
        The call under way waits for what every worker waits for alike, not for its own
        network: the journal's commit of its entry (see Pipeline.send). A worker that waits so
        has caught up with what can be sent: when the wait ends, what producers waited on its
        full queue so far (not patient) no longer counts towards ``stuck_after``. Else a slow
        store made a bridge's targets look stuck and drop copies, while each was keeping up.
        """
        try:
            yield
        finally:
            self._held = 0.0
            self._caught_up_at = trio.current_time()

    def offer(self, item: tuple) -> bool:
        """
        Queue an item if the queue has room (or the worker was closed: then it is dropped).
        ``False`` if the queue is full: then :meth:`put` decides.
        """
        arrived = relaying.get()
        if arrived is not None:
            item = _Relayed(arrived, item)
        queue = self._queue
        if queue.closed:  # closed meanwhile: dropped
            if self._on_dropped is not None:
                self._on_dropped(item.item if type(item) is _Relayed else item)
            return True
        return queue.offer(item)

    async def put(self, item: tuple) -> None:
        """Queue an item: see the class docstring for what happens when the queue is full."""
        if self.offer(item):
            return
        arrived = relaying.get()
        if arrived is not None:
            item = _Relayed(arrived, item)
        if not self.stuck:
            while True:
                taken, started = self.taken, trio.current_time()
                # Not patient: what is left of stuck_after (two producers may both have waited).
                limit = (
                    self.stuck_after if self.patient else max(0.0, self.stuck_after - self._held)
                )
                with trio.move_on_after(limit):
                    try:
                        await self._queue.put(item)
                    except trio.ClosedResourceError:
                        if self._on_dropped is not None:  # closed meanwhile
                            self._on_dropped(item.item if type(item) is _Relayed else item)
                    if not self.patient:  # (the part since the worker last caught up, if later)
                        self._held += trio.current_time() - max(started, self._caught_up_at)
                    return
                if not self.patient:
                    if self._caught_up_at <= started:
                        break
                    # It caught up meanwhile (see excused()): only the time since counts.
                    self._held += trio.current_time() - self._caught_up_at
                elif self.taken == taken:
                    break
            self.stuck = True
            self.log.warning(
                "%s is stuck (it took nothing for %ss while its queue of %d was full): "
                "dropping messages for it until it catches up",
                self.label,
                self.stuck_after,
                self._queue.size,
            )
        self.dropped += 1
        self._dropped_now += 1
        if self._on_dropped is not None:
            self._on_dropped(item.item if type(item) is _Relayed else item)

    def close(self) -> None:
        """Take no more items; :meth:`run` finishes what is queued, then returns."""
        self._queue.close()

    async def run(self) -> None:
        """The worker task: handle queued items in order until closed and empty."""
        try:
            await self._work()
        finally:
            self._queue.close()  # what is offered from now on is dropped
            if self._dropped_now:
                self.log.warning(
                    "%s closed; %d messages for it were dropped while its queue was full",
                    self.label,
                    self._dropped_now,
                )
            self.done.set()

    async def _work(self) -> None:
        # The loop of the module docstring. This runs once per message per hook and per sync
        # target, so the calls are inline: take(), handle(), on_error().
        current_worker.set(self)
        queue, handle, on_error = self._queue, self._handle, self._on_error
        finished = self._finished
        items, pop = queue.items, queue.pop
        current = None  # the item whose call is under way
        checkpoint = trio.lowlevel.checkpoint_if_cancelled
        watchdog = Watchdog(self._timeout)
        relayed = False  # whether this task's `relaying` is set
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watchdog.run)
            done = False
            while not done:
                with watchdog.scope():
                    checks = 0
                    while True:
                        if items:  # queue.take() inline: what is queued needs no await
                            checks += 1
                            if checks == CHECK_EVERY:
                                checks = 0
                                await checkpoint()  # before it is taken: a cut-off loses none
                            item = pop()
                        else:
                            try:
                                item = await queue.get()
                            except trio.EndOfChannel:
                                break
                        self.taken += 1
                        if type(item) is _Relayed:
                            relaying.set(item.arrived)
                            item = item.item
                            relayed = True
                        elif relayed:
                            relaying.set(None)
                            relayed = False
                        watchdog.calls += 1  # under way (see Watchdog)
                        current = item
                        try:
                            await handle(*item)
                        except Exception as exc:
                            on_error(exc)
                        finally:
                            watchdog.calls += 1
                        current = None
                        if finished is not None:
                            finished(item)
                        if self.stuck or self._held:
                            self._check_caught_up()
                    done = True  # closed and empty
                if not done:
                    self._on_timeout()
                    if current is not None and finished is not None:
                        finished(current)  # cut off
                    current = None
                    if self.stuck or self._held:
                        self._check_caught_up()
            nursery.cancel_scope.cancel()

    def _check_caught_up(self) -> None:
        if len(self):
            return
        self._held = 0.0
        if not self.stuck:
            return
        self.log.warning(
            "%s caught up; %d messages for it were dropped while its queue was full",
            self.label,
            self._dropped_now,
        )
        self.stuck = False
        self._dropped_now = 0
