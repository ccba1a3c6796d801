"""
The journal on every store that keeps one: ``new_store`` and ``store_url`` are parametrized
over the backends (memory, SQLite, PostgreSQL on the session's real server), so that one test
says what each of them must do.
"""

from __future__ import annotations

import pytest
from immp_store_postgres import PostgresStore

import immp

BACKENDS = ["memory", "sqlite", "postgresql"]
#: The backends whose journal outlives the process.
DURABLE = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def new_store(request, tmp_path):
    """
    ``new_store(namespace="bridge")``: a store (not opened) on the test's one database, a new
    object each call, as a process started again would make. The memory store has no
    database: each namespace's call gives its one instance again.
    """
    if request.param == "memory":
        stores: dict[str, immp.MemoryStore] = {}
        return lambda namespace="bridge": stores.setdefault(
            namespace, immp.MemoryStore(namespace=namespace)
        )
    if request.param == "sqlite":
        path = tmp_path / "bridge.db"
        return lambda namespace="bridge": immp.SQLiteStore(path, namespace=namespace)
    url = request.getfixturevalue("pg_url")
    return lambda namespace="bridge": PostgresStore.from_url(url, None, namespace=namespace)


@pytest.fixture(params=DURABLE)
def store_url(request, tmp_path) -> str:
    """The ``store:`` of a real ``immp`` process: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bridge.db'}"
    return request.getfixturevalue("pg_url")
