"""Plugs: one connection to one chat network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import PlugError
from ._openable import Openable, OpenState

if TYPE_CHECKING:
    from ._channel import Channel
    from ._host import Host
    from ._message import Message, Receipt, SentMessage, User


class Plug(Openable):
    """
    A connection to a chat network. Subclasses implement :meth:`open`/:meth:`close`,
    :meth:`put`, and as much of the channel and user API as the network allows.

    A plug is the network interface only. Received messages go to the host with
    ``await self.queue(sent)``; the host runs the hooks. Hooks send with
    ``await channel.send(msg)``: the host runs the ``before_send`` hooks, then calls
    :meth:`put`, and recognises the network's echoes of what it sent. A plug that reconnects
    by itself reports it with :meth:`connection_changed`.
    """

    network_name: ClassVar[str] = "Unknown"
    #: Whether :meth:`edit` and :meth:`delete` work on this network.
    can_edit: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    #: A plug provided by a hook rather than configured (e.g. the sync hook's bridge plug); the
    #: runner's ``-w`` never writes it to the config file.
    virtual: bool = False
    #: Whether the plug itself tells the journal when a delivery was confirmed
    #: (:meth:`Journal.writing <immp.Journal.writing>` before it writes, :meth:`Journal.delivered
    #: <immp.Journal.delivered>` once the network acknowledged it), as IRC does; otherwise a
    #: delivery counts as confirmed when :meth:`put` returns.
    confirms_delivery: ClassVar[bool] = False
    #: Whether a message read again from the network (after a crash, from a cursor that was not
    #: saved) has the same ID and revision as the first time, and an ID is never given to
    #: another message, in this run or a later one (Matrix event IDs): the journal then knows a
    #: message read again after a crash and does not take it twice (docs/journal.md, "Read
    #: twice"). Leave it false for IDs numbered afresh each run.
    stable_ids: ClassVar[bool] = False
    #: Whether the plug resumes from a cursor it saves after :meth:`taken` (Matrix's sync
    #: token, the demo's ``input`` offset), so that its network may send a message again after
    #: a crash: with the journal on, a copy of such a message goes out only once its entry is
    #: committed (docs/journal.md). A plug that never reads a message twice (IRC) leaves it
    #: false, the default, and its copies do not wait for the store. Set it in ``__init__``
    #: where it depends on the config. Such a plug saves its cursor as soon as ``taken()``
    #: returns (see docs/journal.md, "Read twice").
    has_cursor: bool = False
    #: A schema for the ``source`` of this plug's channels in the config (always a string), e.g.
    #: an :class:`~immp.Warn` for a source that is legal but most likely a mistake.
    source_schema: ClassVar[Any] = None

    def __init__(self, name: str, config, host: Host, virtual: bool | None = None):
        if virtual is not None:  # IMMP's way of saying it; here usually a class attribute
            self.virtual = virtual
        self._link_up = True
        self._link_reason: str | None = None
        self._network_id: str | None = None
        super().__init__(name, config, host)

    @property
    def network_id(self) -> str:
        """
        Identifies the network instance (e.g. ``irc:irc.libera.chat``). Override the property,
        or assign it (as IMMP plugs do in ``__init__``); default ``<network_name>:<name>``.
        """
        if self._network_id is not None:
            return self._network_id
        return f"{self.network_name.lower()}:{self.name}"

    @network_id.setter
    def network_id(self, value: str) -> None:
        self._network_id = str(value)

    # -- connection status ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """
        Whether the plug is open and its network reachable: true while :attr:`open_state` is active,
        unless the plug said otherwise with :meth:`connection_changed`. Read-only.
        """
        return self._link_up and self.open_state is OpenState.active

    @property
    def disconnect_reason(self) -> str | None:
        """The reason given with the last :meth:`connection_changed`, if any."""
        return self._link_reason

    def queued(self) -> int | None:
        """
        What the plug holds that its network has not taken yet (its own send queue: the IRC
        plug's lines waiting or written and not yet acknowledged), for monitoring; ``None``
        (the default) where it keeps no queue of its own or cannot tell. Cheap and synchronous.
        """
        return None

    def connection_changed(self, connected: bool, reason: str | None = None) -> None:
        """
        Say that the network link went down (``False``) or came back (``True``) while the plug
        stays open (an IRC plug reconnecting, a homeserver unreachable); ``reason`` is one
        short line for logs and notices. The host tells its observers (see
        :meth:`Host.add_observer <immp.Host.add_observer>`). Each new lifetime of the plug
        starts connected.
        """
        self._link_up = connected
        self._link_reason = reason
        if self.host is not None:
            self.host.state_changed(self)

    # -- receiving ------------------------------------------------------------------------------

    def offer(self, sent: SentMessage) -> bool:
        """
        Hand a received message to the host if its receive buffer for this plug has room, at
        once and without waiting; ``False`` if it is full (then :meth:`queue` would wait).
        Raises :class:`~immp.PlugError` while the plug is not open.
        """
        return self.host.offer(self, sent)

    async def queue(self, sent: SentMessage) -> None:
        """
        Hand a received message to the host. Waits when the host's receive buffer for this plug
        is full (backpressure: stop reading from the network), never drops. Raises
        :class:`~immp.PlugError` while the plug is not open or once it is closing.
        """
        await self.host.queue(self, sent)

    async def taken(self) -> None:
        """
        Wait until every message this plug queued so far was taken in by the host: journaled
        when the journal is on (its entry queued in the store, so that anything the plug writes
        to the store after this returns, such as the position it read its network up to, lands
        in the same commit or a later one). A plug saves such a cursor only after this, so that
        it never moves past a message the journal does not hold. Cancelling it is harmless.
        """
        await self.host.taken(self)

    # -- sending --------------------------------------------------------------------------------

    async def put(self, channel: Channel, msg: Message) -> list[Receipt]:
        """
        Post ``msg`` to the network; return one receipt per message the network created, the
        first part first (a plug that splits a message into several, e.g. IRC lines, returns
        each; hooks still see it as one message). The host calls this (see
        :meth:`Host.send <immp.Host.send>`); hooks send with ``channel.send(msg)``, which runs
        the ``before_send`` hooks first and records the echoes.
        """
        raise NotImplementedError

    async def edit(self, receipt: Receipt, msg: Message) -> Receipt:
        """Replace the content of a message this plug sent (where :attr:`can_edit`)."""
        raise PlugError(f"{self.name}: {self.network_name} cannot edit messages")

    async def delete(self, receipt: Receipt) -> None:
        """Delete a message (where :attr:`can_delete`)."""
        raise PlugError(f"{self.name}: {self.network_name} cannot delete messages")

    # -- channels and users ---------------------------------------------------------------------

    async def on_channel_added(self, channel: Channel) -> None:
        """
        Called by the host, in this plug's nursery, when a named channel of this open plug is
        added while running (a command, a config reload, the API): e.g. join it. Not called for
        the channels configured at start (open() sees those in ``host.channels``). Cancelled if
        the plug closes meanwhile; an exception is logged. Default: nothing.
        """

    async def on_channel_removed(self, channel: Channel) -> None:
        """
        Called by the host, in this plug's nursery, when a named channel of this open plug is
        removed while running (and no other name stands for it): e.g. leave it. Cancelled if
        the plug closes meanwhile; an exception is logged. Default: nothing.
        """

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
