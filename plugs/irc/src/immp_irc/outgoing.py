"""
The outgoing side of one IRC connection: lines waiting to be written, flood control, and the
acknowledgements that make a reconnect lose nothing.

Lines wait in one :class:`OutgoingQueue` per plug, which outlives each TCP connection: lines
queued while disconnected go out in order after the next registration. They leave it under flood
control (a token bucket: a burst, then one line per ``send-delay``); replies to CTCP requests,
then joins and ``perform`` lines, go ahead of data lines under the same flood control, and only
``PONG`` (and our keepalive ``PING``) is written at once, outside it.

A data line written to a socket stays "unacknowledged" until a later ``PING`` we send comes back
as ``PONG`` (servers answer in order); lines still unacknowledged when a connection dies go back
to the front of the queue and are sent again after the reconnect, so a dying server can
duplicate a line but never lose one. Without the journal that PING follows every
:data:`ACK_EVERY` lines in a row, or the last line when the queue runs empty.

With the host's journal on, a message's lines carry its delivery key: :attr:`OutgoingQueue.
before_write` runs (and is awaited) before the first line's first write -- the plug marks the
delivery as being written and waits for that mark to be durable -- and
:attr:`OutgoingQueue.on_acked` when the last line is acknowledged. A process killed in between
leaves the delivery "in doubt" (see docs/journal.md). To keep that to the one message in
flight, a journaled message's last line is followed at once by an acknowledging PING, and the
next journaled message is not begun (no intent mark, no write) until that PING came back: a
round trip per message, well within ``send-delay`` on any real link. The PING takes a
flood-control token like any line (servers count it), so a backlog of one-line journaled
messages drains at half the line rate.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

# Send a PING (whose PONG acknowledges every line before it) at least every this many lines.
ACK_EVERY = 20
# The token of our acknowledging PINGs: ``PING :immp-ack-N``.
ACK_PREFIX = "immp-ack-"
# PONGs (and our keepalive PING) waiting to be written, at once and outside flood control: only
# the server sends us PINGs, so this only bounds a misbehaving server.
MAX_CONTROL = 64
# Replies to other users' requests (CTCP VERSION, PING) waiting for flood control. Anyone can
# ask, as often as they like: beyond this many waiting, replies are dropped (one warning per
# flood), so that a burst of requests neither grows memory nor, answered at once, gets the bot
# killed for "Excess Flood".
MAX_REPLIES = 8

#: Writes one line (without CR LF) to the current connection.
Write = Callable[[str], Awaitable[None]]


def count_lines(count: int) -> str:
    """``1 line``, ``2 lines``: a number of lines as the log and errors say it."""
    return f"{count} line" if count == 1 else f"{count} lines"


class QueueFull(Exception):
    """The outgoing queue stayed full for longer than the plug was willing to wait."""


@dataclass(eq=False)
class Outgoing:
    """One queued line (without CR LF) and what the plug wants to know when it is written."""

    line: str
    meta: Any = None
    ack: int | None = field(default=None, repr=False)
    #: Whether ``on_sent`` has seen this line (it is written again after a reconnect).
    reported: bool = field(default=False, repr=False)
    #: The journal delivery key of the message, on its first line (intent before the write)
    #: and on its last (done once acknowledged); ``None`` otherwise.
    intent: str | None = field(default=None, repr=False)
    done: str | None = field(default=None, repr=False)


class TokenBucket:
    """``burst`` lines at once, then one line per ``interval`` seconds."""

    def __init__(self, burst: int, interval: float):
        self.burst = max(1, burst)
        self.interval = interval
        self.tokens = float(self.burst)
        self.updated = trio.current_time()

    def _refill(self) -> None:
        now = trio.current_time()
        if self.interval > 0:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) / self.interval)
        else:
            self.tokens = self.burst
        self.updated = now

    async def take(self) -> None:
        """Wait until a line may be written, and count it."""
        self._refill()
        if self.tokens < 1:
            await trio.sleep((1 - self.tokens) * self.interval)
            self._refill()
        self.tokens -= 1


class OutgoingQueue:
    """
    Every line waiting to be written on a connection, by kind, and the two writers that empty
    it during a session (:meth:`write_control` and :meth:`write_lines`). Data lines are held
    back until :meth:`start_data` (registration done); :meth:`end_session` puts the lines a dead
    connection may not have delivered back in front.
    """

    def __init__(self, *, burst: int, delay: float, size: int, log: logging.Logger):
        self.burst = burst
        self.delay = delay
        self.size = size
        self.log = log
        self._data: deque[Outgoing] = deque()  # bounded by size (see send)
        self._priority: deque[str] = deque()  # joins and perform, ahead of data
        self._replies: deque[str] = deque()  # CTCP replies, ahead of those (MAX_REPLIES)
        self._replies_dropped = False  # warned about dropping replies since the last ran out
        self._control: deque[str] = deque()  # PONG, keepalive PING (MAX_CONTROL)
        self._unacked: deque[Outgoing] = deque()
        self._acks = itertools.count(1)
        self._data_open = False
        self._wake = trio.Event()  # something for the writers to do
        self._space = trio.Event()  # room in the queue, or lines acknowledged
        #: Awaited before the first write of a line with ``intent`` (see the module docstring).
        self.before_write: Callable[[Outgoing], Awaitable[None]] | None = None
        #: Called when a line with ``done`` is acknowledged.
        self.on_acked: Callable[[Outgoing], None] | None = None

    @property
    def pending(self) -> int:
        """Data lines queued or written but not yet acknowledged by the server."""
        return len(self._data) + len(self._unacked)

    def _poke(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def _freed(self) -> None:
        self._space.set()
        self._space = trio.Event()

    # -- queueing -----------------------------------------------------------------------------

    async def send(self, items: list[Outgoing], timeout: float) -> None:
        """
        Queue data lines, in order, after everything queued before. When the queue is full this
        waits for room (backpressure to the caller) for at most ``timeout`` seconds, then raises
        :class:`QueueFull` with none of ``items`` queued (so a message goes out whole or not at
        all, and the caller can say so). Cancelled while waiting, it queues nothing.
        """
        with trio.move_on_after(timeout):
            while len(self._data) + len(items) > self.size and self._data:
                await self._space.wait()
            self._data.extend(items)
            self._poke()
            return
        raise QueueFull(f"{count_lines(len(self._data))} waiting")

    def send_priority(self, line: str) -> None:
        """Queue a line (a join, a ``perform`` line) ahead of data lines, flood-controlled."""
        self._priority.append(line)
        self._poke()

    def send_control(self, line: str) -> bool:
        """
        Queue a line (``PONG``) to be written at once, outside flood control; ``False`` if too
        many are waiting.
        """
        if len(self._control) >= MAX_CONTROL:
            return False
        self._control.append(line)
        self._poke()
        return True

    def send_reply(self, line: str) -> bool:
        """
        Queue a reply to someone's request (a CTCP reply) ahead of other lines, under flood
        control. With :data:`MAX_REPLIES` waiting it is dropped (``False``), and the first drop
        of a flood is logged.
        """
        if len(self._replies) >= MAX_REPLIES:
            if not self._replies_dropped:
                self._replies_dropped = True
                self.log.warning("%d replies (CTCP) waiting for flood control; dropping further "
                                 "replies until they are sent", len(self._replies))  # fmt: skip
            return False
        self._replies.append(line)
        self._poke()
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued data line has been acknowledged; ``False`` on timeout."""
        with trio.move_on_after(timeout):
            while self.pending:
                await self._space.wait()
            return True
        return False

    # -- acknowledgements and sessions --------------------------------------------------------

    def acknowledge(self, token: str) -> bool:
        """
        Take in a ``PONG`` token: ``True`` if it was one of our acknowledging PINGs, whose
        lines (and every line before them) the server has now seen.
        """
        if not token.startswith(ACK_PREFIX):
            return False
        try:
            ack = int(token.removeprefix(ACK_PREFIX))
        except ValueError:
            return False
        while self._unacked and self._unacked[0].ack is not None and self._unacked[0].ack <= ack:
            item = self._unacked.popleft()
            if item.done is not None and self.on_acked is not None:
                self.on_acked(item)
        self._freed()
        self._poke()  # write_lines may be holding the next journaled message for this
        return True

    def start_data(self) -> None:
        """Registration is done: data lines may be written from now on."""
        self._data_open = True
        self._poke()

    def end_session(self) -> None:
        """
        The connection is gone: lines the server may not have seen go back to the front of the
        data queue, in order; joins, replies and PONGs meant for that connection are dropped.
        """
        for item in reversed(self._unacked):
            item.ack = None
            self._data.appendleft(item)
        self._unacked.clear()
        self._priority.clear()
        self._replies.clear()
        self._replies_dropped = False
        self._control.clear()
        self._data_open = False

    # -- the writers of a session -------------------------------------------------------------

    async def write_control(self, write: Write) -> None:
        """
        Write PONGs as they come, until cancelled. A task of its own, so that a PONG never
        waits for the flood-control bucket that :meth:`write_lines` may be sleeping on.
        """
        while True:
            if self._control:
                await write(self._control.popleft())
            else:
                await self._wake.wait()

    async def write_lines(self, write: Write, on_sent: Callable[[Outgoing], None]) -> None:
        """
        Write replies, then priority lines, then (once :meth:`start_data` was called) data
        lines, under flood control, until cancelled. ``on_sent(item)`` runs once per data line,
        just before its first write (a line written again after a reconnect is not reported
        again), so that it has run when the server's echo of the line can be read.
        """
        bucket = TokenBucket(self.burst, self.delay)
        unmarked = 0  # written data lines not yet followed by an acknowledging PING
        while True:
            if self._replies:
                await bucket.take()
                await write(self._replies.popleft())
                if not self._replies:
                    self._replies_dropped = False  # the flood is over: warn again next time
            elif self._priority:
                await bucket.take()
                await write(self._priority.popleft())
            elif self._data_open and self._data and not self._held():
                await bucket.take()
                if not self._data or not self._data_open or self._held():
                    continue
                item = self._data.popleft()
                self._freed()
                self._unacked.append(item)
                if not item.reported:
                    if item.intent is not None and self.before_write is not None:
                        await self.before_write(item)  # the journal's intent mark, durable
                    # Before the write, which yields: the server's echo may be read straight
                    # after. Once: a line written again after a reconnect is the same message.
                    item.reported = True
                    on_sent(item)
                await write(item.line)
                unmarked += 1
                # A journaled message's last line is acknowledged at once: see the docstring.
                if item.done is not None or unmarked >= ACK_EVERY or not self._data:
                    await bucket.take()
                    await write(self._mark_ack())
                    unmarked = 0
            else:
                await self._wake.wait()

    def _held(self) -> bool:
        """
        Whether the next data line begins a journaled message while the last one written is not
        acknowledged yet: it waits, so that a crash leaves at most one message in doubt.
        """
        return self._data[0].intent is not None and any(
            item.done is not None for item in self._unacked
        )

    def _mark_ack(self) -> str:
        """The PING that, answered, acknowledges every data line written since the last."""
        ack = next(self._acks)
        for item in reversed(self._unacked):
            if item.ack is not None:
                break
            item.ack = ack
        return f"PING :{ACK_PREFIX}{ack}"
