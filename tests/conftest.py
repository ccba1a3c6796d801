"""Fixtures shared by every test folder."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from immp_store_postgres.testing import PostgresServer, binaries

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def immp_command():
    """Run the real ``immp`` console script as a subprocess: ``immp_command(*args, **kw)``."""

    def run(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_immp_exe(), *args], capture_output=True, text=True, timeout=timeout, **kwargs
        )

    return run


def _immp_exe() -> str:
    exe = Path(sys.executable).parent / "immp"
    return str(exe) if exe.exists() else "immp"


@pytest.fixture
def immp_exe() -> str:
    """Path of the installed ``immp`` console script."""
    return _immp_exe()


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for subprocesses, without anything that changes Python's output."""
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return env


# -- a real PostgreSQL server (skipped without the binaries, except under CI) --------------

_databases = itertools.count(1)


@contextlib.contextmanager
def _server():
    bindir = binaries()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing; .ci/run installs them")
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server shared by the session."""
    with _server() as server:
        yield server


@pytest.fixture
def pg_url(postgres) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.create_database(f"immp_test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def own_postgres():
    """A server of the test's own, which it may stop and start."""
    with _server() as server:
        yield server
