"""
A store whose database runs in one thread of its own.

No SQLite or PostgreSQL driver runs on trio (the async ones need asyncio), and one
``trio.to_thread.run_sync`` per call costs more than the query. So each database gets one thread
that owns its connection for the store's whole life, and the trio side never waits for it
except on a lookup that missed the cache:

    trio: store.set() / messages.put()  -> appended to the write queue (no wait)
    trio: a lookup that missed          -> a request queued; the task waits on a trio.Event
    thread: takes everything queued     -> one transaction for all the writes (group commit),
                                           then the lookups, then wakes the waiting tasks with
                                           one TrioToken.run_sync_soon call per round

While the database is unreachable, writes stay queued (beyond ``max_queue``, the oldest
sixteenth of them dropped at once,
counted in ``stats()["dropped"]``) and are retried every ``retry_interval`` seconds; lookups
answer at once as not found, so callers fall back to what they have in memory. This is said once
when it is lost and once when it is back: back is when a round on a new connection worked (a
database that answers but refuses every write, damaged or without permissions, is not back; a
different error while it is lost is said once more).
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import islice
from typing import Any

import trio

from ._errors import describe_error
from ._logs import counted
from ._store import MAX_QUEUE, PRUNE_INTERVAL, JournalBatch, Store, StoreError, json_text

log = logging.getLogger("immp.store")


class _Request:
    """One lookup (or flush) for the thread, answered in the trio thread."""

    __slots__ = ("args", "error", "event", "kind", "value")

    def __init__(self, kind: str, *args: Any):
        self.kind = kind
        self.args = args
        self.event = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    async def wait(self) -> Any:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return self.value


def _answer(requests: list[_Request]) -> None:
    for request in requests:
        request.event.set()


class WriteBatch:
    """
    Writes queued for one transaction, merged as they are queued (a key written several times
    is written once): ``state`` is ``{(area, key): JSON text, or None to delete}``, ``messages``
    ``{(area, key): [entry, [(channel, id), ...]]}`` (the last entry put under that key, and
    every ID it was indexed under since the last flush). ``len()`` counts the writes queued.
    """

    __slots__ = ("count", "journal", "messages", "state")

    def __init__(self):
        self.state: dict[tuple[str, str], str | None] = {}
        self.messages: dict[tuple[str, str], list] = {}
        #: The journal's writes, merged (see :class:`immp.JournalBatch`).
        self.journal = JournalBatch()
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, op: tuple) -> None:
        if op[0] == "state":
            self.count += 1
            self.state[(op[1], op[2])] = op[3]
        elif op[0] == "journal":
            self.count += 1
            self.journal.merge(op[1])
        else:
            self.add_message(*op[1:])

    def add_message(self, area: str, key: str, entry: Any, ids: list[tuple[str, str]]) -> None:
        """``add(("message", area, key, entry, ids))``, without the tuple."""
        self.count += 1
        slot = (area, key)
        known = self.messages.get(slot)
        if known is None:
            self.messages[slot] = [entry, list(ids)]
        else:
            known[0] = entry
            if ids:
                known[1].extend(ids)

    def drop_oldest(self, keys: int) -> int:
        """
        Forget the writes of the ``keys`` oldest keys, message entries first (the queue is
        full); returns how many it forgot. In one go: iterating a dict starts with the holes
        its earlier deletions left at its front, and one key at a time cost a scan of them all
        for each write (89 us a write with 100,000 queued).
        """
        dropped = 0
        for table in (self.messages, self.state):
            oldest = list(islice(table, keys - dropped))
            for slot in oldest:
                del table[slot]
            dropped += len(oldest)
        self.count = max(0, self.count - dropped)
        return dropped

    def put_back(self, newer: WriteBatch) -> WriteBatch:
        """This batch, not written, with the writes queued since (``newer``) merged after it."""
        self.state.update(newer.state)
        self.journal.merge(newer.journal)
        for slot, (entry, ids) in newer.messages.items():
            known = self.messages.get(slot)
            if known is None:
                self.messages[slot] = [entry, ids]
            else:
                known[0] = entry
                known[1].extend(ids)
        self.count += newer.count
        return self

    def entries(self) -> list[tuple[str, str, str, list]]:
        """``(area, key, entry, ids)`` of each message entry, the entry as its JSON text."""
        return [(area, key, json_text(entry), ids)
                for (area, key), (entry, ids) in self.messages.items()]  # fmt: skip


class ThreadedStore(Store):
    """
    Base of backends whose driver blocks (SQLite, PostgreSQL): runs the database in a thread
    that owns the connection (see the module docstring). A subclass implements, each called
    only in that thread:

    - ``hold()`` and ``release()``, optional: take and let go of the store's hold on its
      namespace where it outlives a connection (SQLite's lock file);
    - ``connect(deadline)`` -> connection: retry an unreachable server until ``deadline``
      (``time.monotonic()``), then raise :class:`~immp.StoreError` (also for a namespace that
      another process holds, where the hold is the connection's, as PostgreSQL's);
    - ``migrate(conn)``: create the schema or bring it up to date; raise StoreError (status 2)
      for a schema newer than this code;
    - ``write(conn, batch)``: apply a :class:`WriteBatch` (the queued writes, merged) in one
      transaction and commit it;
    - ``read_state(conn, area, key)`` -> JSON text or ``None``;
    - ``read_message(conn, area, channel, id)`` -> entry dict or ``None``;
    - ``prune(conn, before)`` -> how many message entries created before ``before`` (epoch
      seconds) it deleted;
    - ``disconnect(conn)``.

    An exception from ``write`` or a read is taken as the connection lost: it is disconnected and
    ``connect`` tried again every ``retry_interval`` seconds.
    """

    #: Seconds between attempts to reach a database that was lost.
    retry_interval = 1.0
    #: Seconds writes gather after a round before the next (a lookup or flush does not wait).
    flush_interval = 0.0
    reports_commits = True

    def __init__(self, *, max_queue: int = MAX_QUEUE, **options: Any):
        super().__init__(**options)
        self.max_queue = int(max_queue)
        self.prune_interval = PRUNE_INTERVAL
        # The lock of _cond, held directly where the trio side queues a write: the lock's own
        # context manager is C code, the Condition's is two Python calls per write.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._writes = WriteBatch()
        self._requests: list[_Request] = []
        self._closing = False
        self._abandon = False
        self._sleeping = False  # the thread waits on _cond for work
        self._gathering = False  # the thread waits on _cond for more writes, or a lookup
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closed: _Request | None = None
        self._room: trio.Event | None = None  # tasks in room() wait on it
        # Figures for stats(); written by the thread, read by anyone.
        self._in_flight = 0
        self._flushes = 0
        self._flush_total = 0.0
        self._last_flush = 0.0
        self._reachable = True  # said to be: a round worked since it was last lost
        self._connected = True  # the thread holds a connection (to write a backlog on)
        self._lost_said: str | None = None  # the reason last logged while lost
        self._back_writes = 0  # queued writes of the round on a new connection
        self._dropped = 0
        self._final: StoreError | None = None  # (the thread's: see _reconnect)
        self._full_said = False
        self._pruned = 0

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats.update(
            queue_depth=len(self._writes) + self._in_flight,
            in_flight=self._in_flight,
            flushes=self._flushes,
            flush_seconds_total=self._flush_total,
            last_flush_seconds=self._last_flush,
            reachable=self._reachable,
            dropped=self._dropped,
            pruned=self._pruned,
        )
        return stats

    # -- the trio side --------------------------------------------------------------------------

    async def _open(self, timeout: float) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._closing = self._abandon = False
        opened, self._closed = _Request("open"), _Request("closed")
        self._thread = threading.Thread(
            target=self._run,
            args=(opened, time.monotonic() + timeout),
            name=f"immp-store-{self.scheme}",
            daemon=True,  # a process that exits without close() loses only unflushed writes
        )
        self._thread.start()
        await opened.wait()

    async def _close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        closed = self._closed
        with trio.move_on_after(timeout) as scope:
            await closed.event.wait()
        if self._final is not None and not scope.cancelled_caught:
            left = len(self._writes) + self._in_flight
            if left:
                self.unwritten = left
                log.error("Store %s: closed with %s not written (the namespace is another "
                          "process's now)", self.describe(), counted(left, "write"))  # fmt: skip
        elif scope.cancelled_caught:
            with self._cond:
                self._abandon = True
                left = len(self._writes) + self._in_flight
                self._cond.notify()
            self.unwritten = left
            log.error("Store %s: closed with %s not written", self.describe(),
                      counted(left, "write"))  # fmt: skip

    async def _flush(self) -> None:
        await self._ask("flush")

    async def room(self) -> None:
        # Half the bound: a backlog that will not fit at all is dropped only when unreachable.
        while self.behind():
            if self._room is None:
                self._room = trio.Event()  # set by the thread after a round (see _wake_room)
            await self._room.wait()

    def behind(self) -> bool:
        return self._writes.count >= self.max_queue // 2 and self._connected and self.is_open

    def _wake_room(self, always: bool = False) -> None:
        event = self._room
        if event is not None and (always or not self.behind()):
            self._room = None
            try:
                self._token.run_sync_soon(event.set)
            except trio.RunFinishedError:
                pass

    async def _read_state(self, area: str, key: str) -> str | None:
        return await self._ask("state", area, key)

    async def _read_message(self, area: str, channel: str, id: str) -> dict | None:
        return await self._ask("message", area, channel, id)

    async def _read_journal(self):
        return await self._ask("journal")

    async def _ask(self, kind: str, *args: Any) -> Any:
        if not self.is_open:
            raise StoreError(f"store {self.describe()} is not open")
        request = _Request(kind, *args)
        with self._cond:
            self._requests.append(request)
            if self._sleeping or self._gathering:
                self._cond.notify()
        return await request.wait()

    def _write(self, op: tuple) -> None:
        with self._lock:
            self._writes.add(op)
            self._queued()

    def _write_message(self, area: str, key: str, entry: Any, ids: list) -> None:
        # _write without the op tuple and its dispatch: one per bridged message.
        with self._lock:
            self._writes.add_message(area, key, entry, ids)
            self._queued()

    def _queued(self) -> None:
        # After a write was queued (under _lock): wake the thread if it sleeps. Only while the
        # database is unreachable can the queue grow past max_queue: then the oldest sixteenth
        # goes at once, so that dropping costs little per write.
        if self._writes.count > self.max_queue:
            self._overflow()
        if self._sleeping:
            self._cond.notify()

    def _overflow(self) -> None:
        self._dropped += self._writes.drop_oldest(max(1, self.max_queue // 16))
        if not self._full_said:
            self._full_said = True
            log.error("Store %s: %d writes queued; dropping the oldest until it is back",
                      self.describe(), self.max_queue)  # fmt: skip

    # -- the thread -----------------------------------------------------------------------------

    def _deliver(self, requests: list[_Request]) -> None:
        if not requests:
            return
        try:
            self._token.run_sync_soon(_answer, requests)
        except trio.RunFinishedError:
            pass  # nobody is waiting any more

    def _run(self, opened: _Request, deadline: float) -> None:
        try:
            self.hold()
            try:
                conn = self.connect(deadline)
                try:
                    self.migrate(conn)
                except BaseException:
                    self.disconnect(conn)
                    raise
            except BaseException:
                self._release()
                raise
        except BaseException as exc:
            if not isinstance(exc, StoreError):
                exc = StoreError(f"store {self.describe()}: {describe_error(exc)}")
            opened.error = exc
            self._deliver([opened, self._closed])
            return
        self._deliver([opened])
        next_prune = time.monotonic()  # once at start: a long downtime leaves the most to prune
        try:
            self._serve(conn, next_prune)
        finally:
            self._release()  # before close() returns: a store opened next may hold it at once
            self._wake_room(always=True)
            self._deliver([self._closed])

    def _release(self) -> None:
        try:
            self.release()
        except Exception as exc:
            log.error("Store %s: %s", self.describe(), describe_error(exc))

    def _serve(self, conn: Any, next_prune: float) -> None:
        last_round = 0.0
        while True:
            with self._cond:
                while not (self._requests or self._closing):
                    if self._writes:
                        # Let writes gather for a moment after the last round: one transaction
                        # for many costs the loop's thread less than many small ones.
                        wait = last_round + self.flush_interval - time.monotonic()
                        if wait <= 0:
                            break
                        self._gathering = True
                    else:
                        wait = next_prune - time.monotonic() if conn is not None else 0
                        if wait <= 0:
                            break
                        self._sleeping = True
                    self._cond.wait(wait)
                    self._sleeping = self._gathering = False
                last_round = time.monotonic()
                writes, self._writes = self._writes, WriteBatch()
                requests, self._requests = self._requests, []
                closing, abandon = self._closing, self._abandon
                worked = bool(writes) or bool(requests)  # a round that tries the database
                self._in_flight = len(writes)
            if abandon:
                with self._cond:
                    self._writes = writes.put_back(self._writes)
                self._in_flight = 0
                break
            if conn is None:
                conn = self._reconnect(len(writes))
            if conn is not None and writes:
                started = time.perf_counter()
                try:
                    self.write(conn, writes)
                except Exception as exc:
                    conn = self._lost(conn, exc)
                else:
                    took = time.perf_counter() - started
                    self._flushes += 1
                    self._flush_total += took
                    self._last_flush = took
                    if writes.journal.number:
                        try:
                            self._token.run_sync_soon(self._journal_committed,
                                                      writes.journal.number)  # fmt: skip
                        except trio.RunFinishedError:
                            pass
                    writes = None
            if writes:  # not written: back in front of what came meanwhile
                with self._cond:
                    self._writes = writes.put_back(self._writes)
            self._in_flight = 0
            for request in requests:
                if conn is None:
                    request.error = StoreError(f"store {self.describe()} is unreachable")
                    continue
                try:
                    if request.kind == "state":
                        request.value = self.read_state(conn, *request.args)
                    elif request.kind == "message":
                        request.value = self.read_message(conn, *request.args)
                    elif request.kind == "journal":
                        request.value = self.read_journal(conn)
                except NotImplementedError as exc:
                    request.error = exc  # this backend has no such thing; the connection is fine
                except Exception as exc:
                    request.error = StoreError(f"store {self.describe()}: {exc}")
                    conn = self._lost(conn, exc)
            self._deliver(requests)
            self._wake_room()
            if conn is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_interval
                if self.retention != float("inf"):
                    try:
                        self._pruned += self.prune(conn, time.time() - self.retention)
                    except Exception as exc:
                        conn = self._lost(conn, exc)
            if conn is not None and not self._reachable and worked:  # a round on the new one
                self._reachable = True
                self._full_said = False
                self._lost_said = None
                log.warning("Store %s is back: %d queued writes written", self.describe(),
                            self._back_writes)  # fmt: skip
            if closing and ((conn is not None and not self._writes) or self._final is not None):
                break  # (given up for good: what is queued is lost, said at close)
            if conn is None:
                with self._cond:
                    if not self._abandon:
                        self._sleeping = True
                        self._cond.wait(self.retry_interval)
                        self._sleeping = False
        if conn is not None:
            self.disconnect(conn)

    def _lost(self, conn: Any, exc: Exception) -> None:
        self._connected = False
        if self._reachable:
            reason = self._lost_said = describe_error(exc, limit=300)
            self._reachable = False
            log.error("Store %s lost: %s. Writes are queued (up to %d) and retried every %ss; "
                      "lookups answer from memory until it is back", self.describe(),
                      reason, self.max_queue, self.retry_interval)  # fmt: skip
        else:
            self._still_lost(exc)
        try:
            self.disconnect(conn)
        except Exception:
            pass
        return None

    def _journal_committed(self, number: int) -> None:
        # In the trio thread.
        if self.on_journal_committed is not None:
            self.on_journal_committed(number)

    def _finish_final(self, exc: StoreError) -> None:
        # In the trio thread.
        self.final_error = exc
        if self.on_final is not None:
            self.on_final(exc)

    def _still_lost(self, exc: Exception) -> None:
        # Said once per reason, not at every retry: a server that went from "not running" to
        # "password authentication failed" says so, once.
        reason = describe_error(exc, limit=300)
        if reason != self._lost_said:
            self._lost_said = reason
            log.error("Store %s still not usable: %s", self.describe(), reason)

    def _reconnect(self, queued: int) -> Any:
        # Connected is not back yet: that is said once a round on the connection worked.
        if self._final is not None:
            return None  # not for this process any more: the host is stopping
        try:
            conn = self.connect(time.monotonic())
        except Exception as exc:
            if isinstance(exc, StoreError) and exc.final:
                # Another process took the namespace: it bridges now, this one must stop (both
                # would copy every message). Said by the host, which stops.
                self._final = exc
                try:
                    self._token.run_sync_soon(self._finish_final, exc)
                except trio.RunFinishedError:
                    pass
            else:
                self._still_lost(exc)
            return None
        self._connected = True
        self._back_writes = queued
        return conn

    # -- what a subclass implements (in the thread) ---------------------------------------------

    def hold(self) -> None:
        """
        Take what the store holds while it is open, over all its connections (SQLite: its
        namespace's lock file), before the first ``connect``; raise :class:`~immp.StoreError`
        if it cannot (another process holds the namespace). Default: nothing.
        """

    def release(self) -> None:
        """
        Let go of what :meth:`hold` took: called once, after the last ``disconnect``, however
        the store ends (closed, failed to open), before :meth:`close` returns. Default:
        nothing.
        """

    def connect(self, deadline: float) -> Any:
        raise NotImplementedError

    def migrate(self, conn: Any) -> None:
        raise NotImplementedError

    def write(self, conn: Any, batch: WriteBatch) -> None:
        raise NotImplementedError

    def read_state(self, conn: Any, area: str, key: str) -> str | None:
        raise NotImplementedError

    def read_message(self, conn: Any, area: str, channel: str, id: str) -> dict | None:
        raise NotImplementedError

    def prune(self, conn: Any, before: float) -> int:
        raise NotImplementedError

    def read_journal(self, conn: Any):
        """What :meth:`Store.journal_load` gives; NotImplementedError where none is kept."""
        raise NotImplementedError

    def disconnect(self, conn: Any) -> None:
        raise NotImplementedError
