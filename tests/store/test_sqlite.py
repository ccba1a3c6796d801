"""The SQLite store on real files: persistence, URLs, schema versions, bad files, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import trio
import yaml

import immp
from immp._store_sqlite import MIGRATIONS, SCHEMA_VERSION

DEMO = {"plugs": {"a": {"path": "demo", "config": {"interval": None}}}}


async def test_state_and_messages_outlive_the_store(tmp_path):
    path = tmp_path / "s.db"
    store = immp.SQLiteStore(path, namespace="one")
    await store.open()
    store.set("plug", "token", {"since": "s123", "n": [1, 2]})
    store.set("plug", "gone", 1)
    store.delete("plug", "gone")
    entry = {"origin": ["a\x1froom", "1"], "ids": {"b\x1froom": ["x"]}, "deleted": False}
    store.messages.put("sync", "a\x1froom\x1f1", entry, [("a\x1froom", "1")])
    store.messages.put("sync", "a\x1froom\x1f1", entry, [("b\x1froom", "x")])
    await store.flush()
    assert store.stats()["flushes"] >= 1 and store.stats()["queue_depth"] == 0
    await store.close()

    again = immp.SQLiteStore(path, namespace="one")
    await again.open()
    assert await again.get("plug", "token") == {"since": "s123", "n": [1, 2]}
    assert await again.get("plug", "gone", "none") == "none"
    assert await again.messages.find("sync", "b\x1froom", "x") == entry
    assert await again.messages.find("sync", "a\x1froom", "1") == entry
    assert await again.messages.find("sync", "b\x1froom", "y") is None
    await again.close()
    other = immp.SQLiteStore(path, namespace="two")  # another instance sees none of it
    await other.open()
    assert await other.get("plug", "token") is None
    assert await other.messages.find("sync", "b\x1froom", "x") is None
    await other.close()


@pytest.mark.parametrize("count", [1, 17, 1100])  # one row, padded rows, several statements
async def test_unusual_keys_and_ids_and_text_entries_round_trip(tmp_path, count):
    # Rows go to SQLite as bound parameters, in statements of a few fixed sizes (padded): keys
    # with quotes, backslashes, U+001F, newlines and non-ASCII come back as written, in batches
    # that fill no statement, part of one and several; an entry given as its JSON text is
    # stored as that text.
    path = tmp_path / "s.db"
    store = immp.SQLiteStore(path, namespace="one")
    await store.open()
    channel = immp.message_key('pl"ug\\\n', "r\x1fo'om \u00e9\U0001f600")
    entries = {}
    for i in range(count):
        key = immp.message_key(channel, f'{i}\x1f"')
        if i % 2:
            entry = {"origin": [channel, f'{i}\x1f"'], "ids": {"b\x1f\\": [f"x{i}\u2028"]}}
            store.messages.put("sync", key, lambda entry=entry: entry, [("b\x1f\\", f"x{i}\u2028")])
        else:
            entry = {"origin": [channel, str(i)], "ids": {}, "deleted": True}
            store.messages.put("sync", key, json.dumps(entry), [(channel, f"alias {i}")])
        entries[i] = entry
        store.set("pl\x1fug", f"k\x1f{i}", {"v": f"\x00{i}"})
    await store.flush()
    await store.close()

    again = immp.SQLiteStore(path, namespace="one")
    await again.open()
    for i, entry in entries.items():
        found = ("b\x1f\\", f"x{i}\u2028") if i % 2 else (channel, f"alias {i}")
        assert await again.messages.find("sync", *found) == entry
        assert await again.messages.find("sync", channel, f'{i}\x1f"') == entry
        assert await again.get("pl\x1fug", f"k\x1f{i}") == {"v": f"\x00{i}"}
    assert await again.messages.find("sync", channel, f"alias {count}") is None
    await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == count
        assert db.execute("SELECT count(*) FROM message_ids").fetchone()[0] == count
        text = db.execute("SELECT entry FROM messages WHERE key = ?",
                          (immp.message_key(channel, "0\x1f\""),)).fetchone()[0]  # fmt: skip
        assert text == json.dumps(entries[0])


async def test_a_key_deleted_in_a_later_flush_is_gone_and_areas_stay_apart(tmp_path):
    path = tmp_path / "s.db"
    store = immp.SQLiteStore(path, namespace="one")
    await store.open()
    for area in ("a", "b"):  # one batch with two areas: each statement is per area
        store.set(area, "k", area)
        store.set(area, "keep", [area])
    await store.flush()
    store.delete("a", "k")  # a row written by an earlier transaction
    store.set("b", "k", "b again")
    await store.flush()
    await store.close()

    again = immp.SQLiteStore(path, namespace="one")
    await again.open()
    assert await again.get("a", "k", "gone") == "gone"
    assert await again.get("b", "k") == "b again"
    assert await again.get("a", "keep") == ["a"] and await again.get("b", "keep") == ["b"]
    await again.close()


async def test_retention_prunes_old_entries_of_its_namespace_only(tmp_path):
    path = tmp_path / "s.db"
    stores = [immp.SQLiteStore(path, namespace=n) for n in ("one", "two")]
    one, two = stores
    two.retention = float("inf")
    for store in stores:
        await store.open()
        store.messages.put("sync", "k", {"v": store.namespace}, [("c", "1"), ("d", "2")])
        await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE messages SET created = created - 40 * 86400")
    conn.execute("UPDATE message_ids SET created = created - 40 * 86400")
    conn.commit()
    conn.close()
    for store in stores:
        await store.open()  # pruning runs at open, then every prune_interval
    await one.flush()
    with trio.fail_after(10):
        while one.stats()["pruned"] < 1:
            await trio.sleep(0.01)
    assert await one.messages.find("sync", "c", "1") is None
    assert await two.messages.find("sync", "c", "1") == {"v": "two"}
    for store in stores:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM message_ids").fetchone()[0] == 2
    conn.close()


def test_urls_and_the_default_beside_the_config(tmp_path):
    config = tmp_path / "conf" / "bridge.yaml"
    config.parent.mkdir()
    host = immp.build_host(DEMO, file=str(config))
    assert host.store.path == config.parent / "bridge.db"
    assert host.store.namespace == "bridge"
    host = immp.build_host({**DEMO, "store": "sqlite:data/x.db?namespace=n1&synchronous=full"},
                           file=str(config))  # fmt: skip
    assert host.store.path == config.parent / "data" / "x.db"
    assert (host.store.namespace, host.store.synchronous) == ("n1", "full")
    host = immp.build_host({**DEMO, "store": f"sqlite:///{tmp_path}/abs.db"}, file=str(config))
    assert host.store.path == tmp_path / "abs.db"
    bad_urls = (("sqlite://host/x.db", "sqlite:///"), ("sqlite:", "names no file"),
                ("sqlite:x.db?synchronous=sometimes", "synchronous"),
                ("sqlite:x.db?retention-days=-1", "retention-days"), (12, "URL"))  # fmt: skip
    for bad, words in bad_urls:
        with pytest.raises(immp.ConfigError) as caught:
            immp.build_host({**DEMO, "store": bad}, file=str(config))
        assert words in str(caught.value) and caught.value.path == "store"


def _run(immp_command, tmp_path, config: dict, timeout=30):
    file = tmp_path / "bridge.yaml"
    file.write_text(yaml.safe_dump(config))
    return immp_command(str(file), timeout=timeout)


def _one_error_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("immp: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_unknown_scheme_exits_2_listing_the_installed(immp_command, tmp_path):
    result = _run(immp_command, tmp_path, {**DEMO, "store": "redis://localhost"})
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "unknown store 'redis'" in line and "memory, " in line and "sqlite" in line


def test_a_folder_where_the_file_cannot_be_made_exits_2(immp_command, tmp_path):
    for url, path in (("sqlite:///nonexistent-folder/x.db", "/nonexistent-folder/x.db"),
                      ("sqlite:///proc/x.db", "/proc/x.db")):  # fmt: skip
        result = _run(immp_command, tmp_path, {**DEMO, "store": url})
        assert result.returncode == 2, result.stderr
        line = _one_error_line(result)
        assert path in line and "`store:`" in line
        if "nonexistent" in url:  # (/proc looks writable to root until a file is made)
            # --check (a unit's ExecStartPre) says so too, before a start would.
            checked = immp_command("--check", str(tmp_path / "bridge.yaml"))
            assert checked.returncode == 2 and "OK" not in checked.stdout, checked.stdout
            assert _one_error_line(checked) == line


def test_the_store_path_is_logged_at_startup(tmp_path, immp_exe, clean_env):
    file = tmp_path / "bridge.yaml"
    file.write_text(yaml.safe_dump(DEMO))
    proc = subprocess.Popen([immp_exe, str(file)], stderr=subprocess.PIPE, text=True,
                            env=clean_env)  # fmt: skip
    try:
        line = proc.stderr.readline()
        while "Store:" not in line and line:
            line = proc.stderr.readline()
        assert f"Store: sqlite {tmp_path / 'bridge.db'} (namespace bridge)" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_corrupt_file_exits_non_zero_with_one_line(immp_command, tmp_path):
    (tmp_path / "bridge.db").write_bytes(b"this is not a database" * 200)
    result = _run(immp_command, tmp_path, DEMO)
    assert result.returncode not in (0, None)
    line = _one_error_line(result)
    assert "bridge.db" in line and "not a usable SQLite database" in line


def test_locked_file_exits_non_zero_with_one_line(immp_command, tmp_path):
    path = tmp_path / "bridge.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = _run(immp_command, tmp_path,
                      {**DEMO, "store": "sqlite:bridge.db?busy-timeout=0.2"})  # fmt: skip
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode not in (0, None)
    line = _one_error_line(result)
    assert "bridge.db" in line and "locked" in line


def test_a_file_this_user_cannot_write_is_named_as_such_not_as_damaged(tmp_path):
    # (Tests run as root, whom file modes do not stop: the error SQLite gives a user without
    # write permission on the file or its folder, where the -wal file goes.)
    store = immp.SQLiteStore(tmp_path / "bridge.db")
    error = store._unusable(sqlite3.OperationalError("attempt to write a readonly database"))
    assert error.status == 2  # the config's to mend, not a failure to restart from
    assert "cannot write the store" in str(error) and "`store:`" in str(error)
    assert "restore a backup" not in str(error)


def _damage_table(path, table: str) -> None:
    """Overwrite the root page of ``table`` in the SQLite file ``path`` with garbage."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?",
                           (table,)).fetchone()  # fmt: skip
    conn.close()
    with open(path, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(random.Random(1).randbytes(page_size))


def test_a_file_damaged_under_a_running_bridge_is_said_once_and_fails_the_exit(
    immp_exe, clean_env, tmp_path
):
    # The copy map's table is damaged (a disk error, a bad copy): the file opens, every write
    # fails. The bridge goes on; the log says so once (not "lost", "back", "lost"... every
    # retry); what could not be written is said at the end and the exit status is 1.
    plugs = {"a": {"path": "demo", "config": {"interval": 0.1}},
             "b": {"path": "demo", "config": {"interval": None}}}  # fmt: skip
    channels = {"a-room": {"plug": "a", "source": "dummy"},
                "b-room": {"plug": "b", "source": "dummy"}}  # fmt: skip
    sync = {"path": "sync", "config": {"channels": {"bus": ["a-room", "b-room"]}}}
    config = {"host": {"close-timeout": 1}, "plugs": plugs, "channels": channels,
              "hooks": {"sync": sync}}  # fmt: skip
    file = tmp_path / "bridge.yaml"
    file.write_text(yaml.safe_dump(config))
    first = subprocess.Popen([immp_exe, str(file)], stderr=subprocess.PIPE, text=True,
                             env=clean_env)  # fmt: skip
    time.sleep(3)  # the store made, copies written
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0, first.stderr.read()
    with sqlite3.connect(tmp_path / "bridge.db") as conn:
        assert conn.execute("SELECT count(*) FROM message_ids").fetchone()[0] > 10
    _damage_table(tmp_path / "bridge.db", "message_ids")
    proc = subprocess.Popen([immp_exe, str(file)], stderr=subprocess.PIPE, text=True,
                            env=clean_env)  # fmt: skip
    time.sleep(5)  # several retries
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(30)
    log = proc.stderr.read()
    assert "Traceback" not in log, log
    assert log.count(" lost: ") == 1 and "malformed" in log, log
    assert "is back:" not in log, log
    assert "writes not written" in log, log
    assert status == 1, log


def test_a_newer_schema_refuses_to_open(immp_command, tmp_path):
    conn = sqlite3.connect(tmp_path / "bridge.db")
    conn.execute("CREATE TABLE immp_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO immp_schema VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    result = _run(immp_command, tmp_path, DEMO)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert f"schema version {SCHEMA_VERSION + 1}" in line and "upgrade IMMP" in line


async def test_an_older_schema_is_migrated_at_open(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("CREATE TABLE immp_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO immp_schema VALUES (1)")
    conn.execute("INSERT INTO scopes (id, namespace, area) VALUES (1, 'n', 'sync')")
    conn.execute("INSERT INTO messages VALUES (1, 'k', '{\"v\": 1}', ?)", (time.time(),))
    conn.execute("INSERT INTO message_ids VALUES (1, 'c', '7', 'k')")
    conn.commit()
    conn.close()
    store = immp.SQLiteStore(path, namespace="n")
    await store.open()
    assert await store.messages.find("sync", "c", "7") == {"v": 1}  # kept, and not pruned
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM immp_schema").fetchall() == [(SCHEMA_VERSION,)]
    assert conn.execute("SELECT created > 0 FROM message_ids").fetchone() == (1,)
    conn.close()


WRITER = """
import sys, trio, immp

async def main():
    store = immp.SQLiteStore(sys.argv[1], namespace="kill")
    await store.open()
    n = 0
    while True:
        for _ in range(50):
            n += 1
            store.set("writer", f"k{n}", n)
            store.messages.put("sync", f"e{n}", {"n": n}, [("c", str(n))])
        await store.flush()
        print(n, flush=True)  # everything up to n is committed

trio.run(main)
"""


def _write_and_kill(path) -> int:
    """Run the writer, SIGKILL it at a random moment; returns the last count it said committed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    committed = 0
    try:
        deadline = time.monotonic() + random.uniform(0.3, 1.5)
        while time.monotonic() < deadline or committed < 100:
            committed = int(proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return committed


@pytest.mark.parametrize("run", range(3))
async def test_kill_9_during_writes_keeps_every_committed_entry(tmp_path, run):
    path = tmp_path / "kill.db"
    committed = _write_and_kill(path)
    store = immp.SQLiteStore(path, namespace="kill")
    await store.open()
    for n in [1, committed // 2, committed, *random.sample(range(1, committed + 1), 50)]:
        assert await store.get("writer", f"k{n}") == n
        assert await store.messages.find("sync", "c", str(n)) == {"n": n}
    await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM state").fetchone()[0] >= committed
    conn.close()


class SlowStore(immp.SQLiteStore):
    """A database that takes 0.3 s per commit: the store falls behind what comes in."""

    def write(self, conn, batch):
        time.sleep(0.3)
        super().write(conn, batch)


async def test_room_waits_while_the_store_is_behind(tmp_path):
    store = SlowStore(tmp_path / "slow.db", max_queue=10)
    await store.open()
    await store.room()  # nothing queued: at once
    store.set("a", "first", 1)
    with trio.fail_after(5):
        while not store.stats()["in_flight"]:
            await trio.sleep(0.01)  # until the slow commit of "first" has begun
    for n in range(8):
        store.set("a", f"k{n}", n)
    started = trio.current_time()
    with trio.fail_after(10):
        await store.room()
    assert trio.current_time() - started > 0.1  # waited for the slow commit
    assert store.stats()["queue_depth"] < 5 and store.stats()["dropped"] == 0
    await store.flush()
    assert [await store.get("a", f"k{n}") for n in (0, 7)] == [0, 7]
    await store.close()


async def test_a_new_store_file_is_readable_by_its_owner_only(tmp_path):
    # It holds chat text (the journal) and who said what: not for other users of the machine,
    # whatever the umask (022 outside systemd).
    path = tmp_path / "bridge.db"
    old = os.umask(0o022)
    try:
        store = immp.SQLiteStore(path, namespace="one")
        await store.open()
        store.set("plug", "key", "value")
        await store.flush()
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        await store.close()
    finally:
        os.umask(old)
    assert modes["bridge.db"] == 0o600
    assert modes.get("bridge.db-wal", 0o600) == 0o600 and "bridge.db-wal" in modes
