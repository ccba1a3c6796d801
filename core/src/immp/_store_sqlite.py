"""
The default store: one SQLite file (``store: sqlite:bridge.db``), in WAL mode, run in a thread
of its own (see :mod:`immp._store_thread`).

Tables (schema version in ``immp_schema``; see ``MIGRATIONS``)::

    scopes(id, namespace, area)                  one row per instance and plug/hook name
    state(scope, key, value)                     self.state: JSON text per key
    messages(scope, key, entry, created)         message-map entries (JSON) and their age
    message_ids(scope, channel, id, key, created) every (channel, message ID) -> its entry
    journal(seq, namespace, key, created, message) the journal's entries, in the order written
    journal_deliveries(namespace, entry, delivery, state)  one row per target of an entry

``synchronous`` (``?synchronous=`` in the URL) is SQLite's: ``normal`` (the default) survives a
crash or kill of the process, a power loss may lose the last commits; ``full`` also survives a
power loss, at an fsync per commit; ``off`` survives neither (tests, throwaway bridges). Commits
are per round of the store's thread (group commit), so ``full`` costs one fsync per round, never
one per message. For the journal (``host: journal: true``) this means: with ``normal`` a message
a plug counted as taken (its cursor saved after it) is delivered after a kill -9 of the process;
after a power loss the last rounds before it may be gone, cursor and journal together (so a
network that keeps history, as Matrix does, sends them again); ``full`` keeps them through a
power loss too.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._store import StoreError, message_key
from ._store_thread import ThreadedStore, WriteBatch

log = logging.getLogger("immp.store")

#: Statements that bring a database from version N-1 to N, run in order in one transaction each.
#: Add a version for every change of layout; never edit one that has shipped.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE scopes (id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, area TEXT NOT NULL,"
        " UNIQUE (namespace, area))",
        "CREATE TABLE state (scope INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
        " PRIMARY KEY (scope, key)) WITHOUT ROWID",
        "CREATE TABLE messages (scope INTEGER NOT NULL, key TEXT NOT NULL, entry TEXT NOT NULL,"
        " created REAL NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID",
        "CREATE TABLE message_ids (scope INTEGER NOT NULL, channel TEXT NOT NULL,"
        " id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (scope, channel, id)) WITHOUT ROWID",
    ],
    # Retention: prune by age without reading every row.
    2: [
        "ALTER TABLE message_ids ADD COLUMN created REAL NOT NULL DEFAULT 0",
        "UPDATE message_ids SET created = coalesce((SELECT created FROM messages m"
        " WHERE m.scope = message_ids.scope AND m.key = message_ids.key), 0)",
        "CREATE INDEX messages_created ON messages (scope, created)",
        "CREATE INDEX message_ids_created ON message_ids (scope, created)",
    ],
    # The journal (immp.Journal): entries in the order written, and their deliveries.
    3: [
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY, namespace TEXT NOT NULL,"
        " key TEXT NOT NULL, created REAL NOT NULL, message TEXT NOT NULL)",
        "CREATE UNIQUE INDEX journal_key ON journal (namespace, key)",
        "CREATE TABLE journal_deliveries (namespace TEXT NOT NULL, entry TEXT NOT NULL,"
        " delivery TEXT NOT NULL, state INTEGER NOT NULL,"
        " PRIMARY KEY (namespace, entry, delivery)) WITHOUT ROWID",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)

SYNC_MODES = ("off", "normal", "full", "extra")


def _columns(*names: str) -> str:
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(names)))


# No check for circular references: rows are tuples of strings and the entries' plain dicts
# (the check costs a dict insertion and removal per list and dict, in the store's thread, which
# holds the GIL while it encodes).
_rows = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


# Each takes its rows as a JSON array of arrays (?1) and the scope they all belong to (?2); the
# message tables also the time they were written (?3): what every row of a batch shares is one
# parameter, not a column of every row to encode and parse again. ("WHERE true" parses the
# upsert after a SELECT.)
_UPSERT_STATE = (
    f"INSERT INTO state (scope, key, value) SELECT ?2, {_columns('k', 'v')} FROM json_each(?1)"
    " WHERE true ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value"
)
_DELETE_STATE = "DELETE FROM state WHERE scope = ?2 AND key IN (SELECT value FROM json_each(?1))"
_UPSERT_MESSAGES = (
    "INSERT INTO messages (scope, key, entry, created)"
    f" SELECT ?2, {_columns('k', 'e')}, ?3 FROM json_each(?1)"
    " WHERE true ON CONFLICT (scope, key) DO UPDATE SET entry = excluded.entry"
)
_UPSERT_IDS = (
    "INSERT INTO message_ids (scope, channel, id, key, created)"
    f" SELECT ?2, {_columns('c', 'i', 'k')}, ?3 FROM json_each(?1)"
    " WHERE true ON CONFLICT (scope, channel, id)"
    " DO UPDATE SET key = excluded.key, created = excluded.created"
)

# The journal's: the namespace every row shares is one parameter (?2), as the scope is above.
_DELETE_JOURNAL = (
    "DELETE FROM journal WHERE namespace = ?2 AND key IN (SELECT value FROM json_each(?1))"
)
_DELETE_DELIVERIES = (
    "DELETE FROM journal_deliveries WHERE namespace = ?2"
    " AND entry IN (SELECT value FROM json_each(?1))"
)
# json_each keeps the array's order, so seq follows the order the entries were journaled in.
# The time created comes in microseconds, a whole number: Python's repr of a float such as
# time.time() (dtoa) costs the store's thread more than encoding the rest of the row.
_INSERT_JOURNAL = (
    "INSERT OR IGNORE INTO journal (namespace, key, created, message)"
    " SELECT ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]') / 1000000.0,"
    " json_extract(value, '$[2]') FROM json_each(?1) ORDER BY json_each.key"
)
_UPSERT_DELIVERIES = (
    "INSERT INTO journal_deliveries (namespace, entry, delivery, state)"
    f" SELECT ?2, {_columns('e', 'd', 's')} FROM json_each(?1)"
    " WHERE true ON CONFLICT (namespace, entry, delivery) DO UPDATE SET state = excluded.state"
)


class SQLiteStore(ThreadedStore):
    """A SQLite file; see the module docstring. ``path`` is absolute or relative to the cwd."""

    scheme = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        synchronous: str = "normal",
        busy_timeout: float = 5.0,
        **options: Any,
    ):
        super().__init__(**options)
        self.path = Path(path).absolute()
        if synchronous.lower() not in SYNC_MODES:
            raise ConfigError(
                f"synchronous must be one of {', '.join(SYNC_MODES)}, not {synchronous!r}",
                "store",
            )
        self.synchronous = synchronous.lower()
        self.busy_timeout = float(busy_timeout)
        self._scopes: dict[str, int] = {}

    @classmethod
    def from_url(cls, url: str, base: Path | None, **options: Any) -> SQLiteStore:
        rest = url.partition(":")[2].partition("?")[0]
        if rest.startswith("///"):
            path = Path("/" + rest[3:].lstrip("/"))
        elif rest.startswith("//"):
            raise ConfigError(
                f"{url!r}: use sqlite:///absolute/path.db or sqlite:relative/path.db", "store"
            )
        elif not rest:
            raise ConfigError(f"{url!r} names no file", "store")
        else:
            path = (base or Path.cwd()) / rest
        return cls(path, **options)

    def describe(self) -> str:
        return f"sqlite {self.path} (namespace {self.namespace})"

    # -- in the store's thread ------------------------------------------------------------------

    def connect(self, deadline: float) -> sqlite3.Connection:
        folder = self.path.parent
        if not self.path.exists():
            reason = None
            if not folder.is_dir():
                reason = f"no folder {folder}"
            elif not os.access(folder, os.W_OK | os.X_OK):
                reason = "the folder is not writable"
            if reason:
                raise self._uncreatable(reason)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            raise self._uncreatable(str(exc))
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            if mode.lower() != "wal":
                log.warning("Store %s: journal mode is %s, not WAL", self.path, mode)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc)
        return conn

    def _uncreatable(self, reason: str) -> StoreError:
        return StoreError(f"cannot create the store {self.path}: {reason} (set `store:` in the "
                          "config to a writable place)", 2)  # fmt: skip

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"the store {self.path} is locked by another process ({text})")
        return StoreError(f"the store {self.path} is not a usable SQLite database ({text}); "
                          "restore a backup or move it away")  # fmt: skip

    def migrate(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS immp_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM immp_schema").fetchone()
            version = row[0] or 0
            if version > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise StoreError(f"the store {self.path} has schema version {version}, newer "
                                 f"than this IMMP knows ({SCHEMA_VERSION}): upgrade IMMP or "
                                 "set `store:` to another database", 2)  # fmt: skip
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute("DELETE FROM immp_schema")
                conn.execute("INSERT INTO immp_schema (version) VALUES (?)", (step,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._unusable(exc)
        if version and version < SCHEMA_VERSION:
            log.warning("Store %s: schema migrated from version %d to %d", self.path, version,
                        SCHEMA_VERSION)  # fmt: skip
        self._scopes = {}

    def _scope(self, conn: sqlite3.Connection, area: str, create: bool) -> int | None:
        scope = self._scopes.get(area)
        if scope is None:
            row = conn.execute(
                "SELECT id FROM scopes WHERE namespace = ? AND area = ?", (self.namespace, area)
            ).fetchone()
            if row is None:
                if not create:
                    return None
                row = conn.execute(
                    "INSERT INTO scopes (namespace, area) VALUES (?, ?) RETURNING id",
                    (self.namespace, area),
                ).fetchone()
            scope = self._scopes[area] = row[0]
        return scope

    def write(self, conn: sqlite3.Connection, batch: WriteBatch) -> None:
        now = time.time()
        # Per scope (one per plug or hook that wrote): {scope: [puts, deletes, entries, ids]}.
        scopes: dict[str, list[list]] = {}
        for (area, key), text in batch.state.items():
            rows = scopes.get(area) or scopes.setdefault(area, [[], [], [], []])
            if text is None:
                rows[1].append(key)
            else:
                rows[0].append((key, text))
        for (area, key), (entry, indexed) in batch.messages.items():
            rows = scopes.get(area) or scopes.setdefault(area, [[], [], [], []])
            # (json_extract gives the entry back as JSON text: encoded once, with the rest)
            rows[2].append((key, entry() if callable(entry) else entry))
            if indexed:
                rows[3].extend([(channel, id, key) for channel, id in indexed])
        conn.execute("BEGIN")
        try:
            # One statement per table and scope, its rows as one JSON parameter: sqlite3 lets
            # go of the GIL around every statement it runs, and each time the loop's thread,
            # busy with messages, may keep it for a switch interval (5 ms); a row at a time,
            # this thread fell behind under load.
            for area, (puts, deletes, entries, ids) in scopes.items():
                scope = self._scope(conn, area, True)
                if puts:
                    conn.execute(_UPSERT_STATE, (_rows(puts), scope))
                if deletes:
                    conn.execute(_DELETE_STATE, (_rows(deletes), scope))
                if entries:
                    conn.execute(_UPSERT_MESSAGES, (_rows(entries), scope, now))
                if ids:
                    conn.execute(_UPSERT_IDS, (_rows(ids), scope, now))
            if batch.journal:
                self._write_journal(conn, batch.journal)
            conn.execute("COMMIT")
        except BaseException:
            self._scopes = {}  # scopes made in this transaction are gone with it
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write_journal(self, conn: sqlite3.Connection, journal) -> None:
        ns = self.namespace
        if journal.done:
            done = _rows(list(journal.done))
            conn.execute(_DELETE_JOURNAL, (done, ns))
            conn.execute(_DELETE_DELIVERIES, (done, ns))
        if journal.entries:
            # A message given as a function is JSON-ready data: encoded here, once, with its
            # row, and json_extract gives its text back (as for the message map's entries).
            rows = [(key, int(created * 1000000), message() if callable(message) else message)
                    for key, (created, message) in journal.entries.items()]  # fmt: skip
            conn.execute(_INSERT_JOURNAL, (_rows(rows), ns))
        if journal.deliveries:
            rows = [(entry, delivery, state) for entry, states in journal.deliveries.items()
                    for delivery, state in states.items()]  # fmt: skip
            conn.execute(_UPSERT_DELIVERIES, (_rows(rows), ns))

    def read_journal(self, conn: sqlite3.Connection):
        entries = conn.execute(
            "SELECT key, created, message FROM journal WHERE namespace = ? ORDER BY seq",
            (self.namespace,),
        ).fetchall()
        deliveries = conn.execute(
            "SELECT entry, delivery, state FROM journal_deliveries WHERE namespace = ?",
            (self.namespace,),
        ).fetchall()
        return entries, deliveries

    def read_state(self, conn: sqlite3.Connection, area: str, key: str) -> str | None:
        scope = self._scope(conn, area, False)
        if scope is None:
            return None
        row = conn.execute(
            "SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        return row[0] if row else None

    def read_message(self, conn: sqlite3.Connection, area: str, channel: str, id: str):
        scope = self._scope(conn, area, False)
        if scope is None:
            return None
        row = (
            conn.execute(
                "SELECT m.entry FROM message_ids i JOIN messages m ON m.scope = i.scope"
                " AND m.key = i.key WHERE i.scope = ? AND i.channel = ? AND i.id = ?",
                (scope, channel, id),
            ).fetchone()
            or conn.execute(
                "SELECT entry FROM messages WHERE scope = ? AND key = ?",
                (scope, message_key(channel, id)),
            ).fetchone()
        )
        return json.loads(row[0]) if row else None

    def prune(self, conn: sqlite3.Connection, before: float) -> int:
        conn.execute("BEGIN")
        try:
            scopes = "SELECT id FROM scopes WHERE namespace = ?"
            gone = conn.execute(
                f"DELETE FROM messages WHERE scope IN ({scopes}) AND created < ?",
                (self.namespace, before),
            ).rowcount
            conn.execute(
                f"DELETE FROM message_ids WHERE scope IN ({scopes}) AND created < ?",
                (self.namespace, before),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if gone:
            log.info("Store %s: pruned %d message entries past retention", self.path, gone)
        return gone

    def disconnect(self, conn: sqlite3.Connection) -> None:
        conn.close()
