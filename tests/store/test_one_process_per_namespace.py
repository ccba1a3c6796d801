"""
One live process per store namespace: a second ``immp`` on the same SQLite file and namespace,
or the same PostgreSQL database and namespace, is refused with one line and exit status 1;
other namespaces run beside it; the hold ends with the process (``kill -9`` too). On
PostgreSQL, a reconnect takes the namespace again from this store's own session that the
server has not noticed is gone; one that another process took meanwhile stops this process.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import signal
import socket
import threading
import time

import psycopg
import pytest
import trio
import yaml
from immp_store_postgres import PostgresStore

import immp
from tests.demo.console import Console, console_config


def _says_refused(line: str, namespace: str, store: str) -> None:
    """``line`` is the refusal: the namespace, the store, (who holds it,) what to do."""
    named = f"another immp process is using namespace {namespace} of the store {store}"
    assert named in line, line
    assert line.endswith("; stop it, or give this config its own `store:` namespace "
                         "(?namespace=NAME)"), line  # fmt: skip


def _refusal(result) -> str:
    """The one error line of a refused ``immp`` run (exit 1, no traceback)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("immp: error:")]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def _bridges(console: Console, text: str) -> None:
    """``console`` is running and bridging: what is typed reaches its peer."""
    console.type(text)
    console.expect(f"[peer] <alice> {text}")


def _three_processes(tmp_path, immp_exe, immp_command, clean_env, store, described, held):
    """
    The scenario on one store (``store``: the config's ``store:`` value, ``described``: how the
    refusal names it; ``held()``: whether namespace ``console`` is held, as the store sees it).
    """
    config = console_config(tmp_path)  # namespace "console"
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "store": store}))
    other = tmp_path / "other.yaml"  # the same store, its own namespace
    sep = "&" if "?" in store else "?"
    other.write_text(yaml.safe_dump({**data, "store": f"{store}{sep}namespace=other"}))
    first = Console(immp_exe, config, clean_env, stderr=tmp_path / "first.err")
    beside = None
    try:
        _bridges(first, "first is up")
        # An operator starts the same config again: refused, and the first goes on unharmed.
        started = time.monotonic()
        line = _refusal(immp_command(str(config), timeout=30, env=clean_env))
        assert time.monotonic() - started < 20
        _says_refused(line, "console", described)
        _bridges(first, "first still bridges")
        # Another namespace of the same store runs beside it.
        beside = Console(immp_exe, other, clean_env, stderr=tmp_path / "other.err")
        _bridges(beside, "other namespace is up")
        _bridges(first, "both run")
        # kill -9: nothing of the process runs to let go of the namespace; the kernel (SQLite's
        # lock file) or the server (the session's lock) does.
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        deadline = time.monotonic() + 10
        while held() and time.monotonic() < deadline:
            time.sleep(0.05)
        again = Console(immp_exe, config, clean_env, stderr=tmp_path / "again.err")
        try:
            _bridges(again, "a new process after kill -9")
            assert again.stop() == 0, again.stderr
        finally:
            again.kill()
        assert "another immp process" not in again.stderr
        assert beside.stop() == 0, beside.stderr
    finally:
        first.kill()
        if beside is not None:
            beside.kill()


def test_sqlite_a_second_process_on_a_namespace_is_refused(tmp_path, immp_exe, immp_command,
                                                           clean_env):  # fmt: skip
    db = tmp_path / "console.db"

    def held() -> bool:
        with open(tmp_path / "console.db.console.lock", "a") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False

    _three_processes(tmp_path, immp_exe, immp_command, clean_env, "sqlite:console.db",
                     f"sqlite {db}", held)  # fmt: skip
    assert not held()
    # (The sidecar files beside the database, one per namespace; never removed.)
    assert {p.name for p in tmp_path.glob("*.lock")} == {"console.db.console.lock",
                                                         "console.db.other.lock"}  # fmt: skip


def test_postgres_a_second_process_on_a_namespace_is_refused(pg_url, tmp_path, immp_exe,
                                                             immp_command, clean_env):  # fmt: skip
    # The lock's key: a 64-bit hash of the namespace that must never change (an old and a new
    # IMMP would run on one namespace), as pg_locks shows it: two unsigned 32-bit halves.
    digest = hashlib.blake2b(b"console", digest_size=8, person=b"immp-namespace").digest()
    key = (int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:], "big"))
    where = pg_url.removeprefix("postgresql://")

    def held() -> bool:
        with psycopg.connect(pg_url) as conn:
            return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                " AND classid::bigint = %s AND objid::bigint = %s",
                                key).fetchone()[0] > 0  # fmt: skip

    _three_processes(tmp_path, immp_exe, immp_command, clean_env, pg_url,
                     f"postgresql {where}", held)  # fmt: skip
    assert not held()


# -- in one process: the stores themselves ------------------------------------------------------


async def test_sqlite_stores_hold_their_namespace_while_open(tmp_path):
    path = tmp_path / "s.db"
    one = immp.SQLiteStore(path, namespace="one")
    await one.open()
    with pytest.raises(immp.StoreError) as caught:
        await immp.SQLiteStore(path, namespace="one").open()
    assert caught.value.status == 1
    _says_refused(str(caught.value), "one", f"sqlite {path}")
    assert "(pid " in str(caught.value)  # the holder, as its lock file says
    odd = immp.SQLiteStore(path, namespace="eu/west 1")  # not a file name as it is
    await odd.open()
    assert odd.lock_path.parent == tmp_path and odd.lock_path.exists()
    await odd.close()
    await one.close()
    again = immp.SQLiteStore(path, namespace="one")  # closed: free at once
    await again.open()
    await again.close()


def _pg_store(url: str, namespace: str = "bridge") -> PostgresStore:
    store = PostgresStore.from_url(url, None, namespace=namespace)
    store.retry_interval = 0.2
    return store


def _value(url: str, namespace: str, area: str, key: str):
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT value FROM immp_state t JOIN immp_scopes s ON s.id = t.scope"
            " WHERE s.namespace = %s AND s.area = %s AND t.key = %s",
            (namespace, area, key),
        ).fetchone()
    return row and row[0]


async def test_postgres_stores_hold_their_namespace_while_open(pg_url):
    one = _pg_store(pg_url)
    await one.open()
    with pytest.raises(immp.StoreError) as caught:
        await _pg_store(pg_url).open()
    assert caught.value.status == 1
    where = pg_url.removeprefix("postgresql://")
    _says_refused(str(caught.value), "bridge", f"postgresql {where}")
    assert "(server pid " in str(caught.value)  # who holds it, as pg_stat_activity says
    other = _pg_store(pg_url, "other")
    await other.open()
    await other.close()
    await one.close()
    again = _pg_store(pg_url)
    await again.open()
    await again.close()


async def test_postgres_a_namespace_taken_while_disconnected_is_not_written(pg_url, caplog):
    # The server ends this store's session (a failover, an operator): its lock goes with it, and
    # a second process starts on the namespace meanwhile. This store must not write over it,
    # and says that its process must stop (on_final: the host quits, see the next test).
    caplog.set_level(logging.INFO, "immp.store")
    first = _pg_store(pg_url)
    finals = []
    first.on_final = finals.append
    await first.open()
    first.set("plug", "k", "first")
    await first.flush()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
    second = _pg_store(pg_url)
    await second.open()
    second.set("plug", "k", "second")
    await second.flush()
    first.set("plug", "k", "first, after")
    with trio.fail_after(20):
        while not finals:
            await trio.sleep(0.05)
    [error] = finals
    assert first.final_error is error and error.final and error.status == 1
    assert "another immp process took the namespace (server pid" in str(error), error
    assert str(error).endswith("this one stops (two would copy every message twice)"), error
    await trio.sleep(1.0)  # no retry writes it meanwhile
    assert _value(pg_url, "bridge", "plug", "k") == '"second"'
    await first.close()
    assert first.unwritten == 1
    closed = [r.getMessage() for r in caplog.records if "closed with" in r.getMessage()]
    assert closed == [f"Store {first.describe()}: closed with 1 write not written (the namespace "
                      "is another process's now)"], closed  # fmt: skip
    assert _value(pg_url, "bridge", "plug", "k") == '"second"'
    await second.close()


def test_postgres_a_process_whose_namespace_was_taken_stops(pg_url, tmp_path, immp_exe,
                                                            clean_env):  # fmt: skip
    # The same with real processes: the first loses its session, a second starts on the same
    # config; the first stops by itself (exit 1, one line, no traceback) and only the second
    # bridges, so nobody gets each message twice.
    config = console_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "store": pg_url}))
    first = Console(immp_exe, config, clean_env, stderr=tmp_path / "first.err")
    second = None
    try:
        _bridges(first, "first is up")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                         " AND application_name = 'immp'")  # fmt: skip
        second = Console(immp_exe, config, clean_env, stderr=tmp_path / "second.err")
        _bridges(second, "second is up")
        first.type("first, after")  # a write for the store: the first finds the namespace taken
        assert first.proc.wait(30) == 1
        err = first.stderr
        taken = [line for line in err.splitlines() if "another immp process took" in line]
        assert len(taken) == 1 and " ERROR " in taken[0], err
        assert "Traceback" not in err, err
        _bridges(second, "second still bridges")
        assert second.stop() == 0, second.stderr
    finally:
        first.kill()
        if second is not None:
            second.kill()


class Cut:
    """
    A TCP relay to a server; :meth:`cut` drops the client's side of every connection so far and
    leaves the server's side open and silent: a network cut that the server has not noticed.
    """

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[list] = []  # [client socket, server socket, cut]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                pair = [client, socket.create_connection(("127.0.0.1", self.target)), False]
            except OSError:  # the server is gone: so is this client
                client.close()
                continue
            self.pairs.append(pair)
            for source, to in ((pair[0], pair[1]), (pair[1], pair[0])):
                threading.Thread(target=self._pump, args=(source, to, pair), daemon=True).start()

    def _pump(self, source: socket.socket, to: socket.socket, pair: list) -> None:
        try:
            while (data := source.recv(65536)) and not pair[2]:
                to.sendall(data)
        except OSError:
            pass
        if not pair[2]:
            for sock in pair[:2]:
                sock.close()

    def cut(self) -> None:
        for pair in self.pairs:
            pair[2] = True
            pair[0].shutdown(socket.SHUT_RDWR)
            pair[0].close()

    def close(self) -> None:
        self.listener.close()
        for pair in self.pairs:
            for sock in pair[:2]:
                sock.close()


async def test_postgres_own_session_left_by_a_cut_is_ended_on_reconnect(pg_url, postgres, caplog):
    # After a cut, the server may keep the old session (and its lock) for hours: the store ends
    # it, rather than take itself for a second process and write nothing meanwhile.
    caplog.set_level(logging.INFO, "immp.store")
    relay = Cut(postgres.port)
    try:
        store = _pg_store(pg_url.replace(f":{postgres.port}/", f":{relay.port}/"))
        await store.open()
        store.set("plug", "k", "before")
        await store.flush()
        with psycopg.connect(pg_url) as conn:
            old = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                               " AND datname = current_database()").fetchall()  # fmt: skip
        assert len(old) == 1
        relay.cut()
        store.set("plug", "k", "after the cut")
        with trio.fail_after(20):
            while not any("is back:" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.05)
        messages = [r.getMessage() for r in caplog.records]
        assert any(f"ending this store's previous session (server pid {old[0][0]})" in m
                   for m in messages), messages  # fmt: skip
        assert not any("another immp process" in m for m in messages), messages
        assert _value(pg_url, "bridge", "plug", "k") == '"after the cut"'
        with psycopg.connect(pg_url) as conn:
            alive = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = %s", old[0])
            assert alive.fetchall() == []
        await store.close()
    finally:
        relay.close()
