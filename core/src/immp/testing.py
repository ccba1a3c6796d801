"""
What plugin authors' tests need: run a host for the length of a block, record what hooks see,
and a plug whose network is a list in memory. IMMP's own tests use these too::

    import immp
    from immp.testing import MemoryPlug, Recorder, running

    async def test_my_hook():                     # with pytest-trio
        host = immp.Host()
        plug = host.add_plug(MemoryPlug("net", {"echo": True}, host))
        host.add_hook(MyHook("mine", {}, host))
        recorder = host.add_hook(Recorder(host=host))
        async with running(host):
            await plug.receive("hello")
            await recorder.wait_for(lambda sent: sent.text == "HELLO")
        assert [str(msg.text) for _, msg in plug.sent] == ["HELLO"]
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import trio

from ._channel import Channel
from ._hook import Hook
from ._host import Host
from ._message import Message, Receipt, SentMessage, User
from ._plug import Plug
from ._schema import Optional

__all__ = ["MemoryPlug", "Recorder", "Seen", "running"]


@contextlib.asynccontextmanager
async def running(host: Host, *, timeout: float | None = 30.0) -> AsyncIterator[Host]:
    """
    Run ``host`` for the length of the block: on entry, :meth:`Host.run <immp.Host.run>` has
    opened everything that could be opened (the host is ready); on exit, the host is asked to
    quit and the block waits until every hook, plug and resource has closed.

    Raises ``trio.TooSlowError`` if the host is not ready within ``timeout`` seconds
    (``None``: no limit). Whatever ``run`` raises comes out of the ``async with``. Cancelling
    the block cancels the host (closing without waiting for ``close()``).
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.run)
        with trio.move_on_after(timeout if timeout is not None else math.inf) as waiting:
            await host.ready.wait()
        if waiting.cancelled_caught:
            nursery.cancel_scope.cancel()
        else:
            try:
                yield host
            finally:
                host.quit()
    if waiting.cancelled_caught:
        raise trio.TooSlowError(f"the host was not ready within {timeout}s")


class Seen(NamedTuple):
    """One message a :class:`Recorder` saw: what ``on_receive`` was called with."""

    sent: SentMessage
    source: Message
    primary: bool


class Recorder(Hook):
    """
    A hook that records every message it receives, in order, as :class:`Seen` tuples in
    :attr:`seen` (unpack them as ``sent, source, primary``), and can wait for one. Add it last
    with no priority: it then sees what every other hook let through.
    """

    def __init__(
        self,
        name: str = "recorder",
        config: dict | None = None,
        host: Host | None = None,
        priority: int | None = None,
    ):
        super().__init__(name, config, host, priority=priority)
        #: Every message received, oldest first.
        self.seen: list[Seen] = []
        self._changed = trio.Event()

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        self.seen.append(Seen(sent, source, primary))
        self._changed.set()
        self._changed = trio.Event()

    @property
    def messages(self) -> list[SentMessage]:
        """What was received (each ``sent``), oldest first."""
        return [seen.sent for seen in self.seen]

    def texts(self) -> list[str]:
        """The text of each message received that has any, oldest first."""
        return [str(seen.sent.text) for seen in self.seen if seen.sent.text]

    def in_channel(self, channel: Channel) -> list[SentMessage]:
        """What was received in ``channel``, oldest first."""
        return [seen.sent for seen in self.seen if seen.sent.channel == channel]

    async def wait_for(
        self, check: Callable[[SentMessage], bool] | int, timeout: float = 10.0
    ) -> Any:
        """
        Wait until a message for which ``check(sent)`` is true has been received (one already
        seen counts) and return it; with a number instead, wait until that many messages have
        been received and return :attr:`messages`.

        Raises ``trio.TooSlowError`` after ``timeout`` seconds.
        """
        with trio.fail_after(timeout):
            while True:
                if isinstance(check, int):
                    if len(self.seen) >= check:
                        return self.messages
                else:
                    for seen in self.seen:
                        if check(seen.sent):
                            return seen.sent
                await self._changed.wait()


class MemoryPlug(Plug):
    """
    A plug whose network is memory, for tests: :meth:`put` appends ``(channel, msg)`` to
    :attr:`sent` and returns one receipt per part; :meth:`receive` posts a message as if a
    person had typed it. Config keys:

    ``echo`` (bool, default false)
        Hand every message put back to the host as the network's echo of it, as most real
        networks do (the host recognises it: ``sent is not source``).
    ``split`` (int, default 1)
        Parts each message put becomes (each its own receipt and echo), like long messages
        on IRC.
    """

    network_name = "Memory"
    can_edit = True
    can_delete = True
    schema = {Optional("echo", False): bool, Optional("split", 1): int}

    def __init__(self, name: str, config: dict | None, host: Host):
        super().__init__(name, config, host)
        #: What was put, oldest first: ``(channel, msg)``.
        self.sent: list[tuple[Channel, Message]] = []
        #: What :meth:`edit` and :meth:`delete` were asked: ``("edit", receipt, msg)`` or
        #: ``("delete", receipt, None)``.
        self.changes: list[tuple[str, Receipt, Message | None]] = []
        self._ids = itertools.count(1)

    async def receive(
        self,
        text: str | Message = "",
        channel: Channel | str = "room",
        user: User | None = None,
        **fields: Any,
    ) -> SentMessage:
        """
        Post a message in ``channel`` (a source string on this plug, or a channel) as
        ``user`` (default: a user ``person``), as the network would have; returns it once
        the host has it. Waits while the host's inbox for this plug is full.
        """
        if not isinstance(channel, Channel):
            channel = Channel(self, channel)
        if isinstance(text, Message):
            sent = SentMessage.copy_of(text, id=f"in{next(self._ids)}", channel=channel, **fields)
        else:
            sent = SentMessage(f"in{next(self._ids)}", channel, text=text, **fields)
        if sent.user is None:
            sent.user = user or User("person", self, username="person")
        await self.queue(sent)
        return sent

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        self.sent.append((channel, msg))
        receipts = []
        for _part in range(max(1, self.config["split"])):
            sent = SentMessage.copy_of(msg, id=f"out{next(self._ids)}", channel=channel)
            if self.config["echo"]:
                await self.queue(sent)
            receipts.append(sent.receipt)
        return receipts

    async def edit(self, receipt: Receipt, msg: Message) -> Receipt:
        self.changes.append(("edit", receipt, msg))
        return Receipt(receipt.id, receipt.channel, revision=receipt.revision + 1)

    async def delete(self, receipt: Receipt) -> None:
        self.changes.append(("delete", receipt, None))

    async def channel_is_private(self, channel: Channel) -> bool:
        """Channels whose source starts with ``@`` are private."""
        return channel.source.startswith("@")
