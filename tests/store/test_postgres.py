"""
The PostgreSQL store against a real server: persistence, namespaces, outages, schema versions.
Its journal rows are tested beside the other stores' in tests/journal.
"""

from __future__ import annotations

import logging
import time

import psycopg
import pytest
import trio
import yaml
from immp_store_postgres import PostgresStore
from immp_store_postgres._store import MIGRATIONS, SCHEMA_VERSION

import immp
from immp.testing import running
from tests.demo.console import Console, console_config
from tests.sync.helpers import settle

ENTRY = {"origin": ["a\x1froom", "1"], "ids": {"b\x1froom": ["x"]}, "deleted": False}


def _store(url: str, **options) -> PostgresStore:
    return PostgresStore.from_url(url, None, **{"namespace": "bridge", **options})


async def test_state_and_messages_outlive_the_store(pg_url):
    store = _store(pg_url)
    assert isinstance(store, PostgresStore)
    await store.open()
    store.set("plug", "token", {"since": "s1"})
    store.set("plug", "gone", 1)
    store.delete("plug", "gone")
    store.messages.put("sync", "k1", ENTRY, [("a\x1froom", "1")])
    store.messages.put("sync", "k1", ENTRY, [("b\x1froom", "x")])
    await store.flush()
    await store.close()
    again = _store(pg_url)
    await again.open()
    assert await again.get("plug", "token") == {"since": "s1"}
    assert await again.get("plug", "gone") is None
    assert await again.messages.find("sync", "b\x1froom", "x") == ENTRY
    assert await again.messages.find("sync", "a\x1froom", "1") == ENTRY
    assert again.stats()["flushes"] == 0 and again.stats()["reachable"]
    await again.close()


def test_the_url_and_its_options(pg_url):
    host = immp.build_host({"store": pg_url + "?namespace=eu&retention-days=2&sslmode=disable"},
                           file="/srv/immp/bridge.yaml")  # fmt: skip
    store = host.store
    assert isinstance(store, PostgresStore)
    assert store.namespace == "eu" and store.retention == 2 * 86400
    assert store.conninfo.endswith("?sslmode=disable")
    assert store.describe().startswith("postgresql postgres@127.0.0.1:")
    with_password = immp.build_host({"store": "postgres://u:secret@h:5/db"}, file="/x/b.yaml")
    assert "secret" not in with_password.store.describe()
    assert with_password.store.namespace == "b"
    with pytest.raises(immp.ConfigError):
        immp.build_host({"store": "postgresql://h/db?nosuchoption=1"}, file="/x/b.yaml")


def _bridge(url) -> dict:
    demo = {"interval": None, "channel": "room", "echo": True}
    return {
        "store": url,
        "plugs": {name: {"path": "demo", "config": demo} for name in ("a", "b")},
        "channels": {
            "a-room": {"plug": "a", "source": "room"},
            "b-room": {"plug": "b", "source": "room"},
        },
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"main": ["a-room", "b-room"]}}}},
    }


async def test_two_instances_on_one_database_keep_to_their_own_rows(pg_url, tmp_path):
    # Two configs with the same plug, channel and hook names, running at once: each instance's
    # namespace is its config file's name.
    files = [str(tmp_path / f"{name}.yaml") for name in ("east", "west")]
    hosts = [immp.build_host(_bridge(pg_url), file=file) for file in files]
    assert [h.store.namespace for h in hosts] == ["east", "west"]
    async with running(hosts[0]), running(hosts[1]):
        east, west = hosts
        first = await east.plugs["a"].receive("east says hi")  # both get a message numbered 1
        await west.plugs["a"].receive("west says hi")
        await east.plugs["b"].wait_puts(1)
        await west.plugs["b"].wait_puts(1)
        await settle()
        await east.store.flush()
        await west.store.flush()
        await east.plugs["a"].state.set("k", "east")
        await west.plugs["a"].state.set("k", "west")
        # Memory holds nothing of the other; the store must not answer with the other's rows.
        east.hooks["sync"].copies = type(east.hooks["sync"].copies)(10, east.hooks["sync"])
        await east.plugs["a"].edit_message(first.id, "east, edited")
        await east.plugs["b"].wait_puts(2)
        assert east.plugs["b"].puts[-1][1].edited and west.plugs["b"].put_count == 1
    for name in ("east", "west"):
        store = _store(pg_url, namespace=name)
        await store.open()
        assert await store.get("a", "k") == name
        entry = await store.messages.find("sync", "a\x1froom", "1")
        assert entry is not None
        await store.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT s.namespace, count(*) FROM immp_messages m JOIN immp_scopes s"
            " ON s.id = m.scope GROUP BY s.namespace ORDER BY 1"
        ).fetchall()
    assert rows == [("east", 1), ("west", 1)]


async def test_retention_prunes_only_its_own_namespace(pg_url):
    one, two = _store(pg_url, namespace="one"), _store(pg_url, namespace="two")
    for store in (one, two):
        await store.open()
        store.messages.put("sync", "k", {"v": store.namespace}, [("c", "1")])
        await store.flush()
        await store.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE immp_messages SET created = created - 40 * 86400")
        conn.execute("UPDATE immp_message_ids SET created = created - 40 * 86400")
    two.retention = float("inf")
    for store in (one, two):
        await store.open()
    with trio.fail_after(20):
        while one.stats()["pruned"] < 1:
            await trio.sleep(0.02)
    assert await one.messages.find("sync", "c", "1") is None
    assert await two.messages.find("sync", "c", "1") == {"v": "two"}
    await one.close()
    await two.close()


async def test_a_newer_schema_refuses_to_open(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE immp_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO immp_schema VALUES (%s)", (SCHEMA_VERSION + 1,))
    store = _store(pg_url)
    with pytest.raises(immp.StoreError) as caught:
        await store.open()
    assert caught.value.status == 2 and "newer than this IMMP knows" in str(caught.value)


async def test_a_version_1_database_is_migrated_at_open_and_keeps_its_rows(pg_url, caplog):
    # As the store before the journal left it: version 1, a scope with state and an entry.
    with psycopg.connect(pg_url) as conn:
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("CREATE TABLE immp_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO immp_schema VALUES (1)")
        conn.execute("INSERT INTO immp_scopes (id, namespace, area) VALUES (1, 'bridge', 'sync'),"
                     " (2, 'bridge', 'src')")  # fmt: skip
        conn.execute("INSERT INTO immp_state VALUES (2, 'cursor', '7')")
        conn.execute("INSERT INTO immp_messages VALUES (1, 'k', '{\"v\": 1}', %s)", (time.time(),))
        conn.execute("INSERT INTO immp_message_ids VALUES (1, 'c', '7', 'k', %s)", (time.time(),))
    caplog.set_level(logging.WARNING, "immp.store")
    store = _store(pg_url)
    await store.open()
    assert await store.messages.find("sync", "c", "7") == {"v": 1}
    assert await store.get("src", "cursor") == 7
    assert await store.journal_load() == ([], [])
    store.journal_write([("entry", "e.1", 1.0, "{}"), ("delivery", "e.1", "e.1/b", 0)])
    await store.close()
    assert "schema migrated from version 1 to 2" in caplog.text
    again = _store(pg_url)  # opened again: nothing more to migrate, the journal is there
    await again.open()
    assert await again.journal_load() == ([("e.1", 1.0, "{}")], [("e.1", "e.1/b", 0)])
    await again.close()
    assert caplog.text.count("schema migrated") == 1
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM immp_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_unreachable_at_start_retries_then_exits_1(tmp_path, immp_command, postgres):
    file = tmp_path / "bridge.yaml"
    url = f"postgresql://postgres@127.0.0.1:{postgres.port + 1}/none"  # nobody listens there
    file.write_text(yaml.safe_dump({"store": url, "host": {"open-timeout": 2},
                                    "plugs": {"a": {"path": "demo"}}}))  # fmt: skip
    started = time.monotonic()
    result = immp_command(str(file), timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "unreachable" in result.stderr and "retrying until the open timeout" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("immp: error:")]
    assert len(errors) == 1 and "gave up at the open timeout" in errors[0]
    assert "Connection refused" in errors[0]  # libpq's reason, not only its hint
    assert "Traceback" not in result.stderr
    assert 1.5 < took < 30


def test_a_database_or_role_the_server_refuses_exits_2_at_once(tmp_path, immp_command,
                                                                postgres):  # fmt: skip
    # The server answers: the config names something it does not have. No retrying until the
    # open timeout (a restart loop under systemd), one line that says what the server said.
    file = tmp_path / "bridge.yaml"
    server = f"127.0.0.1:{postgres.port}"
    for where, words in ((f"postgres@{server}/nodb", 'database "nodb"'),
                         (f"nobody@{server}/postgres", 'role "nobody"')):  # fmt: skip
        file.write_text(yaml.safe_dump({"store": f"postgresql://{where}",
                                        "plugs": {"a": {"path": "demo"}}}))  # fmt: skip
        started = time.monotonic()
        result = immp_command(str(file), timeout=60)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("immp: error:")]
        assert len(errors) == 1 and words in errors[0] and "`store:`" in errors[0], errors
        assert "retrying" not in result.stderr and "Traceback" not in result.stderr
        assert time.monotonic() - started < 15


def test_a_refusal_that_may_pass_is_retried_until_the_open_timeout(tmp_path, immp_command,
                                                                    postgres):  # fmt: skip
    # "too many connections for role": the old process's connections still closing after a
    # restart. It may pass, so it is retried (exit 1 after the open timeout, which systemd
    # restarts), not taken for a config error (exit 2, which it would not).
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres",
                         autocommit=True) as conn:  # fmt: skip
        conn.execute("DROP ROLE IF EXISTS busy")
        conn.execute("CREATE ROLE busy LOGIN CONNECTION LIMIT 0")
    file = tmp_path / "bridge.yaml"
    file.write_text(yaml.safe_dump({
        "store": f"postgresql://busy@127.0.0.1:{postgres.port}/postgres",
        "host": {"open-timeout": 2}, "plugs": {"a": {"path": "demo"}}}))  # fmt: skip
    result = immp_command(str(file), timeout=60)
    assert result.returncode == 1, result.stderr
    assert "too many connections" in result.stderr and "retrying" in result.stderr
    assert "Traceback" not in result.stderr


async def test_lost_while_running_queues_writes_and_answers_from_memory(own_postgres, caplog):
    caplog.set_level(logging.INFO, "immp.store")
    url = own_postgres.create_database("lost")
    store = _store(url)
    store.retry_interval = 0.2
    await store.open()
    store.set("plug", "before", 1)
    await store.flush()
    await trio.to_thread.run_sync(own_postgres.stop)
    for n in range(100):
        store.set("plug", f"during{n}", n)
    store.messages.put("sync", "k", ENTRY, [("a\x1froom", "1")])
    store.journal_write([("entry", "e.1", 1.0, "{}"), ("delivery", "e.1", "e.1/b", 0)])
    assert await store.get("plug", "before") == 1  # from memory
    assert await store.messages.find("sync", "a\x1froom", "9") is None  # unknown, not a crash
    with trio.fail_after(20):
        while store.stats()["reachable"]:
            await trio.sleep(0.05)
    with pytest.raises(immp.StoreError):
        await store.flush()
    assert store.stats()["queue_depth"] >= 100
    lost = [r for r in caplog.records if ") lost: " in r.getMessage()]
    assert len(lost) == 1 and "queued" in lost[0].getMessage()
    await trio.sleep(1.0)  # five more tries to connect, each refused the same way
    still = [r.getMessage() for r in caplog.records if "still not usable" in r.getMessage()]
    assert len(still) <= 1, still  # the server's going away, then its absence: said once
    await trio.to_thread.run_sync(own_postgres.start)
    with trio.fail_after(30):
        while not store.stats()["reachable"] or store.stats()["queue_depth"]:
            await trio.sleep(0.05)
    await store.flush()
    assert any("is back" in r.getMessage() for r in caplog.records)
    await store.close()
    again = _store(url)
    await again.open()
    assert [await again.get("plug", f"during{n}") for n in (0, 50, 99)] == [0, 50, 99]
    assert await again.messages.find("sync", "a\x1froom", "1") == ENTRY
    assert await again.journal_load() == ([("e.1", 1.0, "{}")], [("e.1", "e.1/b", 0)])
    await again.close()


def test_two_immp_processes_on_one_database(pg_url, tmp_path, immp_exe, clean_env):
    """Two real processes (configs east.yaml and west.yaml, same names inside) share a database."""
    files = []
    for name in ("east", "west"):
        folder = tmp_path / name
        folder.mkdir()
        config = yaml.safe_load(console_config(folder).read_text())
        file = tmp_path / f"{name}.yaml"
        file.write_text(yaml.safe_dump({**config, "store": pg_url}))
        files.append(file)
    east, west = (Console(immp_exe, f, clean_env, stderr=f.with_suffix(".err")) for f in files)
    try:
        east.type("from east")
        west.type("from west")
        east.expect("[peer] <alice> from east")
        west.expect("[peer] <alice> from west")
        assert east.stop() == 0 and west.stop() == 0
    finally:
        east.kill()
        west.kill()
    # Started again, each edits its own message 1: each edit reaches only its own copy.
    east, west = (Console(immp_exe, f, clean_env, stderr=f.with_suffix(".err2")) for f in files)
    try:
        east.type("/edit 1 east, edited")
        west.type("/edit 1 west, edited")
        east.expect("[peer] <alice> east, edited (edited)")
        west.expect("[peer] <alice> west, edited (edited)")
        assert east.stop() == 0 and west.stop() == 0
    finally:
        east.kill()
        west.kill()
    assert not [line for line in east.output if "west" in line]
    assert not [line for line in west.output if "east" in line]
    with psycopg.connect(pg_url) as conn:
        namespaces = conn.execute(
            "SELECT DISTINCT namespace FROM immp_scopes ORDER BY 1"
        ).fetchall()
    assert namespaces == [("east",), ("west",)]


async def test_a_new_reason_while_lost_is_said_once(own_postgres, caplog):
    # Lost, then the server answers again but refuses the database (renamed meanwhile): the
    # operator is told the new reason once, not at every retry, and it is back once renamed back.
    caplog.set_level(logging.INFO, "immp.store")
    url = own_postgres.create_database("moving")
    store = _store(url)
    store.retry_interval = 0.2
    await store.open()
    store.set("plug", "before", 1)
    await store.flush()
    admin = own_postgres.url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = 'moving'")  # fmt: skip
        conn.execute('ALTER DATABASE "moving" RENAME TO "moved"')
    store.set("plug", "during", 2)
    with trio.fail_after(20):
        while store.stats()["reachable"]:
            await trio.sleep(0.05)
    await trio.sleep(1.5)  # seven more tries, each refused
    messages = [r.getMessage() for r in caplog.records if r.name == "immp.store"]
    still = [m for m in messages if "still not usable" in m]
    assert len(still) == 1, messages
    assert 'database "moving" does not exist' in still[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('ALTER DATABASE "moved" RENAME TO "moving"')
    with trio.fail_after(30):
        while not store.stats()["reachable"] or store.stats()["queue_depth"]:
            await trio.sleep(0.05)
    assert any("is back" in r.getMessage() for r in caplog.records)
    await store.close()
    again = _store(url)
    await again.open()
    assert await again.get("plug", "during") == 2
    await again.close()
