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

One process at a time per namespace: while open, the store holds an exclusive ``flock`` on a
file beside the database named after it and the namespace (``bridge.db.bridge.lock`` for
namespace ``bridge``), and refuses to open, as :class:`~immp.StoreError` (status 1), a namespace
whose file another process holds. The kernel lets go of it when the process ends, however it
ends (``kill -9`` too), so a stale file never stops a start; other namespaces of the same file
run beside it. The file is never removed (removing it while its holder runs would let a second
process in); its text names the holder's pid and host. On a file system without locks (some
network ones) the store says so and runs without the hold, as before there was one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._store import StoreError, json_text, message_key
from ._store_thread import ThreadedStore, WriteBatch

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Unix: no namespace lock (see SQLiteStore.hold)
    fcntl = None

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


# A batch's rows go to SQLite as bound parameters of one multi-row VALUES per statement, not as
# JSON: binding is a C loop over the values, where JSON cost the store's thread (which holds the
# GIL meanwhile) an encoding of every string (channel keys' U+001F is escaped as \u001f), and
# SQLite a parse and an extraction per column. One statement per table, scope and chunk of
# rows: sqlite3 lets go of the GIL around every statement it runs, and each time the loop's
# thread, busy with messages, may keep it for a switch interval (5 ms); a row at a time, this
# thread fell behind under load. A statement's rows come in a few fixed sizes, padded with rows
# that its LIMIT leaves out, so that each size is compiled once (sqlite3 caches statements by
# their text). In each template, ?1.. are the parameters every row shares, the next one the
# LIMIT (the rows given), and {rows} the VALUES.
_CHUNKS = (16, 64, 256, 1024)

_UPSERT_STATE = (
    "INSERT INTO state (scope, key, value) SELECT ?1, column1, column2 FROM (VALUES {rows})"
    " WHERE true LIMIT ?2 ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value"
)
_DELETE_STATE = (
    "DELETE FROM state WHERE scope = ?1 AND key IN (SELECT column1 FROM (VALUES {rows}) LIMIT ?2)"
)
_UPSERT_MESSAGES = (
    "INSERT INTO messages (scope, key, entry, created) SELECT ?1, column1, column2, ?2"
    " FROM (VALUES {rows}) WHERE true LIMIT ?3"
    " ON CONFLICT (scope, key) DO UPDATE SET entry = excluded.entry"
)
_UPSERT_IDS = (
    "INSERT INTO message_ids (scope, channel, id, key, created)"
    " SELECT ?1, column1, column2, column3, ?2 FROM (VALUES {rows}) WHERE true LIMIT ?3"
    " ON CONFLICT (scope, channel, id) DO UPDATE SET key = excluded.key, created = excluded.created"
)

# The journal's: the namespace every row shares is one parameter (?1), as the scope is above.
_DELETE_JOURNAL = (
    "DELETE FROM journal WHERE namespace = ?1"
    " AND key IN (SELECT column1 FROM (VALUES {rows}) LIMIT ?2)"
)
_DELETE_DELIVERIES = (
    "DELETE FROM journal_deliveries WHERE namespace = ?1"
    " AND entry IN (SELECT column1 FROM (VALUES {rows}) LIMIT ?2)"
)
# VALUES gives its rows in order (and the chunks run in order), so seq follows the order the
# entries were journaled in.
_INSERT_JOURNAL = (
    "INSERT OR IGNORE INTO journal (namespace, key, created, message)"
    " SELECT ?1, column1, column2, column3 FROM (VALUES {rows}) LIMIT ?2"
)
_UPSERT_DELIVERIES = (
    "INSERT INTO journal_deliveries (namespace, entry, delivery, state)"
    " SELECT ?1, column1, column2, column3 FROM (VALUES {rows}) WHERE true LIMIT ?2"
    " ON CONFLICT (namespace, entry, delivery) DO UPDATE SET state = excluded.state"
)
_WIDEST = 3  # values per row, at most, in the statements above
# Padding: 0, not None, which sqlite3 binds only after looking for an adapter (thousands of
# instructions per value).
_PADDING = (0,) * (_CHUNKS[-1] * _WIDEST)


def _file_part(namespace: str) -> str:
    """``namespace`` as a part of a file name: as it is if it is short and plain, else made so
    and told apart from other namespaces by a hash of it."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", namespace):
        return namespace
    digest = hashlib.blake2b(namespace.encode(), digest_size=4).hexdigest()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", namespace)[:40] + "-" + digest


@functools.cache
def _statement(template: str, width: int, shared: int, rows: int) -> str:
    """``template`` with ``rows`` rows of ``width`` parameters, numbered after ``shared`` + 1."""
    numbers = iter(range(shared + 2, shared + 2 + rows * width))
    values = ",".join("(" + ",".join(f"?{next(numbers)}" for _ in range(width)) + ")"
                      for _ in range(rows))  # fmt: skip
    return template.format(rows=values)


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
        self._chunks = _CHUNKS  # rows per statement (see _CHUNKS), within this SQLite's limit
        self._held: int | None = None  # the lock file's descriptor, while the store is open

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

    def check(self) -> None:
        folder = self.path.parent
        if not self.path.exists():
            reason = None
            if not folder.is_dir():
                reason = f"no folder {folder}"
            elif not os.access(folder, os.W_OK | os.X_OK):
                reason = "the folder is not writable"
            if reason:
                raise self._uncreatable(reason)
        elif not (os.access(self.path, os.R_OK | os.W_OK) and os.access(folder, os.W_OK)):
            raise self._unwritable("this user cannot write it or its folder")

    @property
    def lock_path(self) -> Path:
        """The file this store's namespace is locked on, beside the database (see the module)."""
        return self.path.with_name(f"{self.path.name}.{_file_part(self.namespace)}.lock")

    def hold(self) -> None:
        self.check()
        if fcntl is None:
            return
        path = self.lock_path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._uncreatable(f"cannot create {path.name}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f" (pid {holder[0]} on {holder[1]})" if len(holder) == 2 else ""
            raise StoreError(f"another immp process is using namespace {self.namespace} of the "
                             f"store sqlite {self.path}{who}; stop it, or give this config its "
                             "own `store:` namespace (?namespace=NAME)") from None  # fmt: skip
        except OSError as exc:
            # A file system without locks (some network ones): run, as before there were any.
            os.close(fd)
            log.warning("Store %s: cannot lock %s (%s): a second immp process on this "
                        "namespace would not be refused", self.describe(), path,
                        exc.strerror)  # fmt: skip
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass  # only what the refusal of another process says about this one
        self._held = fd

    def release(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            os.close(fd)  # the lock goes with the last descriptor of its open file

    def connect(self, deadline: float) -> sqlite3.Connection:
        self.check()
        try:
            # A new file is made readable by its owner only, whatever the umask: it holds chat
            # text (the journal) and who said what. SQLite gives its -wal and -shm files the
            # database file's mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError:
            pass  # sqlite3.connect says why, below
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
            # Before SQLite 3.32, at most 999 parameters per statement (and 2 shared + a LIMIT).
            most = (conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 3) // _WIDEST
            self._chunks = tuple(sorted({min(size, most) for size in _CHUNKS}))
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc)
        return conn

    def _uncreatable(self, reason: str) -> StoreError:
        return StoreError(f"cannot create the store {self.path}: {reason} (set `store:` in the "
                          "config to a writable place)", 2)  # fmt: skip

    def _unwritable(self, reason: str) -> StoreError:
        return StoreError(f"cannot write the store {self.path} ({reason}): let this user write "
                          "the file and its folder, or set `store:` in the config to a writable "
                          "place", 2)  # fmt: skip

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"the store {self.path} is locked by another process ({text}); "
                              "stop it, or raise `store:`'s busy-timeout")  # fmt: skip
        if "readonly" in text or "read-only" in text:  # the file, or its folder (its -wal file)
            return self._unwritable(text)
        return StoreError(f"the store {self.path} is not a usable SQLite database ({text}); "
                          "restore a backup or move it away, or set `store:` in the config to "
                          "another file")  # fmt: skip

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
        # Per scope (one per plug or hook that wrote): {scope: [puts, deletes, entries, ids]},
        # each the rows' values one after another (see _rows).
        scopes: dict[str, list[list]] = {}
        for (area, key), text in batch.state.items():
            rows = scopes.get(area) or scopes.setdefault(area, [[], [], [], []])
            if text is None:
                rows[1].append(key)
            else:
                rows[0] += (key, text)
        for (area, key), (entry, indexed) in batch.messages.items():
            rows = scopes.get(area) or scopes.setdefault(area, [[], [], [], []])
            rows[2] += (key, json_text(entry))
            for channel, id in indexed:
                rows[3] += (channel, id, key)
        conn.execute("BEGIN")
        try:
            for area, (puts, deletes, entries, ids) in scopes.items():
                scope = self._scope(conn, area, True)
                if puts:
                    self._rows(conn, _UPSERT_STATE, 2, puts, scope)
                if deletes:
                    self._rows(conn, _DELETE_STATE, 1, deletes, scope)
                if entries:
                    self._rows(conn, _UPSERT_MESSAGES, 2, entries, scope, now)
                if ids:
                    self._rows(conn, _UPSERT_IDS, 3, ids, scope, now)
            if batch.journal:
                self._write_journal(conn, batch.journal)
            conn.execute("COMMIT")
        except BaseException:
            self._scopes = {}  # scopes made in this transaction are gone with it
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _rows(self, conn: sqlite3.Connection, template: str, width: int, values: list,
              *shared: Any) -> None:  # fmt: skip
        """Run ``template`` (see _CHUNKS) over rows of ``width`` values, one after another."""
        count = len(values) // width
        chunks = self._chunks
        done = 0
        while done < count:
            left = count - done
            size = chunks[-1]
            for fits in chunks:
                if fits >= left:
                    size = fits
                    break
            take = min(left, size)
            params = (*shared, take, *values[done * width : (done + take) * width])
            if take < size:
                params += _PADDING[: (size - take) * width]
            conn.execute(_statement(template, width, len(shared), size), params)
            done += take

    def _write_journal(self, conn: sqlite3.Connection, journal) -> None:
        ns = self.namespace
        if journal.done:
            done = list(journal.done)
            self._rows(conn, _DELETE_JOURNAL, 1, done, ns)
            self._rows(conn, _DELETE_DELIVERIES, 1, done, ns)
        if journal.entries:
            rows = []
            for row in journal.entry_rows():  # (a message given as data is encoded here)
                rows += row
            self._rows(conn, _INSERT_JOURNAL, 3, rows, ns)
        if journal.deliveries:
            rows = []
            for row in journal.delivery_rows():
                rows += row
            self._rows(conn, _UPSERT_DELIVERIES, 3, rows, ns)

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
