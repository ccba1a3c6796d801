"""
The outgoing queue's acknowledgements, line by line (no connection: the queue's writers are
handed a function that records what they write, and the test plays the server's PONGs).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import trio
import trio.testing

from immp_irc.outgoing import ACK_EVERY, Outgoing, OutgoingQueue


@contextlib.asynccontextmanager
async def _writing() -> AsyncIterator[tuple[OutgoingQueue, list[str], list[str], list[str]]]:
    """
    A queue whose data writer runs for the block: the queue, the lines written, the intent
    marks (keys) and the acknowledged deliveries (keys).
    """
    queue = OutgoingQueue(burst=100, delay=0, size=1000, log=logging.getLogger(__name__))
    written: list[str] = []
    intents: list[str] = []
    acked: list[str] = []

    async def write(line: str) -> None:
        written.append(line)

    async def before_write(item: Outgoing) -> None:
        intents.append(item.intent)

    queue.before_write = before_write
    queue.on_acked = lambda item: acked.append(item.done)
    queue.start_data()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.write_lines, write, lambda item: None)
        yield queue, written, intents, acked
        nursery.cancel_scope.cancel()


def _message(key: str | None, *lines: str) -> list[Outgoing]:
    items = [Outgoing(f"PRIVMSG #town :{line}") for line in lines]
    if key is not None:
        items[0].intent = items[-1].done = key
    return items


async def test_journaled_messages_go_one_at_a_time_each_acknowledged_before_the_next():
    async with _writing() as (queue, written, intents, acked):
        await queue.send(_message("k1", "a", "b") + _message("k2", "c"), timeout=1)
        await trio.testing.wait_all_tasks_blocked()
        # The first message's lines, then at once the PING that acknowledges them; the second
        # message waits (no intent mark yet), so that a crash now leaves only k1 in doubt.
        assert written == ["PRIVMSG #town :a", "PRIVMSG #town :b", "PING :immp-ack-1"]
        assert intents == ["k1"]
        assert queue.acknowledge("immp-ack-1")
        await trio.testing.wait_all_tasks_blocked()
        assert acked == ["k1"]
        assert intents == ["k1", "k2"]
        assert written[3:] == ["PRIVMSG #town :c", "PING :immp-ack-2"]
        assert queue.acknowledge("immp-ack-2")
        assert acked == ["k1", "k2"] and queue.pending == 0


async def test_without_the_journal_a_backlog_is_acknowledged_every_ack_every_lines():
    async with _writing() as (queue, written, _, _):
        await queue.send(_message(None, *map(str, range(ACK_EVERY + 1))), timeout=1)
        await trio.testing.wait_all_tasks_blocked()
        pings = [n for n, line in enumerate(written) if line.startswith("PING")]
        assert pings == [ACK_EVERY, ACK_EVERY + 2]  # after 20 lines, and when the queue ran out
