"""A real PostgreSQL server per session (skipped without the binaries, except under CI)."""

from __future__ import annotations

import itertools
import os

import pytest

from .postgres import PostgresServer, binaries

_databases = itertools.count(1)


def _bindir():
    bindir = binaries()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing; .ci/run installs them")
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    return bindir


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server shared by the session."""
    server = PostgresServer(_bindir())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(postgres) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.create_database(f"immp_test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def own_postgres():
    """A server of the test's own, which it may stop and start."""
    server = PostgresServer(_bindir())
    try:
        server.start()
        yield server
    finally:
        server.remove()
