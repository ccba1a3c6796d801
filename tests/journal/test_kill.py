"""
The journal against kill -9: a real ``immp`` process bridging two demo networks (one reads its
messages from a file, the other appends what it is sent to a file, with idempotent sends by
delivery key, as Matrix's txnId), killed with SIGKILL while messages stream and started again
on the same store: every message arrives exactly once and in order. Each test runs on SQLite and
on PostgreSQL (``store_url`` in conftest.py).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest
import yaml

N = 300


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(tmp_path, store: str, delay: float = 0.01, **host) -> dict:
    return {
        "path": [ROOT],
        "store": store,
        "host": {"journal": True, **host},
        "plugs": {
            "src": {
                "path": "demo",
                "config": {
                    "interval": None,
                    "echo": False,
                    "user": "alice",
                    "channel": "a",
                    "input": str(tmp_path / "in"),
                },
            },
            "dst": {
                "path": "demo",
                "config": {"interval": None, "channel": "b", "output": str(tmp_path / "out")},
            },
        },
        "channels": {"a": {"plug": "src", "source": "a"}, "b": {"plug": "dst", "source": "b"}},
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"town": ["a", "b"]}}},
            # Deliveries lag behind what is received, so that a kill finds some not done.
            "slow": {
                "path": "tests.journal.slow.SlowSends",
                "priority": 1,
                "config": {"delay": delay},
            },
        },
    }


class Bridge:
    def __init__(self, tmp_path, exe, env, store: str | None = None, delay: float = 0.01, **host):
        self.path = tmp_path
        store = store or f"sqlite:///{tmp_path / 'bridge.db'}"
        config = _config(tmp_path, store, delay, **host)
        (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(config))
        self.exe, self.env = exe, env
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        err = open(self.path / f"run{self.runs}.err", "wb")
        self.proc = subprocess.Popen([self.exe, str(self.path / "bridge.yaml")], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err)  # fmt: skip
        err.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while "Store:" not in self.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)  # before that the runner has no SIGTERM handler yet
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stderr(self, run: int | None = None) -> str:
        return (self.path / f"run{run or self.runs}.err").read_text(errors="replace")

    def received(self) -> list[int]:
        try:
            text = (self.path / "out").read_text()
        except FileNotFoundError:
            return []
        numbers = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            numbers.append(int(re.search(r"m(\d+)$", row["text"]).group(1)))
        return numbers

    def wait_for(self, count: int, timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"immp exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received())} of {count} arrived: {self.stderr()}")


def _stream(path, start: int, stop: int, rate: float, done: threading.Event) -> None:
    with open(path, "a") as out:
        for number in range(start, stop):
            out.write(f"m{number}\n")
            out.flush()
            time.sleep(1 / rate)
    done.set()


def _one_run(tmp_path, exe, env, store: str, seed: int, *, kill_after: float,
             delay: float = 0.01) -> dict:  # fmt: skip
    bridge = Bridge(tmp_path, exe, env, store, delay)
    streamed = threading.Event()
    writer = threading.Thread(target=_stream, args=(tmp_path / "in", 0, N, 200, streamed))
    bridge.start()
    writer.start()
    try:
        time.sleep(kill_after)
        before = len(bridge.received())
        bridge.kill()
        bridge.start()  # the stream goes on meanwhile: lines pile up for the new process
        writer.join()
        got = bridge.wait_for(N)
        time.sleep(0.3)  # nothing more (no duplicate) arrives later
        got = bridge.received()
        assert bridge.stop() == 0, bridge.stderr()
    finally:
        bridge.kill()
        writer.join()
    assert got == list(range(N)), (seed, kill_after, got)
    return {"seed": seed, "killed_after": kill_after, "before_kill": before,
            "replayed": _replayed(bridge.stderr(2))}  # fmt: skip


def _replayed(stderr: str) -> int:
    found = re.search(r"Journal: (\d+) (?:entry|entries) from the last run", stderr)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("seed", range(6))
def test_killed_while_messages_stream_every_message_arrives_once_in_order(
    tmp_path, immp_exe, clean_env, store_url, seed
):
    kill_after = random.Random(seed).uniform(0.5, 2.2)  # start-up ~0.6 s; the stream ~1.5 s
    outcome = _one_run(tmp_path, immp_exe, clean_env, store_url, seed, kill_after=kill_after)
    print("kill run:", outcome)
    if 0 < outcome["before_kill"] < N:  # killed mid-stream: deliveries were lagging
        assert outcome["replayed"] > 0, outcome


@pytest.mark.parametrize("seed", range(4))
def test_killed_while_copies_go_out_as_fast_as_received_none_arrives_twice(
    tmp_path, immp_exe, clean_env, store_url, seed
):
    # No slow hook: a copy could go out before the store committed its journal entry (and the
    # source's position after it); killed then, the source sent it again as a new entry, with a
    # new delivery key, and it arrived twice. Copies wait for their entry to be durable.
    kill_after = random.Random(seed).uniform(0.7, 1.6)
    outcome = _one_run(tmp_path, immp_exe, clean_env, store_url, seed, kill_after=kill_after,
                       delay=0.0)  # fmt: skip
    print("kill run, no delay:", outcome)


def test_killed_during_startup_then_restarted(tmp_path, immp_exe, clean_env, store_url):
    bridge = Bridge(tmp_path, immp_exe, clean_env, store_url)
    (tmp_path / "in").write_text("".join(f"m{n}\n" for n in range(N)))
    try:
        bridge.start()
        time.sleep(0.3)  # the interpreter is still importing / opening
        bridge.kill()
        bridge.start()
        assert bridge.wait_for(N) is not None
        time.sleep(0.3)
        assert bridge.received() == list(range(N))
        assert bridge.stop() == 0
    finally:
        bridge.kill()


def test_killed_during_shutdown_then_restarted(tmp_path, immp_exe, clean_env, store_url):
    bridge = Bridge(tmp_path, immp_exe, clean_env, store_url)
    streamed = threading.Event()
    writer = threading.Thread(target=_stream, args=(tmp_path / "in", 0, N, 600, streamed))
    try:
        bridge.start()
        writer.start()
        bridge.wait_for(20)
        bridge.proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)  # closing: hooks draining, store being flushed
        bridge.kill()
        writer.join()
        bridge.start()
        bridge.wait_for(N)
        time.sleep(0.3)
        assert bridge.received() == list(range(N))
        assert bridge.stop() == 0
        assert "Journal: every journaled message was delivered" in bridge.stderr()
    finally:
        bridge.kill()
        writer.join()


def test_graceful_stop_says_what_is_left(tmp_path, immp_exe, clean_env, store_url):
    bridge = Bridge(tmp_path, immp_exe, clean_env, store_url)
    (tmp_path / "in").write_text("m0\nm1\n")
    try:
        bridge.start()
        bridge.wait_for(2)
        assert bridge.stop() == 0
    finally:
        bridge.kill()
    assert "Journal: every journaled message was delivered" in bridge.stderr()
    assert os.path.exists(tmp_path / "bridge.db") == store_url.startswith("sqlite")


def _journal_state(db) -> tuple[int, int | None]:
    # (journal entries, the src plug's input offset) as committed, read beside the process.
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # not made yet
        return 0, None
    try:
        entries = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
        row = conn.execute("SELECT value FROM state JOIN scopes ON scopes.id = state.scope"
                           " WHERE area = 'src' AND key = 'input-offset'").fetchone()  # fmt: skip
    except sqlite3.OperationalError:  # not made yet
        return 0, None
    finally:
        conn.close()
    return entries, json.loads(row[0]) if row else None


def test_killed_before_the_cursor_was_committed_what_was_journaled_comes_once(
    tmp_path, immp_exe, clean_env
):
    # The window between a read's entries being committed and the cursor after them: killed
    # there, the next start replays the entries and the network sends the messages again from
    # the old cursor. Made on purpose: the entries are committed (their copies held by a slow
    # hook), the process killed, and the cursor put back where it was before the read.
    db = tmp_path / "bridge.db"
    count = 8
    text = "".join(f"m{n}\n" for n in range(count))
    (tmp_path / "in").write_text(text)
    bridge = Bridge(tmp_path, immp_exe, clean_env, f"sqlite:///{db}", delay=60)
    try:
        bridge.start()
        deadline = time.monotonic() + 30
        while _journal_state(db) != (count, len(text)):
            assert time.monotonic() < deadline, (_journal_state(db), bridge.stderr())
            time.sleep(0.05)
        bridge.kill()
        assert bridge.received() == []
        import sqlite3

        with sqlite3.connect(db) as conn:  # the cursor's commit never happened
            conn.execute("UPDATE state SET value = '0' WHERE key = 'input-offset' AND scope IN"
                         " (SELECT id FROM scopes WHERE area = 'src')")  # fmt: skip
        again = Bridge(tmp_path, immp_exe, clean_env, f"sqlite:///{db}", delay=0)
        again.runs = bridge.runs
        again.start()
        again.wait_for(count)
        time.sleep(0.5)  # nothing more (no second copy) arrives later
        assert again.received() == list(range(count))
        assert again.stop() == 0, again.stderr()
    finally:
        bridge.kill()
        if "again" in locals():
            again.kill()
    log = again.stderr()
    assert f"Journal: {count} entries from the last run" in log, log
    assert log.count("Journal: plug src sent again what the last run had journaled") == 1, log
