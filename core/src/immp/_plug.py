"""Plugs: one connection to one chat network."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ._channel import Channel
from ._errors import PlugError
from ._message import Message, Receipt, SentMessage, User
from ._openable import Openable

if TYPE_CHECKING:
    from ._host import Host

# How long the receive path waits for a still-running put() on the same channel before deciding
# that an incoming message is not the echo of it. Networks echo our own messages, sometimes
# before the call that sent them returns.
ECHO_WAIT = 2.0


class EchoHistory:
    """
    What a plug sent recently, so that the network's echo of it is recognised: (channel, id) ->
    (the original message, whether this receipt is its first part). Bounded: the oldest entries
    are forgotten, and an echo of a forgotten message is treated as a new message.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple[Channel, str], tuple[Message, bool]] = OrderedDict()

    def add(self, receipt: Receipt, source: Message, primary: bool) -> None:
        self._entries[(receipt.channel, receipt.id)] = (source, primary)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, channel: Channel, id: str) -> tuple[Message, bool] | None:
        return self._entries.get((channel, id))

    def __len__(self) -> int:
        return len(self._entries)


class Plug(Openable):
    """
    A connection to a chat network. Subclasses implement :meth:`open`/:meth:`close`,
    :meth:`put`, and as much of the channel and user API as the network allows.

    Received messages go to the host with ``await self.queue(sent)``; the host runs the hooks.
    Hooks send with ``await channel.send(msg)``, which calls :meth:`send`: ``before_send`` hooks,
    then :meth:`put`.
    """

    network_name: ClassVar[str] = "Unknown"
    #: Whether :meth:`edit` and :meth:`delete` work on this network.
    can_edit: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    #: A plug provided by a hook rather than configured (e.g. the sync hook's bridge plug); the
    #: runner's ``-w`` never writes it to the config file.
    virtual: bool = False
    #: A schema for the ``source`` of this plug's channels in the config (always a string), e.g.
    #: an :class:`~immp.Warn` for a source that is legal but most likely a mistake.
    source_schema: ClassVar[Any] = None

    def __init__(self, name: str, config, host: Host):
        super().__init__(name, config, host)
        self._echoes = EchoHistory(host.echo_history if host else 10_000)
        self._inbox: trio.MemorySendChannel | None = None
        self._in_flight: dict[int, Channel] = {}  # puts under way, by token
        # Set when a put() finishes; made only while _match_echo waits for one.
        self._put_done: trio.Event | None = None
        self._tokens = itertools.count()

    @property
    def network_id(self) -> str:
        """Identifies the network instance (e.g. ``irc:irc.libera.chat``); override."""
        return f"{self.network_name.lower()}:{self.name}"

    # -- receiving ------------------------------------------------------------------------------

    def offer(self, sent: SentMessage) -> bool:
        """
        Hand a received message to the host if its receive buffer for this plug has room, at
        once and without waiting; ``False`` if it is full (then :meth:`queue` would wait).
        """
        if self._inbox is None:
            raise PlugError(f"{self.name}: received a message while not open")
        try:
            self._inbox.send_nowait(sent)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise PlugError(f"{self.name}: received a message while closing") from None
        return True

    async def queue(self, sent: SentMessage) -> None:
        """
        Hand a received message to the host. Waits when the host's receive buffer for this plug
        is full (backpressure: stop reading from the network), never drops.
        """
        # With room in the inbox, hand over without a trip through the scheduler: this is the
        # hottest call of the receive path. Order per plug is kept either way; order between
        # two plugs was never defined (they are two networks).
        if self.offer(sent):
            return
        try:
            await self._inbox.send(sent)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise PlugError(f"{self.name}: received a message while closing") from None

    async def _match_echo(self, sent: SentMessage) -> tuple[Message, bool] | None:
        hit = self._echoes.get(sent.channel, sent.id)
        if hit is not None or not self._in_flight:
            return hit
        # Only a put already under way when this message arrived can have produced it: wait for
        # those (and no later ones, or steady traffic into the channel would hold it up), for
        # ECHO_WAIT at most.
        pending = [token for token, ch in self._in_flight.items() if ch == sent.channel]
        if not pending:
            return None
        deadline = trio.current_time() + ECHO_WAIT
        while any(token in self._in_flight for token in pending):
            if self._put_done is None:
                self._put_done = trio.Event()
            with trio.move_on_at(deadline) as scope:
                await self._put_done.wait()
            hit = self._echoes.get(sent.channel, sent.id)
            if hit is not None or scope.cancelled_caught:
                break
        return hit

    # -- sending --------------------------------------------------------------------------------

    async def send(self, channel: Channel, msg: Message) -> list[Receipt]:
        """
        Send a message: run ``before_send`` hooks (which may change the target or the message,
        or drop it), then :meth:`put`. Returns the receipts of what was posted; an empty list if
        a hook dropped it.
        """
        if self.host._current_plan().before_send:  # else skip a coroutine per message
            result = await self.host._before_send(channel, msg)
            if result is None:
                return []
            channel, msg = result
        return await channel.plug._put_tracked(channel, msg)

    async def _put_tracked(self, channel: Channel, msg: Message) -> list[Receipt]:
        token = next(self._tokens)
        self._in_flight[token] = channel
        try:
            receipts = await self.put(channel, msg)
        finally:
            del self._in_flight[token]
            if self._put_done is not None:
                self._put_done.set()
                self._put_done = None
        for index, receipt in enumerate(receipts):
            self._echoes.add(receipt, msg, index == 0)
        return receipts

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        """Post ``msg`` to the network; return one receipt per message the network created."""
        raise NotImplementedError

    async def edit(self, receipt: Receipt, msg: Message) -> Receipt:
        """Replace the content of a message this plug sent (where :attr:`can_edit`)."""
        raise PlugError(f"{self.name}: {self.network_name} cannot edit messages")

    async def delete(self, receipt: Receipt) -> None:
        """Delete a message (where :attr:`can_delete`)."""
        raise PlugError(f"{self.name}: {self.network_name} cannot delete messages")

    # -- channels and users ---------------------------------------------------------------------

    async def user_from_id(self, id: str) -> User | None:
        return None

    async def user_from_username(self, username: str) -> User | None:
        return None

    async def user_is_system(self, user: User) -> bool:
        return False

    async def public_channels(self) -> list[Channel] | None:
        return None

    async def private_channels(self) -> list[Channel] | None:
        return None

    async def channel_for_user(self, user: User) -> Channel | None:
        return None

    async def channel_is_private(self, channel: Channel) -> bool | None:
        return None

    async def channel_title(self, channel: Channel) -> str | None:
        return None

    async def channel_link(self, channel: Channel) -> str | None:
        return None

    async def channel_rename(self, channel: Channel, title: str) -> None:
        raise PlugError(f"{self.name}: {self.network_name} cannot rename channels")

    async def channel_members(self, channel: Channel) -> list[User] | None:
        return None

    async def channel_admins(self, channel: Channel) -> list[User] | None:
        return None
