"""
The PostgreSQL store: ``store: postgresql://user@host:port/db``.

psycopg 3's synchronous API in the thread the store owns (:class:`immp.ThreadedStore`: its async
API needs asyncio), one connection, every queued write of a round sent in pipeline mode inside
one transaction, one statement per table with the rows as arrays. Tables are prefixed
``immp_`` (the database may hold other things), and every row belongs to a scope of this
instance's ``namespace``: several ``immp`` processes share one database without reading or
overwriting each other's rows.

Tables (schema version in ``immp_schema``; see ``MIGRATIONS``)::

    immp_scopes(id, namespace, area)                  one row per instance and plug/hook name
    immp_state(scope, key, value)                     self.state: JSON text per key
    immp_messages(scope, key, entry, created)         message-map entries (JSON) and their age
    immp_message_ids(scope, channel, id, key, created) every (channel, message ID) -> its entry
    immp_journal(seq, namespace, key, created, message) the journal's entries, in the order written
    immp_journal_deliveries(namespace, entry, delivery, state)  one row per target of an entry

The journal's writes (``host: journal: true``, :class:`immp.Journal`) go in the same transaction
as the state and message-map writes of their round: a plug's cursor saved after
``Plug.taken()`` is never committed before the entries it follows. What a commit survives is
the server's to say (``synchronous_commit``, ``fsync``): with the defaults (``on``), a committed
round survives a crash of the server's machine too.

One process at a time per namespace: every connection of the store takes a session-level
advisory lock (``pg_try_advisory_lock``) on a 64-bit hash of the namespace, which the server
lets go of when the session ends, however the process ended (``kill -9`` too). At open, a
namespace another session still holds after two seconds (a process stopped a moment ago may
keep its session a little longer) is refused (:class:`immp.StoreError`, status 1: the holder
may be on its way out, so a supervisor's restart may find it free). On a reconnect (the
connection was lost), the lock is taken again before anything is written:

- held by this store's own previous session, which the server has not yet noticed is gone (a
  network cut: it may take the server hours, per its TCP keepalives), that session is ended
  (``pg_terminate_backend``) and the lock taken;
- held by another process, which started on the namespace while this one was disconnected,
  nothing is written, and this process stops (:class:`immp.StoreError` with ``final``: the host
  logs it in one line and quits; ``immp`` exits 1): the other one bridges now, and two would
  copy every message twice. What this one still had queued for the store is lost, said in one
  line as it closes.

Behind a pooler that hands a session's statements to different server connections (PgBouncer's
transaction pooling) a session lock means nothing: connect directly, or with session pooling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.conninfo

import immp

log = logging.getLogger("immp.store")

#: Statements that bring a database from version N-1 to N, each version in one transaction.
#: Never edit a version that has shipped; add one.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE immp_scopes (id BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL,"
        " area TEXT NOT NULL, UNIQUE (namespace, area))",
        "CREATE TABLE immp_state (scope BIGINT NOT NULL REFERENCES immp_scopes (id),"
        " key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (scope, key))",
        "CREATE TABLE immp_messages (scope BIGINT NOT NULL REFERENCES immp_scopes (id),"
        " key TEXT NOT NULL, entry TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (scope, key))",
        "CREATE TABLE immp_message_ids (scope BIGINT NOT NULL REFERENCES immp_scopes (id),"
        " channel TEXT NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL,"
        " created DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, channel, id))",
        "CREATE INDEX immp_messages_created ON immp_messages (scope, created)",
        "CREATE INDEX immp_message_ids_created ON immp_message_ids (scope, created)",
    ],
    # The journal (immp.Journal): entries in the order written, and their deliveries. Keyed by
    # namespace, as SQLite's: an entry belongs to the instance, not to one plug or hook.
    2: [
        "CREATE TABLE immp_journal (seq BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL,"
        " key TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, message TEXT NOT NULL,"
        " UNIQUE (namespace, key))",
        "CREATE TABLE immp_journal_deliveries (namespace TEXT NOT NULL, entry TEXT NOT NULL,"
        " delivery TEXT NOT NULL, state SMALLINT NOT NULL,"
        " PRIMARY KEY (namespace, entry, delivery))",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)
# Any number: processes that migrate the same database at once take turns on it.
_MIGRATION_LOCK = 0x1D3F_5107
# The session that holds a namespace's lock (see the module docstring and _hold_namespace), with
# what pg_stat_activity says of it, for a refusal to name it.
_HOLDER = (
    "SELECT l.pid, a.backend_start, host(a.client_addr) FROM pg_locks l"
    " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1 AND l.granted"
)
# Seconds to wait at open for a namespace's holder to let go (one going away), and for a
# session that was ended to let go of its locks.
_HELD_GRACE = 2.0
_TERMINATE_WAIT = 5.0
# Options of the store itself in the URL's query; the rest are libpq's (sslmode=...).
_OWN = {"namespace", "retention", "cache_size", "max_queue"}
_OWN_IN_URL = {"namespace", "retention-days", "cache-size", "max-queue"}


def namespace_key(namespace: str) -> int:
    """
    The advisory lock key of ``namespace``: a signed 64-bit hash of it, the same in every
    process and version (a change would let an old and a new IMMP run on one namespace).
    """
    digest = hashlib.blake2b(namespace.encode(), digest_size=8, person=b"immp-namespace")
    return int.from_bytes(digest.digest(), "big", signed=True)


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as one list per column (for unnest), the first ``width`` columns."""
    return [[row[i] for row in rows] for i in range(width)]


_UPSERT_STATE = (
    "INSERT INTO immp_state (scope, key, value)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[])"
    " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value"
)
_DELETE_STATE = (
    "DELETE FROM immp_state WHERE (scope, key) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))"
)
_UPSERT_MESSAGES = (
    "INSERT INTO immp_messages (scope, key, entry, created)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[])"
    " ON CONFLICT (scope, key) DO UPDATE SET entry = excluded.entry"
)
_UPSERT_IDS = (
    "INSERT INTO immp_message_ids (scope, channel, id, key, created)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[])"
    " ON CONFLICT (scope, channel, id) DO UPDATE SET key = excluded.key, created = excluded.created"
)
# The journal's: the namespace is one parameter (%s first), the rows arrays as above.
_DELETE_JOURNAL = "DELETE FROM immp_journal WHERE namespace = %s AND key = ANY(%s::text[])"
_DELETE_DELIVERIES = (
    "DELETE FROM immp_journal_deliveries WHERE namespace = %s AND entry = ANY(%s::text[])"
)
# Inserted in the arrays' order, so that seq follows the order the entries were journaled in.
_INSERT_JOURNAL = (
    "INSERT INTO immp_journal (namespace, key, created, message) SELECT %s, k, c, m"
    " FROM unnest(%s::text[], %s::float8[], %s::text[]) WITH ORDINALITY AS t (k, c, m, n)"
    " ORDER BY n ON CONFLICT (namespace, key) DO NOTHING"
)
_UPSERT_DELIVERIES = (
    "INSERT INTO immp_journal_deliveries (namespace, entry, delivery, state)"
    " SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::smallint[])"
    " ON CONFLICT (namespace, entry, delivery) DO UPDATE SET state = excluded.state"
)


# What a server says when it refuses the config's database, role or password: a retry will not
# help. Any other refusal (starting up, too many connections, a timeout, another language) is
# retried until the open timeout.
_REFUSED = ("does not exist", "password authentication failed", "no pg_hba.conf entry",
            "not permitted to log in", "permission denied for database",
            "no password supplied")  # fmt: skip


class PostgresStore(immp.ThreadedStore):
    """A PostgreSQL database; see the module docstring. ``conninfo`` is a libpq URL or string."""

    scheme = "postgresql"

    def __init__(self, conninfo: str, **options: Any):
        super().__init__(**options)
        self.conninfo = conninfo
        self._scopes: dict[str, int] = {}
        self._key = namespace_key(self.namespace)
        # (pid, backend_start) of the session that last took the namespace's lock, since open.
        self._session: tuple[int, Any] | None = None
        self._ending: int | None = None  # the server pid of that session, being ended
        parts = urlsplit(conninfo)
        where = parts.hostname or "localhost"
        self._where = f"{parts.username + '@' if parts.username else ''}{where}" + (
            f":{parts.port}" if parts.port else ""
        ) + (parts.path or "")  # fmt: skip

    @classmethod
    def from_url(cls, url: str, base: Path | None, **options: Any) -> PostgresStore:
        own = {k: v for k, v in options.items() if k in _OWN}
        parts = urlsplit(url)
        libpq = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OWN_IN_URL]
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), ""))
        try:
            psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise immp.ConfigError(f"not a PostgreSQL URL libpq takes: {exc}", "store")
        return cls(conninfo, **own)

    def describe(self) -> str:
        return f"postgresql {self._where} (namespace {self.namespace})"

    # -- in the store's thread ------------------------------------------------------------------

    def connect(self, deadline: float) -> psycopg.Connection:
        conn = self._connect(deadline)
        try:
            self._hold_namespace(conn, deadline)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self, deadline: float) -> psycopg.Connection:
        said = False
        while True:
            left = deadline - time.monotonic()
            try:
                # (The application name shows in pg_stat_activity, unless the URL sets one.)
                return psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    connect_timeout=max(1, min(10, int(left))),
                    fallback_application_name="immp",
                )
            except psycopg.Error as exc:
                # libpq's text: a line per address tried, then hints ("Is the server running
                # on that host...?"); all of it, on one line.
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                reason = "; ".join(lines)[:400] or type(exc).__name__
                if any(words in reason for words in _REFUSED):
                    # The server answered and refused (no such database or role, a password,
                    # pg_hba.conf): trying again will not help, the config must change.
                    raise immp.StoreError(f"PostgreSQL at {self._where} refused the "
                                          f"connection: {reason} (check `store:` in the "
                                          "config)", 2)  # fmt: skip
                if time.monotonic() + 0.5 >= deadline:
                    if said or left > 0:
                        raise immp.StoreError(f"PostgreSQL at {self._where} unreachable: "
                                              f"{reason}; gave up at the open timeout")  # fmt: skip
                    raise
                if not said:
                    said = True
                    log.warning("PostgreSQL at %s unreachable (%s): retrying until the open "
                                "timeout (%.0fs)", self._where, reason, left)  # fmt: skip
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _hold_namespace(self, conn: psycopg.Connection, deadline: float) -> None:
        """Take this namespace's lock on ``conn`` (see the module docstring), or StoreError."""
        # A holder stopped or killed a moment ago (a restart) may still have its session on the
        # server for a moment: at open, that moment is waited for (a reconnect retries anyway).
        if not self._lock_until(conn, min(deadline, time.monotonic() + _HELD_GRACE)):
            holder = conn.execute(_HOLDER, self._lock_parts()).fetchone()
            if holder is None or tuple(holder[:2]) != self._session:
                raise self._held_by(holder)
            # This store's own session from before the connection was lost, still there.
            if holder[0] != self._ending:  # (said once, if ending it is refused and retried)
                self._ending = holder[0]
                log.warning("Store %s: ending this store's previous session (server pid %s), "
                            "which still holds the namespace", self.describe(),
                            holder[0])  # fmt: skip
            conn.execute("SELECT pg_terminate_backend(%s)", (holder[0],))
            if not self._lock_until(conn, time.monotonic() + _TERMINATE_WAIT):
                raise immp.StoreError(f"this store's previous session (server pid {holder[0]}) "
                                      f"still holds namespace {self.namespace}: not ended "
                                      "yet")  # fmt: skip
        self._session = tuple(conn.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone())  # fmt: skip

    def _lock_until(self, conn: psycopg.Connection, until: float) -> bool:
        """Try for the namespace's lock until ``until`` (``time.monotonic()``); got it?"""
        while True:
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]:
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(0.05)

    def _lock_parts(self) -> tuple[int, int]:
        # pg_locks shows a bigint key as two unsigned 32-bit halves: classid, objid.
        unsigned = self._key & 0xFFFF_FFFF_FFFF_FFFF
        return unsigned >> 32, unsigned & 0xFFFF_FFFF

    def _held_by(self, holder: tuple | None) -> immp.StoreError:
        who = ""
        if holder is not None:  # (what pg_stat_activity shows this role of another's session)
            who = f" (server pid {holder[0]}" + (f", from {holder[2]}" if holder[2] else "")
            if holder[1] is not None:
                who += f", since {holder[1].astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            who += ")"
        if self._session is None:
            return immp.StoreError(f"another immp process is using namespace {self.namespace} of "
                                   f"the store postgresql {self._where}{who}; stop it, or give "
                                   "this config its own `store:` namespace "
                                   "(?namespace=NAME)")  # fmt: skip
        return immp.StoreError(f"Store {self.describe()}: another immp process took the "
                               f"namespace{who} while this one was disconnected; this one stops "
                               "(two would copy every message twice)", final=True)  # fmt: skip

    def migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS immp_schema (version INTEGER NOT NULL)")
            version = conn.execute("SELECT max(version) FROM immp_schema").fetchone()[0] or 0
            if version > SCHEMA_VERSION:
                raise immp.StoreError(
                    f"the store {self.describe()} has schema version {version}, newer than this "
                    f"IMMP knows ({SCHEMA_VERSION}): upgrade IMMP or set `store:` to another "
                    "database",
                    2,
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute("DELETE FROM immp_schema")
                conn.execute("INSERT INTO immp_schema (version) VALUES (%s)", (step,))
        if version and version < SCHEMA_VERSION:
            log.warning("Store %s: schema migrated from version %d to %d", self.describe(),
                        version, SCHEMA_VERSION)  # fmt: skip
        self._scopes = {}

    def _scope(self, conn: psycopg.Connection, area: str, create: bool) -> int | None:
        scope = self._scopes.get(area)
        if scope is not None:
            return scope
        row = conn.execute(
            "SELECT id FROM immp_scopes WHERE namespace = %s AND area = %s", (self.namespace, area)
        ).fetchone()
        if row is None and create:
            # Committed on its own (autocommit), so a rolled-back batch leaves no stale id here.
            conn.execute(
                "INSERT INTO immp_scopes (namespace, area) VALUES (%s, %s)"
                " ON CONFLICT (namespace, area) DO NOTHING",
                (self.namespace, area),
            )
            row = conn.execute(
                "SELECT id FROM immp_scopes WHERE namespace = %s AND area = %s",
                (self.namespace, area),
            ).fetchone()
        if row is None:
            return None
        scope = self._scopes[area] = row[0]
        return scope

    def write(self, conn: psycopg.Connection, batch: immp.WriteBatch) -> None:
        now = time.time()
        # Scopes first: they need an answer, which a pipeline would wait for.
        for area in {area for area, _ in batch.state} | {area for area, _ in batch.messages}:
            self._scope(conn, area, True)
        puts, deletes = [], []
        for (area, key), text in batch.state.items():
            (deletes if text is None else puts).append((self._scopes[area], key, text))
        entries = []
        ids: dict[tuple, tuple] = {}  # one row per (scope, channel, id): an upsert may not
        for area, key, entry, indexed in batch.entries():  # touch a row twice
            scope = self._scopes[area]
            entries.append((scope, key, entry, now))  # (entries() gives the JSON text)
            for channel, id in indexed:
                ids[(scope, channel, id)] = (scope, channel, id, key, now)
        # One statement per table and batch, the rows as arrays (unnest): psycopg sends each
        # array in one go, where a row at a time costs Python work per row.
        with conn.transaction(), conn.pipeline():
            if puts:
                conn.execute(_UPSERT_STATE, _columns(puts, 3))
            if deletes:
                conn.execute(_DELETE_STATE, _columns(deletes, 2))
            if entries:
                conn.execute(_UPSERT_MESSAGES, _columns(entries, 4))
            if ids:
                conn.execute(_UPSERT_IDS, _columns(list(ids.values()), 5))
            if batch.journal:
                self._write_journal(conn, batch.journal)

    def _write_journal(self, conn: psycopg.Connection, journal: immp.JournalBatch) -> None:
        # In the pipeline and transaction of write(); the order is SQLite's: what is done goes
        # first, then the new entries, then the deliveries' states.
        ns = self.namespace
        if journal.done:
            done = list(journal.done)
            conn.execute(_DELETE_JOURNAL, (ns, done))
            conn.execute(_DELETE_DELIVERIES, (ns, done))
        if journal.entries:
            rows = journal.entry_rows()
            conn.execute(_INSERT_JOURNAL, (ns, *_columns(rows, 3)))
        if journal.deliveries:
            conn.execute(_UPSERT_DELIVERIES, (ns, *_columns(journal.delivery_rows(), 3)))

    def read_journal(self, conn: psycopg.Connection):
        entries = conn.execute(
            "SELECT key, created, message FROM immp_journal WHERE namespace = %s ORDER BY seq",
            (self.namespace,),
        ).fetchall()
        deliveries = conn.execute(
            "SELECT entry, delivery, state FROM immp_journal_deliveries WHERE namespace = %s",
            (self.namespace,),
        ).fetchall()
        return entries, deliveries

    def read_state(self, conn: psycopg.Connection, area: str, key: str) -> str | None:
        scope = self._scope(conn, area, False)
        if scope is None:
            return None
        row = conn.execute(
            "SELECT value FROM immp_state WHERE scope = %s AND key = %s", (scope, key)
        ).fetchone()
        return row[0] if row else None

    def read_message(self, conn: psycopg.Connection, area: str, channel: str, id: str):
        scope = self._scope(conn, area, False)
        if scope is None:
            return None
        row = (
            conn.execute(
                "SELECT m.entry FROM immp_message_ids i JOIN immp_messages m ON m.scope = i.scope"
                " AND m.key = i.key WHERE i.scope = %s AND i.channel = %s AND i.id = %s",
                (scope, channel, id),
            ).fetchone()
            or conn.execute(
                "SELECT entry FROM immp_messages WHERE scope = %s AND key = %s",
                (scope, immp.message_key(channel, id)),
            ).fetchone()
        )
        return json.loads(row[0]) if row else None

    def prune(self, conn: psycopg.Connection, before: float) -> int:
        scopes = "SELECT id FROM immp_scopes WHERE namespace = %s"
        with conn.transaction():
            gone = conn.execute(
                f"DELETE FROM immp_messages WHERE scope IN ({scopes}) AND created < %s",
                (self.namespace, before),
            ).rowcount
            conn.execute(
                f"DELETE FROM immp_message_ids WHERE scope IN ({scopes}) AND created < %s",
                (self.namespace, before),
            )
        if gone:
            log.info("Store %s: pruned %d message entries past retention", self.describe(), gone)
        return gone

    def disconnect(self, conn: psycopg.Connection) -> None:
        conn.close()  # (the server lets go of the namespace's lock with the session)

    def release(self) -> None:
        self._session = self._ending = None  # a store opened again holds it anew
