"""
IMMP store backend on PostgreSQL: ``store: postgresql://user@host:port/db`` in the config.

URL query options (besides libpq's own, such as ``sslmode``):
    namespace (str, default the config file's name without extension):
        This instance's rows; several ``immp`` processes on one database each need their own
        (a second process on a namespace in use is refused at start).
    retention-days (float, default 30):
        Message-map entries older than this are pruned (hourly, and at start).
    cache-size (int, default 10000):
        State values held in memory in front of the database.
    max-queue (int, default 100000):
        Writes held while the database is unreachable; beyond it the oldest are dropped.

The password, if any, belongs in the URL or in libpq's ``~/.pgpass``/``PGPASSWORD``; it is never
logged.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._store import PostgresStore

__all__ = ["PostgresStore"]


def __getattr__(name: str):
    # Imported when first used, not when plugin discovery loads the entry point (psycopg takes
    # tens of milliseconds to import, on every ``immp`` start).
    if name == "PostgresStore":
        from ._store import PostgresStore

        return PostgresStore
    raise AttributeError(name)
