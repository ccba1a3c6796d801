"""
The store: what plugs and hooks keep across restarts.

- :class:`Store` is the front every backend shares: a bounded cache of state values in memory,
  writes queued and made durable at the backend's next flush, lookups that miss waiting on the
  backend. ``host.store`` is the open store.
- :class:`State` is one plug's or hook's key-value area (``self.state``), with JSON values.
- :class:`MessageMap` (``host.store.messages``) maps a message ID on a channel to an entry that
  knows the same message's IDs on other channels: the sync hook's copy map.
- :class:`MemoryStore` keeps everything in this process (nothing survives a restart);
  :class:`~immp.SQLiteStore` (the default) and PostgreSQL (``immp-store-postgres``) run their
  database in a thread of their own (:class:`~immp.ThreadedStore`).

Every row belongs to a ``namespace`` (one per running instance, by default the config file's
name) and an ``area`` (the config name of the plug or hook), so that several processes can share
one database and each plug sees only its own keys. A namespace is one live process's at a time:
SQLite and PostgreSQL refuse to open one that another process holds (two would replay each
other's journal and overwrite each other's state), and the hold ends with the process, however
it ends. Keys are strings chosen by the plug; they must be stable across restarts (config names
and the network's own IDs, never ``id()``).

The ``store:`` config key is a URL, turned into a store by :func:`store_from_config`.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._openable import Openable
    from .plugins import Plugins

log = logging.getLogger(__name__)

#: Copy-map entries older than this many seconds are pruned (``?retention-days=`` in the URL).
DEFAULT_RETENTION = 30 * 86400.0
#: State values kept in memory in front of the backend (least recently used are dropped).
CACHE_SIZE = 10_000
#: Writes waiting for the backend before the oldest are dropped (only while it is unreachable).
MAX_QUEUE = 100_000
#: How often copy-map entries past their retention are looked for, in seconds.
PRUNE_INTERVAL = 3600.0

_ABSENT = object()  # cached: the backend has no such key


class StoreError(Exception):
    """
    A store that cannot be opened (unwritable folder, corrupt file, newer schema, server
    unreachable, a namespace another process holds). ``status`` is the exit status the ``immp``
    command uses: 2 for what the config must change, 1 otherwise. The message is one line that
    names the store.
    """

    def __init__(self, message: str, status: int = 1, *, final: bool = False):
        super().__init__(message)
        self.status = status
        #: Raised while running, for a store this process must not use again (another process
        #: took its namespace): the host stops (see :attr:`Store.on_final`).
        self.final = final

    @staticmethod
    def inside(exc: BaseException) -> StoreError | None:
        """The StoreError that ``exc`` is or wraps in (nested) one-exception groups, if any."""
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        return exc if isinstance(exc, StoreError) else None


def channel_key(channel: Any) -> str:
    """
    A channel's key in the message map, stable across restarts: its plug's config name and the
    network's ID for it, separated by U+001F (which neither contains in practice).
    """
    return f"{channel.plug.name}\x1f{channel.source}"


def message_key(channel: str, id: str) -> str:
    """The message-map key of message ``id`` on ``channel`` (a :func:`channel_key` string)."""
    return f"{channel}\x1f{id}"


class Store:
    """
    Base of every store backend. A backend implements :meth:`_open`, :meth:`_close`,
    :meth:`_read_state`, :meth:`_read_message`, :meth:`_write` and :meth:`_flush`; the cache,
    JSON encoding, :class:`State` and :class:`MessageMap` are here.

    Register a backend with the ``register_stores`` hookspec; it is built as
    ``cls.from_url(url, base, **options)`` (see :func:`store_from_config`).
    """

    #: The URL scheme this backend is registered under (for messages).
    scheme: ClassVar[str] = ""
    #: Whether the backend calls :attr:`on_journal_committed` as it commits journal batches
    #: (then a journaled delivery waits for its entry to be durable: see Journal.durable).
    reports_commits: ClassVar[bool] = False

    def __init__(
        self,
        *,
        namespace: str = "default",
        retention: float = DEFAULT_RETENTION,
        cache_size: int = CACHE_SIZE,
    ):
        #: Every row this store reads or writes belongs to this namespace.
        self.namespace = namespace
        #: Seconds a message-map entry is kept (``math.inf``: forever).
        self.retention = retention
        self.cache_size = cache_size
        #: The message map (see :class:`MessageMap`).
        self.messages = MessageMap(self)
        self.is_open = False
        #: Writes the last :meth:`close` gave up on (the backend stayed unusable): lost.
        self.unwritten = 0
        #: Set (in the trio thread) when the store found, while running, that this process must
        #: stop using it: a :class:`StoreError` with ``final``. ``on_final(error)``, set by
        #: the host, is called then: the host stops, and ``immp`` exits 1 with the error.
        self.final_error: StoreError | None = None
        self.on_final: Callable[[StoreError], None] | None = None
        #: ``on_journal_committed(number)``, set by the journal: journal batches up to
        #: ``number`` are durable (called in the trio thread, where ``reports_commits``).
        self.on_journal_committed: Callable[[int], None] | None = None
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()

    @classmethod
    def from_url(cls, url: str, base: Path | None, **options: Any) -> Store:
        """
        Build the store for a ``store:`` URL; ``base`` is the config file's folder (for relative
        paths), ``options`` the URL's query (``namespace``, ``retention``, ...). Raise
        :class:`~immp.ConfigError` for a URL this backend cannot use.
        """
        return cls(**options)

    def describe(self) -> str:
        """One line for the log: which database (never a password) and namespace."""
        return f"{self.scheme} (namespace {self.namespace})"

    # -- lifetime -------------------------------------------------------------------------------

    def check(self) -> None:
        """
        What :meth:`open` would refuse that can be told without opening anything (``immp
        --check``: a folder where a file cannot be made); raises :class:`StoreError`. Default:
        nothing.
        """

    async def open(self, timeout: float = 30.0) -> None:
        """
        Connect, create or migrate the schema, and hold the namespace. Raises
        :class:`StoreError` (one line) if the store cannot be used or another process holds the
        namespace; ``timeout`` is how long a backend may retry an unreachable server.
        """
        await self._open(timeout)
        self.is_open = True

    async def close(self, timeout: float = 10.0) -> None:
        """
        Write what is queued (for up to ``timeout`` seconds), disconnect and let go of the
        namespace. The cache is kept, so a store opened again (a host run twice) starts warm.
        """
        if self.is_open:
            self.is_open = False
            self.unwritten = 0
            await self._close(timeout)

    def behind(self) -> bool:
        """Whether :meth:`room` would wait now (a cheap test first, for a caller per message)."""
        return False

    async def room(self) -> None:
        """
        Wait while the backend is behind: more writes queued than it should hold (it is
        reachable but slower than what comes in). A hook that writes per message calls this
        before its writes, so that the stream slows down instead of the queue growing; it
        returns at once otherwise, and while the backend is unreachable (the queue's bound then
        drops the oldest writes). Cancelling it is harmless.
        """

    async def flush(self) -> None:
        """
        Wait until every write queued before this call is durable. Raises :class:`StoreError`
        if the backend is unreachable (the writes stay queued and are retried).
        """
        await self._flush()

    def stats(self) -> dict[str, Any]:
        """
        A cheap snapshot: ``queue_depth`` (writes waiting, ``in_flight`` of them being
        committed now), ``flushes``, ``flush_seconds_total``,
        ``last_flush_seconds``, ``reachable``, ``dropped`` (writes lost to a full queue while
        the backend was unreachable), ``cache_size``.
        """
        return {
            "backend": self.scheme,
            "queue_depth": 0,
            "in_flight": 0,
            "flushes": 0,
            "flush_seconds_total": 0.0,
            "last_flush_seconds": 0.0,
            "reachable": True,
            "dropped": 0,
            "cache_size": len(self._cache),
        }

    # -- state ----------------------------------------------------------------------------------

    async def get(self, area: str, key: str, default: Any = None) -> Any:
        """The value of ``key`` in ``area``, or ``default``; see :meth:`State.get`."""
        slot = (area, key)
        text = self._cache.get(slot, None)
        if text is None:
            try:
                text = await self._read_state(area, key)
            except StoreError:
                return default  # unreachable: nothing cached, so read again next time
            if slot in self._cache:  # a set() while we waited wins
                text = self._cache[slot]
            else:
                self._remember(slot, _ABSENT if text is None else text)
        else:
            self._cache.move_to_end(slot)
        return default if text is None or text is _ABSENT else json.loads(text)

    def set(self, area: str, key: str, value: Any) -> None:
        """Queue ``value`` (JSON-serialisable, else ``TypeError`` now) for ``key`` in ``area``."""
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self._remember((area, key), text)
        self._write(("state", area, key, text))

    def delete(self, area: str, key: str) -> None:
        """Queue the removal of ``key`` from ``area``."""
        self._remember((area, key), _ABSENT)
        self._write(("state", area, key, None))

    # -- the journal (see immp.Journal) ---------------------------------------------------------

    def journal_write(self, ops: list[tuple]) -> None:
        """
        Queue journal writes, in order with every other write, each ``("entry", key, created,
        text)``, ``("delivery", entry, delivery, state)`` or ``("done", entry)`` (the entry and
        its deliveries deleted). Durable at the next flush.
        """
        batch = JournalBatch()
        for op in ops:
            batch.add(op)
        self.journal_merge(batch)

    def journal_merge(self, batch: JournalBatch) -> None:
        """:meth:`journal_write` for writes already merged into a :class:`JournalBatch` (the
        journal's way: one hand-over per trio tick). The batch is the store's from now on."""
        self._write(("journal", batch))

    async def journal_load(self) -> tuple[list[tuple[str, float, str]], list[tuple[str, str, int]]]:
        """
        What the journal holds for this namespace: ``[(key, created, text)]`` in the order
        written, and ``[(entry, delivery, state)]``. Raises :class:`StoreError` (status 2) where
        the backend keeps no journal (a third-party backend without ``_read_journal``; memory,
        SQLite and PostgreSQL keep one).
        """
        try:
            return await self._read_journal()
        except NotImplementedError:
            raise StoreError(f"the store {self.describe()} keeps no journal: use sqlite, "
                             "postgresql or memory with `host: journal: true`",
                             2) from None  # fmt: skip

    async def _read_journal(self):
        raise NotImplementedError

    def _remember(self, slot: tuple[str, str], text: Any) -> None:
        self._cache[slot] = text
        self._cache.move_to_end(slot)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- what a backend implements --------------------------------------------------------------

    async def _open(self, timeout: float) -> None:
        raise NotImplementedError

    async def _close(self, timeout: float) -> None:
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError

    async def _read_state(self, area: str, key: str) -> str | None:
        """The JSON text stored for ``key`` in ``area``, ``None`` if absent; StoreError if down."""
        raise NotImplementedError

    async def _read_message(self, area: str, channel: str, id: str) -> dict | None:
        """The entry indexed under ``(channel, id)``, or ``None``; StoreError if down."""
        raise NotImplementedError

    def _write_message(self, area: str, key: str, entry: Any, ids: list[tuple[str, str]]) -> None:
        """
        :meth:`_write` of ``("message", area, key, entry, ids)``: a backend may take it without
        the tuple (the sync hook puts one entry per bridged message).
        """
        self._write(("message", area, key, entry, ids))

    def _write(self, op: tuple) -> None:
        """
        Queue one write, without waiting. ``op`` is ``("state", area, key, text_or_None)`` or
        ``("message", area, key, entry, ids)`` where ``entry`` is what
        :meth:`MessageMap.put` was given and ``ids`` the ``(channel, id)`` pairs to index it under.
        """
        raise NotImplementedError


class State:
    """
    A plug's or hook's own key-value area in ``host.store``: ``self.state``. Keys are strings;
    values anything JSON can hold (read back as JSON gives it: tuples come back as lists).
    Namespaced by the instance and the plug's or hook's config name, so renaming the item in the
    config starts an empty area (see docs/production.md). Usable from ``open()`` on.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: Openable):
        self._owner = owner

    def _store(self) -> Store:
        host = self._owner.host
        if host is None:
            raise RuntimeError(f"{self._owner.name} has no host, so no store")
        return host.store

    async def get(self, key: str, default: Any = None) -> Any:
        """
        The value stored under ``key``, or ``default``. Answers from memory when it can, else
        waits for the store; while the store is unreachable, a value not in memory reads as
        ``default``.
        """
        return await self._store().get(self._owner.name, key, default)

    async def set(self, key: str, value: Any) -> None:
        """
        Store ``value`` under ``key``. Returns once it is queued (later reads see it at once);
        it is durable at the store's next flush (``await host.store.flush()`` to wait for it).
        Raises ``TypeError`` for a value JSON cannot hold.
        """
        self._store().set(self._owner.name, key, value)

    async def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens if it is not there); queued like :meth:`set`."""
        self._store().delete(self._owner.name, key)


class MessageMap:
    """
    ``host.store.messages``: message entries, each the same message's IDs on several channels,
    findable by any of them. An entry is a JSON-ready dict the caller designs (the sync hook
    stores ``{"origin": [channel, id], "ids": {channel: [id, ...]}, "deleted": bool}``);
    channels are given as :func:`channel_key` strings. Entries older than the store's retention
    are pruned, with every ID that points at them.

    An entry's key is, by convention, :func:`message_key` of where the message was first posted:
    :meth:`find` finds it by that ``(channel, id)`` without an index row for it.
    """

    def __init__(self, store: Store):
        self._store = store

    async def find(self, area: str, channel: str, id: str) -> dict | None:
        """
        The entry that ``id`` on ``channel`` was indexed under in ``area``, or the entry whose
        key is :func:`message_key` of them, or ``None`` (never stored, pruned, or the store is
        unreachable). Waits for the store: keep a cache in front
        for the hot path, as the sync hook does.
        """
        try:
            return await self._store._read_message(area, channel, id)
        except StoreError:
            return None  # unreachable: the caller's cache is all there is

    def put(
        self, area: str, key: str, entry: dict | Callable[[], dict], ids: list[tuple[str, str]]
    ) -> None:
        """
        Store ``entry`` under ``key`` (unique in ``area``; replaces an earlier entry of that key
        but keeps its age) and index it under each ``(channel, id)`` of ``ids`` (in addition to
        what it was indexed under before). Queued; durable at the next flush.

        ``entry`` may be a function that returns the entry: the store calls it once per key and
        flush, after the last put, so that an entry changed several times between flushes is
        encoded once. It may be called in the store's thread: it must only read what the trio
        side replaces whole (a list of a dict's items taken in one call, immutable values).
        Either may also be a ``str``: the entry already encoded, the JSON text of an object
        (stored as it is, so it must be valid JSON; the sync hook builds its text in the store's
        thread from parts it encoded once, cheaper than a dict for the store to encode).
        """
        self._store._write_message(area, key, entry, ids)


class MemoryStore(Store):
    """
    Everything in this process; nothing survives a restart (``store: memory``, and the default
    of a host built without a config file). Holds the latest ``max_messages`` message-map
    entries (default ``cache_size``), and prunes those past the retention as it goes.
    """

    scheme = "memory"

    def __init__(self, *, max_messages: int | None = None, **options: Any):
        super().__init__(**options)
        self.max_messages = max_messages or self.cache_size
        self._state: dict[tuple[str, str], str] = {}
        # (area, key) -> [entry, created, ids], oldest first
        self._entries: OrderedDict[tuple[str, str], list] = OrderedDict()
        self._ids: dict[tuple[str, str, str], str] = {}  # (area, channel, id) -> key
        self._last_prune = time.monotonic()
        self._until_clock = 1000  # writes before the clock is read again (see _write)
        self._journal = JournalBatch()

    async def _open(self, timeout: float) -> None:
        pass

    async def _close(self, timeout: float) -> None:
        pass

    async def _flush(self) -> None:
        pass

    async def _read_state(self, area: str, key: str) -> str | None:
        return self._state.get((area, key))

    async def _read_message(self, area: str, channel: str, id: str) -> dict | None:
        key = self._ids.get((area, channel, id), message_key(channel, id))
        row = self._entries.get((area, key))
        if row is None:
            return None
        return json.loads(json_text(row[0]))  # a copy, as read back from a database

    async def _read_journal(self):
        return self._journal.rows()

    def _write(self, op: tuple) -> None:
        if op[0] == "journal":
            self._journal.merge(op[1])
            return
        if op[0] == "state":
            _, area, key, text = op
            if text is None:
                self._state.pop((area, key), None)
            else:
                self._state[(area, key)] = text
            return
        _, area, key, entry, ids = op
        row = self._entries.get((area, key))
        if row is None:
            row = self._entries[(area, key)] = [entry, time.time(), []]
            if len(self._entries) > self.max_messages:
                self._drop(*next(iter(self._entries)))
        else:
            row[0] = entry
        if ids:
            index = self._ids
            for channel, id in ids:
                index[(area, channel, id)] = key
            row[2].extend(ids)
        # The clock is read every thousand writes, not on each: pruning is hourly anyway.
        self._until_clock -= 1
        if self._until_clock <= 0:
            self._until_clock = 1000
            now = time.monotonic()
            if now - self._last_prune > PRUNE_INTERVAL:
                self._last_prune = now
                self.prune(time.time() - self.retention)

    def prune(self, before: float) -> int:
        """Drop entries created before ``before`` (epoch seconds); returns how many."""
        old = [slot for slot, row in self._entries.items() if row[1] < before]
        for area, key in old:
            self._drop(area, key)
        return len(old)

    def _drop(self, area: str, key: str) -> None:
        for channel, id in self._entries.pop((area, key))[2]:
            if self._ids.get((area, channel, id)) == key:
                del self._ids[(area, channel, id)]


class JournalBatch:
    """
    Journal writes merged as they are queued, to their net effect: an entry added and done
    before the next commit is never written at all. ``entries`` are ``{key: (created,
    message)}`` to insert (in order), ``deliveries`` ``{entry: {delivery: state}}`` to upsert,
    ``done`` the entries to delete (with their deliveries). An entry's message is its JSON text,
    or a function that gives it as JSON-ready data, called only when it is written (so that a
    backend that builds JSON anyway encodes it once, with its rows; :meth:`entry_rows` gives
    the text). The memory store keeps one as its journal.
    """

    __slots__ = ("deliveries", "done", "entries", "number")

    def __init__(self):
        #: The journal's number for it (the highest of those merged into it).
        self.number = 0
        self.entries: dict[str, tuple[float, str]] = {}
        self.deliveries: dict[str, dict[str, int]] = {}
        self.done: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.entries or self.deliveries or self.done)

    def add(self, op: tuple) -> None:
        kind = op[0]
        if kind == "entry":
            self.entries[op[1]] = (op[2], op[3])
        elif kind == "delivery":
            self.deliveries.setdefault(op[1], {})[op[2]] = op[3]
        else:
            entry = op[1]
            self.deliveries.pop(entry, None)
            if self.entries.pop(entry, None) is None:
                self.done.add(entry)

    def merge(self, newer: JournalBatch) -> None:
        """Apply ``newer`` (queued later) on top of this batch; ``newer`` is this batch's now."""
        self.number = max(self.number, newer.number)
        if not (self.entries or self.deliveries or self.done):
            # The usual case (one hand-over per round of the store's thread): taken whole.
            self.entries, self.deliveries, self.done = newer.entries, newer.deliveries, newer.done
            return
        for entry in newer.done:
            self.deliveries.pop(entry, None)
            if self.entries.pop(entry, None) is None:
                self.done.add(entry)
        self.entries.update(newer.entries)
        for entry, rows in newer.deliveries.items():
            self.deliveries.setdefault(entry, {}).update(rows)

    def entry_rows(self) -> list[tuple[str, float, str]]:
        """``(key, created, text)`` of each entry to insert, in order (made now if a function)."""
        return [(key, created, json_text(message))
                for key, (created, message) in self.entries.items()]  # fmt: skip

    def delivery_rows(self) -> list[tuple[str, str, int]]:
        """``(entry, delivery, state)`` of each delivery to upsert."""
        return [(entry, delivery, state) for entry, rows in self.deliveries.items()
                for delivery, state in rows.items()]  # fmt: skip

    def rows(self):
        """As :meth:`Store.journal_load` gives them (for the memory store)."""
        return self.entry_rows(), self.delivery_rows()


def json_text(value: Any) -> str:
    """
    The JSON text a store keeps for a message-map entry or a journal entry: ``value`` as it was
    queued, which is its text already (a ``str``), JSON-ready data, or a function that gives
    either (called now). Runs in a store's thread, which holds the GIL while it encodes.
    """
    if callable(value):
        value = value()
    return value if value.__class__ is str else _encode(value)


def _unencodable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-ready data")


# The C encoder made once, and called directly: json.dumps and JSONEncoder.encode are Python and
# build one per call (once per entry). No check for circular references: entries are plain
# JSON-ready data.
if c_make_encoder is not None:
    _encoder = c_make_encoder(None, _unencodable, encode_basestring, None, ":", ",", False,
                              False, True)  # fmt: skip

    def _encode(value: Any) -> str:
        return "".join(_encoder(value, 0))
else:  # pragma: no cover - a Python built without _json
    _encode = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), check_circular=False
    ).encode


# -- the store: config key ---------------------------------------------------------------------


def _builtin_stores() -> dict[str, type[Store] | str]:
    return {"memory": MemoryStore, "sqlite": "immp._store_sqlite.SQLiteStore"}


def _options(query: str) -> dict[str, Any]:
    """The URL query: ``namespace``, ``retention-days``, ``cache-size`` and backend options."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "namespace":
            if not value:
                raise ConfigError("namespace must not be empty", "store")
            options["namespace"] = value
        elif name == "retention-days":
            try:
                days = float(value)
            except ValueError:
                raise ConfigError(f"retention-days must be a number, not {value!r}", "store")
            if days <= 0:
                raise ConfigError("retention-days must be above 0 (or inf)", "store")
            options["retention"] = math.inf if math.isinf(days) else days * 86400
        elif name == "cache-size":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"cache-size must be a whole number above 0: {value!r}", "store")
            options["cache_size"] = int(value)
        else:
            options[name.replace("-", "_")] = value
    return options


def store_from_config(url: Any, file: str | None = None, plugins: Plugins | None = None) -> Store:
    """
    The store for the ``store:`` config key (not opened). ``url``:

    - absent (``None``): a SQLite file beside the config ``file`` named after it (``bridge.yaml``
      -> ``bridge.db``); without a file, the memory store;
    - ``sqlite:///abs/path.db`` or ``sqlite:relative/path.db`` (relative to the config file);
    - ``memory``;
    - ``postgresql://user@host:port/db`` (with ``immp-store-postgres`` installed), or any scheme
      another installed distribution registers.

    A query string sets options for every backend: ``namespace`` (default: the config file's
    name without extension; one running process each), ``retention-days`` (30), ``cache-size``
    (10000), and the backend's own (SQLite: ``synchronous``). Raises :class:`~immp.ConfigError`
    (key ``store``) for a URL no installed backend takes, listing the installed schemes.
    """
    base = Path(file).resolve().parent if file else None
    stem = Path(file).stem if file else "default"
    if url is None:
        if file is None:
            return MemoryStore()
        url = "sqlite:" + Path(file).with_suffix(".db").name
    if not isinstance(url, str) or not url:
        raise ConfigError("must be a URL such as sqlite:bridge.db, memory or postgresql://...",
                          "store")  # fmt: skip
    scheme, _, _ = url.partition(":")
    scheme = scheme.lower()
    stores = _builtin_stores()
    if scheme not in stores:
        from .plugins import Plugins

        plugins = plugins or Plugins()
        stores.update(getattr(plugins, "stores", {}))
    cls = stores.get(scheme) or stores.get(scheme.split("+")[0])
    if cls is None:
        known = ", ".join(sorted(stores))
        raise ConfigError(f"unknown store {scheme!r} in {url!r} (installed: {known})", "store")
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    options = {"namespace": stem, **_options(urlsplit(url).query)}
    try:
        return cls.from_url(url, base, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        option = str(exc).rpartition(" ")[2].strip("'").replace("_", "-")
        raise ConfigError(f"the {scheme} store has no option {option!r}", "store")
