"""
The message pipeline, owned by the host: everything between a plug's network reader and its
``put``. The path of one message, top to bottom::

    plug reads a line -> Plug.queue(sent) -> Pipeline.offer/queue    (the plug's bounded inbox)
    Host's pump task (one per open plug, in order) -> Pipeline.process(plug, sent)
      -> echo matching: was this the network's echo of our own put? (EchoHistory, puts in flight)
      -> before_receive, hook by hook by priority                   (each call time-limited)
      -> on_receive of prioritised hooks, level by level
      -> each unprioritised hook's Worker (a bounded inbox and one task, in order)
    a hook: Channel.send(msg) -> Host.send -> Pipeline.send(channel, msg)
      -> before_send, hook by hook by priority -> plug.put(channel, msg) -> receipts
      -> the receipts recorded as echoes to expect; counters; observers

A plug only reads and writes its network (``open``/``close``, ``put``, ``edit``, ``delete``,
queries) and hands what it reads to :meth:`~immp.Plug.queue`; it never sees this machinery.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from ._errors import PlugError, SendRefused, describe_error
from ._hook import Hook
from ._journal import Journal
from ._message import Message, Receipt, SentMessage
from ._openable import OpenState
from ._worker import Queue, Worker, current_worker, relaying

if TYPE_CHECKING:
    from ._channel import Channel
    from ._host import Host
    from ._plug import Plug

log = logging.getLogger("immp._host")

# Messages waiting per plug between the network reader and the hooks, and per unprioritised
# hook between the pump and that hook. When a plug's inbox is full the network reader waits
# (backpressure); nothing is dropped.
INBOX_SIZE = 256

# How long the receive path waits for a still-running put() on the same channel before deciding
# that an incoming message is not the echo of it. Networks echo our own messages, sometimes
# before the call that sent them returns.
ECHO_WAIT = 2.0

# The observer methods, each called with the arguments documented on Host.add_observer.
OBSERVER_METHODS = ("message_received", "message_sent", "send_failed", "plug_connection_changed")


class _Line:
    """
    What the pipeline keeps per plug: its inbox, puts in flight, counters, and the echo
    history: what the plug sent recently, so that the network's echo of it is recognised,
    ``(channel, id) -> (the message sent, whether this receipt is its first part, whether it
    had several)``. Bounded: the oldest entries are forgotten, and an echo of a forgotten
    message is treated as a new message.
    """

    __slots__ = (
        "connected",
        "echo_history",
        "echo_order",
        "echoes",
        "in_flight",
        "inbox",
        "put_done",
        "queued",
        "reason",
        "received",
        "send_failures",
        "sent",
        "taken",
        "taken_event",
    )

    def __init__(self, echo_history: int):
        # A plain dict and its keys in the order added, the oldest forgotten by send() past
        # echo_history: a BoundedCache's Python __setitem__ cost more than the rest of
        # recording an echo, on the path of every message sent.
        self.echoes: dict[tuple[Channel, str], tuple[Message, bool, bool]] = {}
        self.echo_order: deque[tuple[Channel, str]] = deque()
        self.echo_history = echo_history
        self.inbox: Queue | None = None
        self.in_flight: dict[int, Channel] = {}  # puts under way, by token
        # Set when a put() finishes; made only while match_echo waits for one.
        self.put_done: trio.Event | None = None
        self.received = 0
        self.sent = 0
        self.send_failures = 0
        self.connected = False  # what observers were last told, and the reason with it
        self.reason: str | None = None
        # Messages queued by the plug, and taken in by the pump (journaled, if on): see taken().
        self.queued = 0
        self.taken = 0
        self.taken_event: trio.Event | None = None  # made only while taken() waits


class _Plan:
    """The hooks each step of the receive and send paths calls, in order."""

    __slots__ = ("before_receive", "before_send", "levels", "workers")

    def __init__(
        self,
        *,
        before_receive: list[Hook],
        levels: list[list[tuple[Hook, Callable | None]]],
        workers: list[tuple[Worker, Callable | None, bool]],
        before_send: list[Hook],
    ):
        self.before_receive = before_receive
        self.levels = levels
        self.workers = workers
        self.before_send = before_send


class Pipeline:
    """
    The receive and send paths of one host (see the module docstring). The host makes one and
    calls it; plugs and hooks reach it through :meth:`Plug.queue <immp.Plug.queue>`,
    :meth:`Channel.send <immp.Channel.send>` and the host's public methods.
    """

    def __init__(self, host: Host, journal: Journal):
        self.host = host
        #: Where deliveries are tracked (``host.journal``; off unless configured).
        self.journal = journal
        self._lines: dict[Plug, _Line] = {}
        # The counters of plugs removed, by name: a plug replaced under the same name (a reload
        # that changed its config) goes on counting, as counters of one process only grow.
        self._counted: dict[str, tuple[int, int, int]] = {}
        self._tokens = itertools.count()
        # The worker (inbox and task) of each open unprioritised hook with an on_receive.
        self._workers: dict[str, Worker] = {}
        # Messages dropped by workers of earlier lifetimes, so that counts never go down.
        self._dropped: dict[str, int] = {}
        # Which hooks run at each step, worked out once and forgotten whenever a hook is added,
        # removed or changes state (see hooks_changed).
        self._plan: _Plan | None = None
        #: Set by the host once it is closing: its hooks take no more messages (see process).
        self.closing = False
        self._observers: list[object] = []
        # Per observer method, the bound methods to call: empty lists cost one truth test.
        self._notify: dict[str, list[Callable]] = {name: [] for name in OBSERVER_METHODS}
        self._on_received = self._notify["message_received"]
        self._on_sent = self._notify["message_sent"]
        self._on_failed = self._notify["send_failed"]

    # -- per plug -------------------------------------------------------------------------------

    def line(self, plug: Plug) -> _Line:
        line = self._lines.get(plug)
        if line is None:
            line = self._lines[plug] = _Line(self.host.echo_history)
            counted = self._counted.pop(plug.name, None)
            if counted is not None:
                line.received, line.sent, line.send_failures = counted
        return line

    def forget(self, plug: Plug) -> None:
        """A plug was removed from the host (its counters are kept for one of the same name)."""
        line = self._lines.pop(plug, None)
        if line is not None:
            self._counted[plug.name] = (line.received, line.sent, line.send_failures)

    def open_inbox(self, plug: Plug) -> Queue:
        """A new inbox for a plug's lifetime; the host's pump empties it."""
        inbox = self.line(plug).inbox = Queue(INBOX_SIZE)
        return inbox

    def received_total(self) -> int:
        """How many messages the plugs' pumps have taken in so far, all plugs together."""
        return sum(line.received for line in self._lines.values()) + sum(
            counted[0] for counted in self._counted.values()
        )

    def waiting(self, plug: Plug) -> int:
        """How many received messages wait in a plug's inbox."""
        inbox = self.line(plug).inbox
        return len(inbox) if inbox is not None else 0

    def close_inbox(self, plug: Plug) -> None:
        """A plug's lifetime ended: what it queues from now on is refused."""
        line = self.line(plug)
        line.inbox = None
        if line.taken_event is not None:  # taken() gives up: nothing more will be taken
            line.taken_event.set()
            line.taken_event = None

    def offer(self, plug: Plug, sent: SentMessage) -> bool:
        """See :meth:`immp.Plug.offer`."""
        line = self._lines.get(plug)
        inbox = line.inbox if line is not None else None
        if inbox is None:
            raise PlugError(f"{plug.name}: received a message while not open")
        if inbox.closed:
            raise PlugError(f"{plug.name}: received a message while closing")
        if not inbox.offer(sent):
            return False
        line.queued += 1
        return True

    async def queue(self, plug: Plug, sent: SentMessage) -> None:
        """See :meth:`immp.Plug.queue`."""
        # With room in the inbox, hand over without a trip through the scheduler: this is the
        # hottest call of the receive path. Order per plug is kept either way; order between
        # two plugs was never defined (they are two networks).
        line = self._lines.get(plug)
        inbox = line.inbox if line is not None else None
        if inbox is None:
            raise PlugError(f"{plug.name}: received a message while not open")
        if inbox.closed:
            raise PlugError(f"{plug.name}: received a message while closing")
        if not inbox.offer(sent):
            try:
                await inbox.put(sent)
            except trio.ClosedResourceError:
                raise PlugError(f"{plug.name}: received a message while closing") from None
        line.queued += 1

    async def taken(self, plug: Plug) -> None:
        """See :meth:`immp.Plug.taken`."""
        line = self.line(plug)
        target = line.queued
        while line.taken < target and line.inbox is not None:
            if line.taken_event is None:
                line.taken_event = trio.Event()
            await line.taken_event.wait()
        journal = self.journal
        journal.submit()  # in the store's queue before what the plug writes next
        if plug.has_cursor:
            journal.cursor_passed(plug)  # (its next batch comes after the cursor's write)

    # -- the plan -------------------------------------------------------------------------------

    def hooks_changed(self) -> None:
        """A hook was added, removed, or changed state: work the plan out again when needed."""
        self._plan = None

    def plan(self) -> _Plan:
        return self._plan or self._make_plan()

    def _make_plan(self) -> _Plan:
        hooks = [h for h in self.host.hooks.values() if h.open_state is OpenState.active]
        levels: dict[int, list] = {}
        for hook in hooks:
            if hook.priority is not None and _overrides(hook, "on_receive"):
                levels.setdefault(hook.priority, []).append((hook, _wants(hook)))
        workers = []
        for hook in hooks:
            worker = self._workers.get(hook.name)
            if worker is not None:
                workers.append((worker, _wants(hook), worker.journaled))
        self._plan = _Plan(
            before_receive=_by_priority(hooks, "before_receive"),
            levels=[levels[priority] for priority in sorted(levels)],
            workers=workers,
            before_send=_by_priority(hooks, "before_send"),
        )
        return self._plan

    # -- hooks ----------------------------------------------------------------------------------

    def open_worker(self, hook: Hook) -> Worker | None:
        """
        The worker that feeds an unprioritised hook's on_receive in order, for one lifetime of
        the hook (``None`` for a hook with a priority or without on_receive).
        """
        if hook.priority is not None or not _overrides(hook, "on_receive"):
            return None

        def on_error(exc: Exception) -> None:
            log.error("Hook %s: on_receive failed: %s", hook.name, describe_error(exc))
            log.debug("Traceback of hook %s", hook.name, exc_info=exc)

        on_dropped = finished = None
        journal = self.journal

        def on_timeout() -> None:
            log.error("Hook %s: on_receive timed out after %ss", hook.name, hook.timeout)

        if hook.journaled and journal.enabled:
            # The hook holds each journaled entry it is handed until its on_receive returned,
            # failed or was cut off by the hook's timeout (as a prioritised hook's call_hook), or
            # the item was dropped for a stuck worker. Cancelled with the host, or left in a
            # closed worker's queue, the entry stays held: kept for the next start.
            release = journal.release

            def finished(item: tuple) -> None:
                release(item[0].key)

            def on_dropped(item: tuple) -> None:
                if not worker.closed:
                    release(item[0].key)

        worker = Worker(
            f"Hook {hook.name}",
            INBOX_SIZE,
            hook.on_receive,
            on_error=on_error,
            timeout=lambda: hook.timeout or None,
            on_timeout=on_timeout,
            stuck_after=self.host.hook_stuck_after,
            patient=True,
            log=log,
            on_dropped=on_dropped,
            finished=finished,
        )
        worker.journaled = finished is not None
        self._workers[hook.name] = worker
        self.hooks_changed()
        return worker

    def worker(self, hook: Hook) -> Worker | None:
        return self._workers.get(hook.name)

    def close_worker(self, hook: Hook) -> None:
        worker = self._workers.pop(hook.name, None)
        if worker is not None:
            self._dropped[hook.name] = self._dropped.get(hook.name, 0) + worker.dropped
            self.hooks_changed()

    async def call_hook(self, hook: Hook, method: str, *args: Any, default: Any = None) -> Any:
        """Call a hook method; an exception or a timeout is logged and gives ``default``."""
        try:
            with trio.fail_after(hook.timeout or math.inf):
                return await getattr(hook, method)(*args)
        except trio.TooSlowError:
            log.error("Hook %s: %s timed out after %ss", hook.name, method, hook.timeout)
        except Exception as exc:
            log.error("Hook %s: %s failed: %s", hook.name, method, describe_error(exc))
            log.debug("Traceback of hook %s", hook.name, exc_info=exc)
        return default

    # -- the receive path -----------------------------------------------------------------------

    async def process(self, plug: Plug, sent: SentMessage, replayed: bool = False) -> None:
        """
        Run one received message through the hooks (see the module docstring). ``replayed``:
        an entry of the journal handed to the hooks again at start (already journaled).
        """
        if self._on_sent and relaying.get() is None:
            return await self._process_relaying(plug, sent, replayed)
        line = self._lines.get(plug) or self.line(plug)
        line.received += 1
        if self._on_received:
            self._observe(self._on_received, plug, sent)
        echo = line.echoes.get((sent.channel, sent.id))
        if echo is None and line.in_flight:
            echo = await self._match_echo(line, sent)
        held = None  # the journal entry, held while it is handed out (see Journal.hold)
        repeat = False
        if replayed:
            source, primary = sent, True
            held = sent.key
        elif echo is None:
            source, primary = sent, True
            if self.journal.enabled:
                if self.journal.repeats and self.journal.repeated(plug, sent):
                    repeat = True  # the last run's entry, replayed: not taken in twice
                else:
                    held = self.journal.add(sent, plug)  # before it counts as taken (taken())
        else:
            source, primary, split = echo
            if split and primary:
                # The first part of a message the plug split (IRC lines): hooks see the whole
                # message once, under the first part's ID; the other parts come as not primary.
                sent = _whole(sent, source)
        if not replayed:
            line.taken += 1
            if line.taken_event is not None:
                line.taken_event.set()
                line.taken_event = None
            if repeat:
                return
        # A journal entry is held by the pipeline while it hands it out, and by each journaled
        # hook (Hook.journaled) it goes to, so that it is done only once every such hook is done
        # with it and its deliveries are. An entry of the last run goes to journaled hooks only
        # (a command is not run twice). Cut off (the host stopping), it stays held: kept for the
        # next start.
        journal = self.journal
        if held is not None:
            holds = journal.holds  # Journal.hold and .release inline here: per message
            holds[held] = holds.get(held, 0) + 1
            if self.closing and not replayed:
                # The host is closing, and its hooks take nothing more: the entry stays held,
                # kept for the next start (with no hook to hold it, it was done at once, and the
                # plug saved its position past a message nobody bridged).
                return
        plan = self._plan or self._make_plan()
        for hook in plan.before_receive:
            result = await self.call_hook(
                hook, "before_receive", sent, source, primary, default=sent
            )
            if not result:
                log.debug("Hook %s dropped %r", hook.name, sent)
                if held is not None:
                    journal.release(held)
                return
            if result is not sent and (result.key is None or held is not None):
                result.key = sent.key  # the same journal entry
            sent = result
            if echo is None:
                source = sent
        for level in plan.levels:
            hooks = [hook for hook, wants in level
                     if (wants is None or wants(sent, source, primary))
                     and not (replayed and not hook.journaled)]  # fmt: skip
            if held is not None:
                for hook in hooks:
                    if hook.journaled:
                        journal.hold(held)
            if len(hooks) == 1:  # no nursery and task for a level of one
                await self._receive(hooks[0], sent, source, primary, held)
            elif hooks:
                async with trio.open_nursery() as nursery:
                    for hook in hooks:
                        nursery.start_soon(self._receive, hook, sent, source, primary, held)
        item = (sent, source, primary)
        for worker, wants, journaled in plan.workers:
            if (wants is None or wants(sent, source, primary)) and not (replayed and not journaled):
                if journaled and held is not None:
                    holds[held] = holds.get(held, 0) + 1
                if not worker.offer(item):
                    await worker.put(item)
        if held is not None:  # (a call less for each echo and each message not journaled)
            count = holds.get(held)
            if count is not None and count > 1:
                holds[held] = count - 1  # a hook holds it still: not done, nothing else to do
            else:
                journal.release(held)

    async def _receive(self, hook: Hook, sent: SentMessage, source: Message, primary: bool,
                       held: str | None) -> None:  # fmt: skip
        await self.call_hook(hook, "on_receive", sent, source, primary)
        if held is not None and hook.journaled:
            self.journal.release(held)  # returned, failed or cut off: done with it

    async def _process_relaying(self, plug: Plug, sent: SentMessage, replayed: bool) -> None:
        # Observers want send latencies: what is sent while hooks handle this message (in this
        # task, its children, and through workers) knows when it arrived.
        token = relaying.set(trio.current_time())
        try:
            await self.process(plug, sent, replayed)
        finally:
            relaying.reset(token)

    async def _match_echo(self, line: _Line, sent: SentMessage):
        # Only a put already under way when this message arrived can have produced it: wait for
        # those (and no later ones, or steady traffic into the channel would hold it up), for
        # ECHO_WAIT at most.
        pending = [token for token, ch in line.in_flight.items() if ch == sent.channel]
        if not pending:
            return None
        hit = None
        deadline = trio.current_time() + ECHO_WAIT
        while any(token in line.in_flight for token in pending):
            if line.put_done is None:
                line.put_done = trio.Event()
            with trio.move_on_at(deadline) as scope:
                await line.put_done.wait()
            hit = line.echoes.get((sent.channel, sent.id))
            if hit is not None or scope.cancelled_caught:
                break
        return hit

    def echo_of(self, plug: Plug, channel: Channel, id: str) -> tuple[Message, bool] | None:
        """``(the message sent, whether primary)`` if ``id`` in ``channel`` is an echo of it."""
        line = self._lines.get(plug)
        hit = line.echoes.get((channel, id)) if line is not None else None
        return hit[:2] if hit is not None else None

    # -- the send path --------------------------------------------------------------------------

    async def send(self, channel: Channel, msg: Message, *, again: bool = False) -> list[Receipt]:
        """See :meth:`immp.Host.send`. ``again``: a send cut off by a restart, sent once more
        (the before_send hooks had it already)."""
        plan = self._plan or self._make_plan()
        if plan.before_send and not again:  # else skip a coroutine per message
            result = await self.before_send(plan, channel, msg)
            if result is None:
                self.journal.delivered(msg.key)  # a hook dropped it: nothing left to deliver
                return []
            channel, msg = result
        plug = channel.plug
        line = self._lines.get(plug) or self.line(plug)
        # (open_state's own attribute: the property is a call, and this runs for every copy)
        if plug._open_state is not OpenState.active and (
            plug.name in self.host.restarting or plug.open_state in _NOT_OPEN
        ):
            await self.host.restarted(plug)  # sent on its new lifetime, not the old
            if plug.open_state in _NOT_OPEN:
                # Else the plug's put ran on a closed plug (and its echo said "received a
                # message while not open"): say what is wrong with the send itself. Counted.
                exc = PlugError(f"plug {plug.name} is {plug.open_state.value}: not sent")
                line.send_failures += 1
                if self._on_failed:
                    self._observe(self._on_failed, channel, msg, exc)
                raise exc
        key = msg.key
        if key is not None and self.journal.cursor_entries:
            # Not before its journal entry is durable (see Journal.durable): mostly committed
            # by the time a copy is sent, then a lookup and a comparison. (No entry waits where
            # no plug has a cursor.)
            journal = self.journal
            source = journal.cursor_entries.get(key.partition("/")[0])
            if source is not None and (number := source[2]) > journal.committed:
                worker = current_worker.get()
                if worker is None:
                    await journal.durable(number)
                else:
                    with worker.excused():  # not the target's own slowness (Worker.excused)
                        await journal.durable(number)
        token = next(self._tokens)
        in_flight = line.in_flight
        in_flight[token] = channel
        again = False
        try:
            receipts = await plug.put(channel, msg)
        except Exception as exc:
            if plug.name in self.host.restarting and not isinstance(exc, SendRefused):
                # Cut off by the plug's close, as it restarts: sent again on its new lifetime
                # (below), in its place in order, not counted as a failure.
                again = True
            else:
                line.send_failures += 1
                if msg.key is not None and isinstance(exc, SendRefused):
                    self.journal.give_up(msg.key)  # not kept for the next start: refused again
                if self._on_failed:
                    self._observe(self._on_failed, channel, msg, exc)
                raise
        finally:
            del in_flight[token]
            if line.put_done is not None:
                line.put_done.set()
                line.put_done = None
        if again:
            log.debug("Send to %s cut off by its restart: sending it again", plug.name)
            return await self.send(channel, msg, again=True)
        line.sent += 1
        if msg.key is not None and not plug.confirms_delivery:
            self.journal.delivered(msg.key)  # the network has it (a plug's put returned)
        if receipts:
            echoes, order = line.echoes, line.echo_order
            if len(receipts) == 1:
                receipt = receipts[0]
                key = (receipt.channel, receipt.id)
                echoes[key] = (msg, True, False)
                order.append(key)
            else:  # the parts of a message the plug split: the first is primary
                for index, receipt in enumerate(receipts):
                    key = (receipt.channel, receipt.id)
                    echoes[key] = (msg, index == 0, True)
                    order.append(key)
            while len(order) > line.echo_history:
                echoes.pop(order.popleft(), None)
        if self._on_sent:
            arrived = relaying.get()
            latency = None if arrived is None else trio.current_time() - arrived
            self._observe(self._on_sent, channel, msg, receipts, latency)
        return receipts

    async def before_send(self, plan: _Plan, channel: Channel, msg: Message):
        for hook in plan.before_send:
            result = await self.call_hook(hook, "before_send", channel, msg, default=(channel, msg))
            if not result:
                log.debug("Hook %s dropped outgoing %r", hook.name, msg)
                return None
            if result[1] is not msg and result[1].key is None:
                result[1].key = msg.key  # the same delivery
            channel, msg = result
        return channel, msg

    # -- observers and stats --------------------------------------------------------------------

    def add_observer(self, obj: object) -> None:
        if obj not in self._observers:
            self._observers.append(obj)
            self._rebind()

    def remove_observer(self, obj: object) -> None:
        if obj in self._observers:
            self._observers.remove(obj)
            self._rebind()

    def _rebind(self) -> None:
        # The lists are updated in place: the hot path holds them.
        for name, methods in self._notify.items():
            methods[:] = [
                getattr(obj, name) for obj in self._observers if callable(getattr(obj, name, None))
            ]

    def _observe(self, methods: list[Callable], *args: Any) -> None:
        for method in list(methods):
            try:
                method(*args)
            except Exception as exc:
                obj = method.__self__ if hasattr(method, "__self__") else method
                log.error(
                    "Observer %r failed in %s and was removed: %s",
                    obj,
                    method.__name__,
                    describe_error(exc),
                )
                self.remove_observer(obj)

    def connection_changed(self, plug: Plug, reason: str | None = None) -> None:
        """
        Tell observers when ``plug.connected`` changed since they were last told, and when a
        plug still disconnected gives another ``reason`` (refused, then the TLS handshake
        failing): then with ``connected`` false again.
        """
        line = self.line(plug)
        connected = plug.connected
        if connected == line.connected and (connected or not reason or reason == line.reason):
            return  # no news (a disconnection losing its reason, as the plug closes, is none)
        line.connected = connected
        line.reason = None if connected else reason
        methods = self._notify["plug_connection_changed"]
        if methods:
            self._observe(methods, plug, connected, reason)

    def stats(self) -> dict[str, Any]:
        host = self.host
        plugs = {}
        for name, plug in host.plugs.items():
            line = self._lines.get(plug)
            plugs[name] = {
                "state": plug.open_state.value,
                "connected": plug.connected,
                "received": line.received if line else 0,
                "sent": line.sent if line else 0,
                "send_failures": line.send_failures if line else 0,
                "queued": _queued(plug),
            }
        hooks = {}
        for name, hook in host.hooks.items():
            worker = self._workers.get(name)
            dropped = self._dropped.get(name, 0)
            try:
                extra = hook.stats()
            except Exception as exc:
                log.error("Hook %s: stats() failed: %s", name, describe_error(exc))
                extra = {}
            hooks[name] = {
                "state": hook.open_state.value,
                "queue_depth": len(worker) if worker is not None else 0,
                "dropped": dropped + (worker.dropped if worker is not None else 0),
                "stuck": worker.stuck if worker is not None else False,
                "extra": extra,
            }
        store = host.store
        return {
            "plugs": plugs,
            "hooks": hooks,
            "store": store.stats() if store is not None else None,
        }


# States in which a plug takes no message to send: it is not open (a plug that is starting or
# stopping may: its put waits or drains as the plug sees fit).
_NOT_OPEN = frozenset((OpenState.disabled, OpenState.inactive, OpenState.failed))


def _queued(plug: Plug) -> int | None:
    try:
        return plug.queued()
    except Exception as exc:
        log.error("Plug %s: queued() failed: %s", plug.name, describe_error(exc))
        return None


def _whole(part: SentMessage, source: Message) -> SentMessage:
    """The whole of ``source`` as received under the ID and channel of its first part."""
    whole = SentMessage.copy_of(
        source,
        id=part.id,
        channel=part.channel,
        at=part.at,
        revision=part.revision,
        deleted=part.deleted,
    )
    whole.user = part.user
    whole.raw = part.raw
    return whole


def _overrides(hook: Hook, method: str) -> bool:
    return getattr(type(hook), method) is not getattr(Hook, method)


def _wants(hook: Hook) -> Callable | None:
    """The hook's ``wants`` filter, or ``None`` where it takes everything (the default)."""
    return hook.wants if _overrides(hook, "wants") else None


def _by_priority(hooks: Iterable[Hook], method: str) -> list[Hook]:
    chosen = [h for h in hooks if _overrides(h, method)]
    return sorted(chosen, key=lambda h: (h.priority is None, h.priority or 0))
