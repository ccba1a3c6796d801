"""
The host: owns every plug, channel, group and hook, and moves messages between them.

The path of one received message::

    plug reads the network -> plug.queue(sent)            (bounded inbox per plug)
      -> Host._pump (one task per open plug, in order)
         -> echo matching (was this our own send?)
         -> before_receive, hook by hook by priority       (each call time-limited)
         -> on_receive of prioritised hooks, level by level
         -> each unprioritised hook's Worker (a bounded inbox and one task, in order)
    hook: channel.send(msg) -> plug.send -> before_send hooks -> plug.put -> network
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio

from ._channel import Channel, Group
from ._errors import ConfigError
from ._hook import Hook, ResourceHook
from ._message import Message, SentMessage
from ._openable import Openable, OpenState
from ._plug import Plug
from ._store import MemoryStore, Store
from ._worker import Worker, take

log = logging.getLogger(__name__)

# Messages waiting per plug between the network reader and the hooks, and per unprioritised
# hook between the pump and that hook. When a plug's inbox is full the network reader waits
# (backpressure); nothing is dropped.
INBOX_SIZE = 256
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
        # The worker (inbox and task) of each open unprioritised hook with an on_receive.
        self._hook_workers: dict[str, Worker] = {}
        self._config_listeners: list[Callable[[object], None]] = []
        self._loaded = False
        self.ready = trio.Event()
        # Set once run() has tried to open every hook: until then plugs' pumps hold received
        # messages in their bounded inboxes, so that no hook misses what arrives at startup.
        self._hooks_opened = trio.Event()
        # Which hooks run at each step of the receive and send paths, worked out once and
        # forgotten whenever a hook is added, removed or changes state (see _hooks_changed).
        self._plan: _Plan | None = None

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
        self._claim(name, "channels")
        if channel.plug.name not in self.plugs:
            raise ConfigError(f"no plug named {channel.plug.name!r}", f"channels.{name}.plug")
        self.channels[name] = channel
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
        self._hooks_changed()
        if self._loaded:
            hook.on_load()
        if self._nursery is not None and enabled:
            self._nursery.start_soon(self.start, hook.name)
        return hook

    async def remove(self, name: str) -> None:
        """Remove a plug, channel, group or hook by name; a running plug or hook is closed."""
        if name in self.channels:
            del self.channels[name]
        elif name in self.groups:
            del self.groups[name]
        elif name in self.plugs or name in self.hooks:
            await self.stop(name)
            item = self.plugs.pop(name, None) or self.hooks.pop(name)
            self.resources.pop(name, None)
            self._hooks_changed()
            if isinstance(item, Plug):
                for cname in [n for n, c in self.channels.items() if c.plug is item]:
                    del self.channels[cname]
        else:
            raise KeyError(name)

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
            hook._nursery.start_soon(self._call_hook, hook, "on_config_change", source)

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
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if not self._loaded:
                    for hook in list(self.hooks.values()):
                        hook.on_load()
                    self._loaded = True
                for phase in (
                    list(self.resources.values()),
                    list(self.plugs.values()),
                    [h for h in self.hooks.values() if h.name not in self.resources],
                ):
                    async with trio.open_nursery() as opening:
                        for item in phase:
                            if item.open_state is not OpenState.disabled:
                                opening.start_soon(self.start, item.name)
                self._hooks_opened.set()
                opened = [h for h in self._active_hooks()]
                async with trio.open_nursery() as readying:
                    for hook in opened:
                        readying.start_soon(self._call_hook, hook, "on_ready")
                log.info(
                    "Ready: %d plugs, %d hooks open",
                    sum(p.open_state is OpenState.active for p in self.plugs.values()),
                    len(opened),
                )
                _collector.host_ready()
                tuned = True
                self.ready.set()
                await self._quit.wait()
                await self._close_all()
                nursery.cancel_scope.cancel()
        finally:
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
        await self.stop(name)
        return await self.start(name)

    async def _lifetime(self, item: Openable, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """One plug's or hook's whole life: open, run its tasks, close. Failures stay inside."""
        kind = "plug" if isinstance(item, Plug) else "hook"
        stop = self._stops[item.name] = trio.Event()
        closed = self._closed[item.name] = trio.Event()
        started = False
        item.open_state = OpenState.starting
        try:
            async with trio.open_nursery() as nursery:
                item._nursery = nursery
                if isinstance(item, Plug):
                    send, receive = trio.open_memory_channel(INBOX_SIZE)
                    item._inbox = send
                    nursery.start_soon(self._pump, item, receive)
                elif item.priority is None and _overrides(item, "on_receive"):
                    worker = self._hook_worker(item)
                    self._hook_workers[item.name] = worker
                    self._hooks_changed()
                    nursery.start_soon(worker.run)
                with trio.fail_after(self.open_timeout):
                    await item.open()
                item.open_state = OpenState.active
                log.info("Opened %s %s", kind, item.name)
                started = True
                task_status.started(True)
                if isinstance(item, Hook) and self.ready.is_set():
                    nursery.start_soon(self._call_hook, item, "on_ready")
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
                log.error("Failed to %s %s %s: %s", what, kind, item.name, _describe(leaf))
                log.debug("Traceback of %s %s", kind, item.name, exc_info=exc)
        finally:
            item._nursery = None
            if isinstance(item, Plug):
                item._inbox = None
            self._hook_workers.pop(item.name, None)
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
        worker = self._hook_workers.get(item.name)
        if worker is not None:
            worker.close()
            with trio.move_on_after(self.close_timeout) as scope:
                scope.shield = True
                await worker.done.wait()
            if scope.cancelled_caught:
                log.warning("Hook %s: %d queued messages were not handled before it closed",
                            item.name, len(worker))  # fmt: skip
        elif isinstance(item, Plug) and item._inbox is not None:
            left = item._inbox.statistics().current_buffer_used
            if left:
                log.warning("Plug %s closed with %d received messages not processed",
                            item.name, left)  # fmt: skip

    # -- the receive path -----------------------------------------------------------------------

    def _active_hooks(self) -> list[Hook]:
        return [h for h in self.hooks.values() if h.open_state is OpenState.active]

    def _hooks_changed(self) -> None:
        """A hook was added, removed, or changed state: work the plan out again when needed."""
        self._plan = None

    def _current_plan(self) -> _Plan:
        return self._plan or self._make_plan()

    def _make_plan(self) -> _Plan:
        hooks = self._active_hooks()
        levels: dict[int, list[Hook]] = {}
        for hook in hooks:
            if hook.priority is not None and _overrides(hook, "on_receive"):
                levels.setdefault(hook.priority, []).append((hook, _wants(hook)))
        workers = []
        for hook in hooks:
            worker = self._hook_workers.get(hook.name)
            if worker is not None:
                workers.append((worker, _wants(hook)))
        self._plan = _Plan(
            before_receive=_by_priority(hooks, "before_receive"),
            levels=[levels[priority] for priority in sorted(levels)],
            workers=workers,
            before_send=_by_priority(hooks, "before_send"),
        )
        return self._plan

    async def _pump(self, plug: Plug, receive: trio.MemoryReceiveChannel) -> None:
        await self._hooks_opened.wait()
        async with receive:
            while True:
                try:
                    sent = await take(receive)
                except trio.EndOfChannel:
                    return
                await self.process(plug, sent)

    async def process(self, plug: Plug, sent: SentMessage) -> None:
        """Run one received message through the hooks (see the module docstring)."""
        echo = plug._echoes.get(sent.channel, sent.id)
        if echo is None and plug._in_flight:
            echo = await plug._match_echo(sent)
        source, primary = echo if echo else (sent, True)
        plan = self._current_plan()
        for hook in plan.before_receive:
            result = await self._call_hook(
                hook, "before_receive", sent, source, primary, default=sent
            )
            if not result:
                log.debug("Hook %s dropped %r", hook.name, sent)
                return
            sent = result
            if echo is None:
                source = sent
        for level in plan.levels:
            hooks = [hook for hook, wants in level if wants is None or wants(sent, source, primary)]
            if len(hooks) == 1:  # no nursery and task for a level of one
                await self._call_hook(hooks[0], "on_receive", sent, source, primary)
            elif hooks:
                async with trio.open_nursery() as nursery:
                    for hook in hooks:
                        nursery.start_soon(
                            self._call_hook, hook, "on_receive", sent, source, primary
                        )
        item = (sent, source, primary)
        for worker, wants in plan.workers:
            if (wants is None or wants(sent, source, primary)) and not worker.offer(item):
                await worker.put(item)

    def _hook_worker(self, hook: Hook) -> Worker:
        """The worker that feeds an unprioritised hook's on_receive, in order."""

        def on_error(exc: Exception) -> None:
            log.error("Hook %s: on_receive failed: %s", hook.name, _describe(exc))
            log.debug("Traceback of hook %s", hook.name, exc_info=exc)

        def on_timeout() -> None:
            log.error("Hook %s: on_receive timed out after %ss", hook.name, hook.timeout)

        return Worker(
            f"Hook {hook.name}",
            INBOX_SIZE,
            hook.on_receive,
            on_error=on_error,
            timeout=lambda: hook.timeout or None,
            on_timeout=on_timeout,
            stuck_after=self.hook_stuck_after,
            patient=True,
            log=log,
        )

    async def _call_hook(self, hook: Hook, method: str, *args: Any, default: Any = None) -> Any:
        """Call a hook method; an exception or a timeout is logged and gives ``default``."""
        try:
            with trio.fail_after(hook.timeout or math.inf):
                return await getattr(hook, method)(*args)
        except trio.TooSlowError:
            log.error("Hook %s: %s timed out after %ss", hook.name, method, hook.timeout)
        except Exception as exc:
            log.error("Hook %s: %s failed: %s", hook.name, method, _describe(exc))
            log.debug("Traceback of hook %s", hook.name, exc_info=exc)
        return default

    async def _before_send(self, channel: Channel, msg: Message):
        plan = self._current_plan()
        for hook in plan.before_send:
            result = await self._call_hook(
                hook, "before_send", channel, msg, default=(channel, msg)
            )
            if not result:
                log.debug("Hook %s dropped outgoing %r", hook.name, msg)
                return None
            channel, msg = result
        return channel, msg


class _Plan:
    """The hooks each step of the receive and send paths calls, in order."""

    __slots__ = ("before_receive", "before_send", "levels", "workers")

    def __init__(
        self,
        *,
        before_receive: list[Hook],
        levels: list[list[tuple[Hook, Callable | None]]],
        workers: list[tuple[Worker, Callable | None]],
        before_send: list[Hook],
    ):
        self.before_receive = before_receive
        self.levels = levels
        self.workers = workers
        self.before_send = before_send


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

    Frozen objects that later become garbage in a reference cycle (a plug or hook removed while
    running) wait for the last host to stop; objects freed by reference counting, which is
    nearly all of them and every message, are freed at once as always.
    """

    YOUNG_THRESHOLD = 10_000

    def __init__(self):
        self._running = 0
        self._thresholds: tuple[int, int, int] | None = None

    def host_ready(self) -> None:
        self._running += 1
        if self._running > 1:
            return
        self._thresholds = gc.get_threshold()
        young, *older = self._thresholds
        gc.set_threshold(max(young, self.YOUNG_THRESHOLD), *older)
        # No collection first (it takes a pytest process tens of milliseconds): the little
        # garbage of start-up is frozen with the rest, and freed after the last host stops.
        gc.freeze()

    def host_stopped(self) -> None:
        self._running -= 1
        if self._running == 0 and self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            gc.unfreeze()  # a host closed in a longer-lived process can then be collected
            self._thresholds = None


_collector = _Collector()


def _overrides(hook: Hook, method: str) -> bool:
    return getattr(type(hook), method) is not getattr(Hook, method)


def _wants(hook: Hook) -> Callable | None:
    """The hook's ``wants`` filter, or ``None`` where it takes everything (the default)."""
    return hook.wants if _overrides(hook, "wants") else None


def _by_priority(hooks: Iterable[Hook], method: str) -> list[Hook]:
    chosen = [h for h in hooks if _overrides(h, method)]
    return sorted(chosen, key=lambda h: (h.priority is None, h.priority or 0))


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    return f"{type(exc).__name__}: {exc}"
