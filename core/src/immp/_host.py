"""
The host: owns every plug, channel, group and hook, opens and closes them, and owns the message
pipeline between them (:mod:`immp._pipeline`, where the path of one message is written out).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

from ._channel import Channel, Group
from ._errors import ConfigError, describe_error
from ._hook import Hook, ResourceHook
from ._journal import DEFAULT_AGE, Journal
from ._logs import counted
from ._message import Message, Receipt, SentMessage
from ._openable import Openable, OpenState
from ._pipeline import INBOX_SIZE, Pipeline
from ._plug import Plug
from ._store import MemoryStore, Store
from ._worker import CHECK_EVERY, Queue

log = logging.getLogger(__name__)

__all__ = ["HOOK_STUCK_AFTER", "INBOX_SIZE", "Host"]

# When an unprioritised hook's inbox is full, the pump waits for room (backpressure) for as long
# as the hook keeps taking messages: a slow hook slows the stream down and loses nothing. Only a
# hook that takes no message at all for ``Host.hook_stuck_after`` seconds (default below) while
# its inbox is full is taken to be stuck: messages for it are then dropped, counted and logged
# until it has emptied its inbox, so that one hung hook cannot stall every other hook and plug
# (see immp.Worker, which the sync hook's targets use too).
HOOK_STUCK_AFTER = 5.0

T = TypeVar("T", bound=Hook)


class _ResourceView(dict):
    """``host.resources``: by name, or by class (``host.resources[MyResource]``)."""

    def __getitem__(self, key):
        if isinstance(key, type):
            for item in self.values():
                if isinstance(item, key):
                    return item
            raise KeyError(key)
        return super().__getitem__(key)


class Host:
    """
    Holds plugs, channels, groups and hooks in one namespace of unique names, opens them, and
    runs the message stream. ``await host.run()`` runs until :meth:`quit` or cancellation.
    """

    def __init__(
        self,
        *,
        echo_history: int = 10_000,
        open_timeout: float = 30.0,
        close_timeout: float = 10.0,
        hook_stuck_after: float = HOOK_STUCK_AFTER,
        store: Store | None = None,
        journal: bool = False,
        journal_age: float = DEFAULT_AGE,
        journal_in_doubt: str = "drop",
    ):
        self.echo_history = echo_history
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.hook_stuck_after = hook_stuck_after
        #: What plugs and hooks keep across restarts (``self.state``, the message map): opened
        #: when :meth:`run` starts, before everything else, and closed after everything else.
        self.store: Store = store if store is not None else MemoryStore()
        self.plugs: dict[str, Plug] = {}
        self.channels: dict[str, Channel] = {}
        self.groups: dict[str, Group] = {}
        self.hooks: dict[str, Hook] = {}
        self.resources = _ResourceView()
        #: Extra top-level config keys, kept so that ``-w`` writes them back.
        self.extra_config: dict[str, Any] = {}
        #: The runner's own top-level sections (``path``, ``host``, ``logging``) as written.
        self.settings: dict[str, Any] = {}
        self._nursery: trio.Nursery | None = None
        self._quit = trio.Event()
        self._stops: dict[str, trio.Event] = {}
        self._closed: dict[str, trio.Event] = {}
        # The nursery of each open plug's and hook's lifetime, by name.
        self._nurseries: dict[str, trio.Nursery] = {}
        #: Where every received message and its deliveries are tracked until delivered, across
        #: restarts (see :class:`immp.Journal`); off unless ``journal``.
        self.journal = Journal(self, enabled=journal, age=journal_age, in_doubt=journal_in_doubt)
        self._pipeline = Pipeline(self, self.journal)
        # The hot calls go straight to the pipeline (the methods below document them): one
        # frame less per message on each path.
        self.send = self._pipeline.send
        self.offer = self._pipeline.offer
        self.queue = self._pipeline.queue
        self.taken = self._pipeline.taken
        self._config_listeners: list[Callable[[object], None]] = []
        #: Why the live config's last change is not in the config file, set by the runner under
        #: ``immp -w`` (the write failed, or was held back over an edit): ``None`` once written,
        #: and always without ``-w``. A command that changed the config says it in its answer.
        self.config_unsaved: str | None = None
        self._reloader: Callable[[], Awaitable[str]] | None = None
        # The plugs each hook added in its on_load (the sync hook's virtual plug), by hook name:
        # they go when the hook is removed.
        self._made_by: dict[str, list[str]] = {}
        self._loaded = False
        self.ready = trio.Event()
        # Set once run() has tried to open every hook: until then plugs' pumps hold received
        # messages in their bounded inboxes, so that no hook misses what arrives at startup.
        self._hooks_opened = trio.Event()
        # Set while hooks are swapped (see holding_messages): the pumps wait on it.
        self._held: trio.Event | None = None
        self._holding = 0
        #: Plugs under :meth:`restart` or opened by a reload, by name: set once that ended (open,
        #: or failed). See :meth:`restarted`.
        self.restarting: dict[str, trio.Event] = {}

    # -- the namespace --------------------------------------------------------------------------

    def section_of(self, name: str) -> str | None:
        """
        Which section holds ``name``: ``plugs``, ``channels``, ``groups`` or ``hooks`` (names
        are unique across all four), or ``None``.
        """
        for section in ("plugs", "channels", "groups", "hooks"):
            if name in getattr(self, section):
                return section
        return None

    def _claim(self, name: str, section: str) -> None:
        taken = self.section_of(name)
        if taken:
            raise ConfigError(f"name {name!r} is used by both {taken}.{name} and {section}.{name}")

    def add_plug(self, plug: Plug, *, enabled: bool = True) -> Plug:
        """Add a plug; while running, an enabled plug is opened straight away."""
        self._claim(plug.name, "plugs")
        self.plugs[plug.name] = plug
        plug.open_state = OpenState.inactive if enabled else OpenState.disabled
        if self._nursery is not None and enabled:
            self._nursery.start_soon(self.start, plug.name)
        return plug

    def add_channel(self, name: str, channel: Channel) -> Channel:
        """
        Name a channel. While its plug is open, the plug's :meth:`~immp.Plug.on_channel_added`
        then runs in the plug's nursery (an IRC plug joins it), unless another name already
        stood for the same channel.
        """
        self._claim(name, "channels")
        if channel.plug.name not in self.plugs:
            raise ConfigError(f"no plug named {channel.plug.name!r}", f"channels.{name}.plug")
        known = channel in self.channels.values()
        self.channels[name] = channel
        if not known:
            self._tell_plug(channel, "on_channel_added")
        return channel

    def add_group(self, group: Group) -> Group:
        self._claim(group.name, "groups")
        self.groups[group.name] = group
        return group

    def add_hook(self, hook: Hook, *, enabled: bool = True) -> Hook:
        """Add a hook; while running, an enabled hook is loaded and opened straight away."""
        self._claim(hook.name, "hooks")
        self.hooks[hook.name] = hook
        if isinstance(hook, ResourceHook):
            self.resources[hook.name] = hook
        hook.open_state = OpenState.inactive if enabled else OpenState.disabled
        if self._loaded:
            self._load(hook)
        if self._nursery is not None and enabled:
            self._nursery.start_soon(self.start, hook.name)
        return hook

    def _load(self, hook: Hook) -> None:
        before = set(self.plugs)
        hook.on_load()
        self._made_by[hook.name] = [name for name in self.plugs if name not in before]

    async def remove(self, name: str) -> None:
        """
        Remove a plug, channel, group or hook by name; a running plug or hook is closed. A hook
        takes with it the plugs it added in its ``on_load`` (the sync hook's virtual plug).
        """
        if name in self.channels:
            channel = self.channels.pop(name)
            if channel not in self.channels.values():
                self._tell_plug(channel, "on_channel_removed")
        elif name in self.groups:
            del self.groups[name]
        elif name in self.plugs or name in self.hooks:
            await self.stop(name)
            item = self.plugs.pop(name, None) or self.hooks.pop(name)
            self.resources.pop(name, None)
            self._pipeline.hooks_changed()
            if isinstance(item, Plug):
                self._pipeline.forget(item)
                for cname in [n for n, c in self.channels.items() if c.plug is item]:
                    del self.channels[cname]
            else:
                for made in self._made_by.pop(name, ()):
                    if made in self.plugs:
                        await self.remove(made)
        else:
            raise KeyError(name)

    def _tell_plug(self, channel: Channel, method: str) -> None:
        """Run a plug's on_channel_added/removed in its own lifetime, if it is open."""
        plug = channel.plug
        nursery = self._nurseries.get(plug.name)
        if plug.open_state is OpenState.active and nursery is not None:
            nursery.start_soon(self._call_plug, plug, method, channel)

    async def _call_plug(self, plug: Plug, method: str, *args: Any) -> None:
        try:
            await getattr(plug, method)(*args)
        except Exception as exc:
            log.error("Plug %s: %s failed: %s", plug.name, method, describe_error(exc))
            log.debug("Traceback of plug %s", plug.name, exc_info=exc)

    def item(self, name: str) -> Plug | Hook:
        """A plug or hook by name."""
        item = self.plugs.get(name) or self.hooks.get(name)
        if item is None:
            raise KeyError(name)
        return item

    def hook(self, cls: type[T]) -> T | None:
        """The first hook that is an instance of ``cls``, if any."""
        return next((h for h in self.hooks.values() if isinstance(h, cls)), None)

    def named_channel(self, channel: Channel) -> str | None:
        """The config name of a channel, if it has one."""
        return next((n for n, c in self.channels.items() if c == channel), None)

    # -- config changes -------------------------------------------------------------------------

    def on_config_change(self, listener: Callable[[object], None]) -> None:
        """Register a callback run (synchronously) whenever :meth:`config_changed` is called."""
        self._config_listeners.append(listener)

    def config_changed(self, source: object) -> None:
        """
        Say that the live config changed (a hook edited its ``config``, a channel was added...).
        Listeners run at once (the runner's ``-w`` writes the file), then every open hook's
        ``on_config_change`` in the background.
        """
        for listener in self._config_listeners:
            listener(source)
        for hook in self._active_hooks():
            # In the hook's own nursery: the call ends if the hook closes meanwhile.
            self._nurseries[hook.name].start_soon(
                self._pipeline.call_hook, hook, "on_config_change", source
            )

    def set_reloader(self, reloader: Callable[[], Awaitable[str]] | None) -> None:
        """
        Say how :meth:`reload` reads the config again (the runner sets it to read its file);
        ``None`` for no way.
        """
        self._reloader = reloader

    async def reload(self) -> str:
        """
        Read the config again and apply what changed (what ``SIGHUP`` does to ``immp``): added
        plugs, channels, groups and hooks start, removed ones stop, changed ones restart, the
        rest keeps running. Returns one line saying what changed. Raises
        :class:`~immp.ConfigError` (one line, naming the file and key) if the config cannot be
        used; nothing is changed then. Raises ``RuntimeError`` if nothing set a reloader (a
        host built in code, not by the runner from a file).
        """
        if self._reloader is None:
            raise RuntimeError("this host has no config file to reload")
        return await self._reloader()

    # -- the pipeline (see immp._pipeline) ------------------------------------------------------

    async def send(self, channel: Channel, msg: Message) -> list[Receipt]:
        """
        Send a message to a channel: the ``before_send`` hooks run by priority (each may change
        the target or the message, or drop it), then the target plug's :meth:`~immp.Plug.put`;
        the receipts it returns are remembered, so that the network's echoes of them reach the
        hooks with this message as ``source``. Returns the receipts; an empty list if a hook
        dropped it. What :meth:`Channel.send <immp.Channel.send>` calls.

        Raises what ``put`` raises (usually :class:`~immp.PlugError`). Cancellation while
        ``put`` runs cancels the put; whether the network got the message is then unknown.
        """
        return await self._pipeline.send(channel, msg)

    async def process(self, plug: Plug, sent: SentMessage) -> None:
        """
        Run one message received on ``plug`` through the hooks now, as its pump does for what
        the plug queues: echo matching, ``before_receive``, ``on_receive``. Returns when the
        prioritised hooks are done and the rest have it queued.
        """
        await self._pipeline.process(plug, sent)

    def offer(self, plug: Plug, sent: SentMessage) -> bool:
        """What :meth:`Plug.offer <immp.Plug.offer>` calls; see there."""
        return self._pipeline.offer(plug, sent)

    async def queue(self, plug: Plug, sent: SentMessage) -> None:
        """What :meth:`Plug.queue <immp.Plug.queue>` calls; see there."""
        await self._pipeline.queue(plug, sent)

    async def taken(self, plug: Plug) -> None:
        """What :meth:`Plug.taken <immp.Plug.taken>` calls; see there."""
        await self._pipeline.taken(plug)

    def echo_of(self, channel: Channel, id: str) -> tuple[Message, bool] | None:
        """
        If the message ``id`` in ``channel`` is the network's echo of something sent through
        this host (and still in the bounded echo history): ``(the message sent, whether this
        is its first part)``; else ``None``.
        """
        return self._pipeline.echo_of(channel.plug, channel, id)

    def state_changed(self, item: Openable) -> None:
        """
        Called by :class:`~immp.Openable` whenever the :attr:`~immp.Openable.open_state` of a
        plug or hook changes, and by :meth:`Plug.connection_changed
        <immp.Plug.connection_changed>`: which hooks run where, and whether a plug counts as
        connected, may have changed.
        """
        if isinstance(item, Plug):
            self._pipeline.connection_changed(item, item.disconnect_reason)
        else:
            self._pipeline.hooks_changed()

    def nursery_of(self, item: Openable) -> trio.Nursery | None:
        """The nursery of an open plug's or hook's lifetime (see :attr:`immp.Openable.nursery`)."""
        return self._nurseries.get(item.name)

    # -- observers and stats --------------------------------------------------------------------

    def add_observer(self, obj: object) -> None:
        """
        Tell ``obj`` what happens on the message stream, by calling whichever of these methods
        it has (plain methods, not coroutines; they must be cheap and not raise: one that
        raises is logged once and the observer is removed):

        - ``message_received(plug, sent)``: a plug's received message reaches the hooks;
        - ``message_sent(channel, msg, receipts, latency)``: a send succeeded; ``latency`` is
          the seconds since the host took the received message that this send relays from its
          plug's inbox (``None`` when it relays nothing, e.g. a timer's message);
        - ``send_failed(channel, msg, error)``: a plug's ``put`` raised ``error``;
        - ``plug_connection_changed(plug, connected, reason)``: ``plug.connected`` changed
          (the plug opened or closed, or reported its network link down or up), or a plug
          still disconnected reported another ``reason`` (then ``connected`` is false again:
          an outage is the change to false, not each call).

        With no observers, none of this costs anything on the hot path.
        """
        self._pipeline.add_observer(obj)

    def remove_observer(self, obj: object) -> None:
        """Stop telling ``obj``; nothing happens if it is not an observer."""
        self._pipeline.remove_observer(obj)

    def stats(self) -> dict[str, Any]:
        """
        A snapshot, cheap and synchronous, of counters that only grow over the host's life::

            {"plugs": {name: {"state": "active", "connected": True, "received": 10,
                              "sent": 9, "send_failures": 0}},
             "hooks": {name: {"state": "active", "queue_depth": 0, "dropped": 0,
                              "stuck": False, "extra": hook.stats()}},
             "store": host.store.stats() or None}

        ``received`` counts messages that reached the hooks, ``sent`` successful sends (one
        per message, however many receipts), ``queue_depth`` and ``dropped`` the inbox of an
        unprioritised hook (0 for the others), ``stuck`` whether it is dropping messages now.
        """
        return self._pipeline.stats()

    # -- lifetime -------------------------------------------------------------------------------

    def _ordered(self) -> list[Openable]:
        resources = list(self.resources.values())
        hooks = [h for h in self.hooks.values() if h.name not in self.resources]
        return [*resources, *self.plugs.values(), *hooks]

    async def run(self) -> None:
        """Open everything and run the message stream until :meth:`quit` or cancellation."""
        if self._nursery is not None:
            raise RuntimeError("host is already running")
        self._hooks_opened = trio.Event()
        tuned = False
        # Raises StoreError (one line) if the store cannot be used: nothing else opens then.
        await self.store.open(self.open_timeout)
        self.store.on_final = self._store_final
        try:
            await self.journal.open()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.store.close(self.close_timeout)
            raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.journal.enabled:
                    await nursery.start(self.journal.run)
                if not self._loaded:
                    for hook in list(self.hooks.values()):
                        self._load(hook)
                    self._loaded = True
                # A quit() while things open (SIGTERM while a network is unreachable) gives up
                # what is still opening at once, not after open_timeout, and the rest of the
                # start-up: what did open is closed below, as at any quit.
                async with trio.open_nursery() as starting:

                    async def give_up_on_quit() -> None:
                        await self._quit.wait()
                        starting.cancel_scope.cancel()

                    starting.start_soon(give_up_on_quit)
                    for phase in (
                        list(self.resources.values()),
                        list(self.plugs.values()),
                        [h for h in self.hooks.values() if h.name not in self.resources],
                    ):
                        async with trio.open_nursery() as opening:
                            for item in phase:
                                if item.open_state is not OpenState.disabled:
                                    opening.start_soon(self.start, item.name)
                    starting.cancel_scope.cancel()  # every open ended: stop watching for quit()
                for item in self._ordered():
                    if item.open_state is OpenState.starting:  # its open() was cancelled
                        item.open_state = OpenState.inactive
                        kind = "plug" if isinstance(item, Plug) else "hook"
                        log.info("Gave up opening %s %s: shutting down", kind, item.name)
                if not self._quit.is_set():
                    # What the last run journaled and did not deliver goes first, in its order,
                    # before the pumps take anything new from the plugs.
                    await self.journal.replay(self._pipeline.process)
                    self._hooks_opened.set()
                    opened = [h for h in self._active_hooks()]
                    async with trio.open_nursery() as readying:
                        for hook in opened:
                            readying.start_soon(self._pipeline.call_hook, hook, "on_ready")
                    plugs = sum(p.open_state is OpenState.active for p in self.plugs.values())
                    log.info("Ready: %s, %s open", counted(plugs, "plug"),
                             counted(len(opened), "hook"))  # fmt: skip
                    _collector.host_ready()
                    tuned = True
                    nursery.start_soon(_collector.watch, self)
                    self.ready.set()
                    await self._quit.wait()
                self._pipeline.closing = True
                await self._close_all()
                nursery.cancel_scope.cancel()
        finally:
            self._pipeline.closing = False
            self.journal.close()
            with trio.CancelScope(shield=True):
                await self.store.close(self.close_timeout)
            if tuned:
                _collector.host_stopped()
            self._nursery = None
            self.ready = trio.Event()
            self._quit = trio.Event()  # a quit() before the next run() still counts

    async def _close_all(self) -> None:
        for item in reversed(self._ordered()):
            await self.stop(item.name)

    def quit(self) -> None:
        """Ask :meth:`run` to close everything (hooks, plugs, resources) and return."""
        self._quit.set()

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """
        Run ``await fn(*args)`` in a task of the running host's own rather than of the plug or
        hook that asks: it outlives that one's lifetime (a command whose reload restarts its own
        hook still answers) and ends with the host. What it raises is logged, one line. Raises
        ``RuntimeError`` if the host is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the host is not running")
        self._nursery.start_soon(self._detached, fn, args)

    async def _detached(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            log.error("Task %s failed: %s", name, describe_error(exc))
            log.debug("Traceback of task %s", name, exc_info=exc)

    @property
    def quitting(self) -> bool:
        """Whether :meth:`quit` was called and the running host has not stopped yet."""
        return self._quit.is_set()

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is under way (from its start until it returns)."""
        return self._nursery is not None

    async def start(self, name: str) -> bool:
        """Open a plug or hook (enabling it if disabled). Returns whether it is now open."""
        item = self.item(name)
        if self._nursery is None:
            item.open_state = OpenState.inactive
            return False
        # A lifetime still closing must end before a new one begins (it clears what it made).
        while (
            item.open_state is OpenState.stopping and (closed := self._closed.get(name)) is not None
        ):
            await closed.wait()
        if item.open_state in (OpenState.active, OpenState.starting):
            return item.open_state is OpenState.active
        return await self._nursery.start(self._lifetime, item)

    async def stop(self, name: str, *, disable: bool = False) -> None:
        """Close a plug or hook if open; ``disable`` marks it disabled (kept in config)."""
        item = self.item(name)
        stop, closed = self._stops.get(name), self._closed.get(name)
        if stop is not None and closed is not None:
            stop.set()
            await closed.wait()
        if disable:
            item.open_state = OpenState.disabled

    async def restart(self, name: str) -> bool:
        """
        Close a plug or hook and open it again; whether it opened. While a hook restarts,
        received messages wait for it (see :meth:`holding_messages`), so that it misses none.
        """
        with self.holding_messages() if name in self.hooks else self._restarting(name):
            await self.stop(name)
            return await self.start(name)

    async def restarted(self, plug: Plug) -> None:
        """
        Wait while ``plug`` is being restarted or opened by a reload (see :attr:`restarting`):
        for what goes to the plug itself (an edit, a deletion) rather than through
        :meth:`send`, which waits so already. Returns at once otherwise.
        """
        back = self.restarting.get(plug.name)
        if back is not None:
            await back.wait()

    @contextlib.contextmanager
    def _restarting(self, name: str) -> Iterator[None]:
        # A plug restarts: what is sent to it meanwhile waits for its new lifetime (see
        # Pipeline.send), rather than failing on the connection that closes.
        back = self.restarting[name] = trio.Event()
        try:
            yield
        finally:
            if self.restarting.get(name) is back:
                del self.restarting[name]
            back.set()

    def _store_final(self, error: Exception) -> None:
        # The store may not be used by this process any more (another took its namespace):
        # stop, rather than bridge beside the process that now does.
        log.error("%s", error)
        self.quit()

    @contextlib.contextmanager
    def holding_messages(self) -> Iterator[None]:
        """
        While in this block, the plugs' pumps take nothing more from their inboxes: what the
        networks send meanwhile waits there, in order (each inbox is bounded, and a network
        reader waits once it is full), and goes to the hooks open after the block. A reload and
        a hook's restart hold messages while hooks close and open again: a message that arrived
        between the two reached neither the old hook nor the new one.
        """
        self._holding += 1
        if self._held is None:
            self._held = trio.Event()
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self._held.set()
                self._held = None

    async def _ready_later(self, hook: Hook) -> None:
        # A hook opened while the host runs (a reload, a restart): on_ready once everything that
        # could be opened is open, so after the plugs still opening (a reload opens its hooks
        # beside them).
        while self.restarting:
            await next(iter(self.restarting.values())).wait()
        await self._pipeline.call_hook(hook, "on_ready")

    async def _lifetime(self, item: Openable, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """One plug's or hook's whole life: open, run its tasks, close. Failures stay inside."""
        kind = "plug" if isinstance(item, Plug) else "hook"
        stop = self._stops[item.name] = trio.Event()
        closed = self._closed[item.name] = trio.Event()
        started = False
        item.open_state = OpenState.starting
        try:
            async with trio.open_nursery() as nursery:
                self._nurseries[item.name] = nursery
                if isinstance(item, Plug):
                    item.connection_changed(True)  # a new lifetime starts connected
                    nursery.start_soon(self._pump, item, self._pipeline.open_inbox(item))
                elif (worker := self._pipeline.open_worker(item)) is not None:
                    nursery.start_soon(worker.run)
                with trio.fail_after(self.open_timeout):
                    await item.open()
                item.open_state = OpenState.active
                log.info("Opened %s %s", kind, item.name)
                started = True
                task_status.started(True)
                if isinstance(item, Hook) and self.ready.is_set():
                    nursery.start_soon(self._ready_later, item)
                await stop.wait()
                item.open_state = OpenState.stopping  # the pump stops feeding a stopping hook
                await self._drain(item)
                with trio.move_on_after(self.close_timeout) as scope:
                    scope.shield = True
                    await item.close()
                if scope.cancelled_caught:
                    log.warning("Closing %s %s timed out", kind, item.name)
                nursery.cancel_scope.cancel()
            item.open_state = OpenState.inactive
            log.info("Closed %s %s", kind, item.name)
        except Exception as exc:
            item.open_state = OpenState.failed
            what = "open" if not started else "run"
            leaf = _leaf(exc)
            if isinstance(leaf, trio.TooSlowError) and not started:
                log.error(
                    "Failed to open %s %s: timed out after %ss", kind, item.name, self.open_timeout
                )
            else:
                log.error("Failed to %s %s %s: %s", what, kind, item.name, describe_error(leaf))
                log.debug("Traceback of %s %s", kind, item.name, exc_info=exc)
        finally:
            self._nurseries.pop(item.name, None)
            if isinstance(item, Plug):
                self._pipeline.close_inbox(item)
            else:
                self._pipeline.close_worker(item)
            self._stops.pop(item.name, None)
            closed.set()
            self._closed.pop(item.name, None)
            if not started:
                task_status.started(False)

    async def _drain(self, item: Openable) -> None:
        """
        Before a hook closes, let it handle what is queued for it (within ``close_timeout``);
        before a plug closes, say how many received messages it leaves unprocessed (its hooks
        are closed by then when the host quits, and the network would not resend them).
        """
        worker = self._pipeline.worker(item) if isinstance(item, Hook) else None
        if worker is not None:
            worker.close()
            with trio.move_on_after(self.close_timeout) as scope:
                scope.shield = True
                await worker.done.wait()
            if scope.cancelled_caught:
                log.warning("Hook %s: %d queued messages were not handled before it closed",
                            item.name, len(worker))  # fmt: skip
        elif isinstance(item, Plug):
            left = self._pipeline.waiting(item)
            if left:
                log.warning("Plug %s closed with %d received messages not processed",
                            item.name, left)  # fmt: skip

    # -- the receive path -----------------------------------------------------------------------

    def _active_hooks(self) -> list[Hook]:
        return [h for h in self.hooks.values() if h.open_state is OpenState.active]

    async def _pump(self, plug: Plug, inbox: Queue) -> None:
        await self._hooks_opened.wait()
        process = self._pipeline.process
        items, pop = inbox.items, inbox.pop
        checkpoint = trio.lowlevel.checkpoint_if_cancelled
        try:
            while True:
                # inbox.take() inline, with its cancellation check once per CHECK_EVERY items
                # taken without waiting (see immp._worker): what is queued needs no await.
                await checkpoint()
                for _ in range(CHECK_EVERY):
                    if items:
                        sent = pop()
                    else:
                        try:
                            sent = await inbox.get()
                        except trio.EndOfChannel:
                            return
                    while self._held is not None:  # hooks being swapped: holding_messages
                        await self._held.wait()
                    await process(plug, sent)
        finally:
            inbox.close()  # what a plug queues from now on is refused


class _Collector:
    """
    How Python's garbage collector is set while hosts run in this process (the first ready host
    sets it, the last one to stop puts it back). A bridge is a long-running process that
    allocates a few dozen objects per message and keeps many of them for a while in bounded
    histories; with Python's defaults the collector took about a fifth of the time per message
    (see docs/performance.md):

    - Every object alive once a host is ready (modules, config, plugs, hooks: nearly all of
      them live as long as the process) is moved out of the collector's sight
      (:func:`gc.freeze`), so that full collections do not walk the few hundred thousand
      objects of the imported libraries, which never become garbage.
    - The youngest generation is collected every ``YOUNG_THRESHOLD`` allocations instead of
      Python's 700, which a burst of a few dozen messages in flight crosses over and over:
      each collection costs about 1 ms instead of 0.2, and most messages are gone by then.
    - While messages stream (a host received ``BUSY_MESSAGES`` or more in the last ``TICK``
      seconds), every ``BUSY_THRESHOLD`` allocations instead. Nearly nothing a bridge makes per
      message is freed by the collector (reference counting frees it: 27 objects in 40,000
      bridged messages), so each collection only walked what the histories and the store's
      write queue still held, and took a quarter of the time per message with the SQLite
      store and the journal. Garbage in reference cycles still cannot grow past the threshold,
      and once the stream slows the collector is back to ``YOUNG_THRESHOLD``, so what
      accumulated is collected at the next allocations after a quiet tick.

    Frozen objects that later become garbage in a reference cycle (a plug or hook removed while
    running) wait for the last host to stop; objects freed by reference counting, which is
    nearly all of them and every message, are freed at once as always.
    """

    YOUNG_THRESHOLD = 10_000
    BUSY_THRESHOLD = 200_000
    TICK = 0.25
    BUSY_MESSAGES = 200

    def __init__(self):
        self._running = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._busy: set[int] = set()  # id() of the running hosts that are busy

    def host_ready(self) -> None:
        self._running += 1
        if self._running > 1:
            return
        self._thresholds = gc.get_threshold()
        self._busy = set()
        self._set_young()
        # No collection first (it takes a pytest process tens of milliseconds): the little
        # garbage of start-up is frozen with the rest, and freed after the last host stops.
        gc.freeze()

    def host_stopped(self) -> None:
        self._running -= 1
        if self._running == 0 and self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            gc.unfreeze()  # a host closed in a longer-lived process can then be collected
            self._thresholds = None

    async def watch(self, host: Host) -> None:
        """Tell busy ticks of ``host`` from quiet ones, while it runs (a task of its own)."""
        received = host._pipeline.received_total()
        try:
            while True:
                await trio.sleep(self.TICK)
                now = host._pipeline.received_total()
                self.busy(id(host), now - received >= self.BUSY_MESSAGES)
                received = now
        finally:
            self.busy(id(host), False)

    def busy(self, host: int, busy: bool) -> None:
        if busy == (host in self._busy):
            return
        if busy:
            self._busy.add(host)
        else:
            self._busy.discard(host)
        self._set_young()

    def _set_young(self) -> None:
        if self._thresholds is None:
            return
        young, *older = self._thresholds
        limit = self.BUSY_THRESHOLD if self._busy else self.YOUNG_THRESHOLD
        gc.set_threshold(max(young, limit), *older)


_collector = _Collector()


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
