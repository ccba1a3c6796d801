"""Hooks: workers that see every message and may act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._openable import Openable

if TYPE_CHECKING:
    from ._channel import Channel
    from ._host import Host
    from ._message import Message, SentMessage


#: Seconds before a hanging hook call is cut off, unless the config's ``timeout`` says otherwise.
DEFAULT_TIMEOUT = 30.0


class Hook(Openable):
    """
    A worker on the message stream. Override what you need:

    - :meth:`before_receive` runs hook by hook in ascending ``priority`` before anyone sees a
      message; return the message (or a replacement) to let it through, ``None`` to drop it.
    - :meth:`on_receive` sees every message that got through. Hooks sharing a priority run
      concurrently, levels in order; unprioritised hooks run after, concurrently with each other,
      each receiving messages in order.
    - :meth:`before_send` runs by priority on every message any plug is about to send; return
      ``(channel, msg)`` (possibly changed) or ``None`` to drop it.

    ``source`` is the message a hook sent that this received message is the network's echo of
    (otherwise ``source is sent``, so ``sent is not source`` means an echo). A message that a
    plug split into several network messages (IRC lines) is still one message: its first
    part's echo arrives with the whole message's content and ``primary`` true; the echoes of
    the other parts follow with ``primary`` false, for hooks that track network IDs (content
    hooks skip them, e.g. in :meth:`wants`).

    :meth:`stats` may add a hook's own figures to :meth:`Host.stats <immp.Host.stats>`.
    """

    #: Whether this hook records where the messages it is handed go through the journal
    #: (``host.journal.route``, as the sync hook does): the journal keeps an entry until every
    #: such hook was done with it (its ``on_receive`` returned) and its deliveries are done,
    #: and only such hooks are handed the entries of the last run again at start. Others
    #: (commands, logging) see each message once, as it arrives, never again after a restart.
    journaled: bool = False

    def __init__(self, name: str, config, host: Host, priority: int | None = None):
        super().__init__(name, config, host)
        self.priority = priority
        #: Seconds before a hanging before_receive/on_receive/before_send call is cut off.
        self.timeout: float = DEFAULT_TIMEOUT

    def on_load(self) -> None:
        """Called once all plugs, channels, groups and hooks exist, before anything opens."""

    async def on_ready(self) -> None:
        """Called once everything that could be opened is open."""

    async def before_receive(
        self, sent: SentMessage, source: Message, primary: bool
    ) -> SentMessage | None:
        return sent

    async def on_receive(self, sent: SentMessage, source: Message, primary: bool) -> None:
        pass

    def wants(self, sent: SentMessage, source: Message, primary: bool) -> bool:
        """
        Whether :meth:`on_receive` should see this message at all. The host calls it, without
        awaiting, before it calls or queues :meth:`on_receive`, so a hook can skip what it would
        throw away at once (e.g. the echoes of its own copies) without the trip through its
        inbox; :meth:`on_receive` is never called for what this refuses. Keep it cheap and free
        of side effects. Default: everything.
        """
        return True

    async def before_send(self, channel: Channel, msg: Message) -> tuple[Channel, Message] | None:
        return channel, msg

    async def on_config_change(self, source: object) -> None:
        """Called when the config of a plug, hook, group or channel list changed at runtime."""

    def stats(self) -> dict:
        """
        This hook's own figures for :meth:`Host.stats <immp.Host.stats>` (under
        ``["hooks"][name]["extra"]``): a small dict of JSON-friendly values, computed cheaply
        and synchronously (it may be called every few seconds). Default: empty.
        """
        return {}


class ResourceHook(Hook):
    """
    A hook that provides a service to others (a database, an HTTP server). Resources open
    before plugs and close after them, and can be looked up by class with
    ``host.resources[SomeResource]``.
    """
