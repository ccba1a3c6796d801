"""
The journal on IRC (no idempotency): a real ``immp`` process bridging a demo network (reading
its messages from a file) into a real ngircd channel, killed with SIGKILL while lines stream and
started again on the same store. IRC gets every line at most once and in order; the only lines
missing are those in doubt (written, not acknowledged when the process died), each logged with
its text (``journal-in-doubt: drop``): at most the one message in flight. With
``journal-in-doubt: resend`` it is the other way round: nothing is missing, and the one line in
flight may come twice, in its place. Each policy runs three times on SQLite and once on the
session's PostgreSQL server.
"""

from __future__ import annotations

import random
import threading
from functools import partial

import pytest
import trio
import yaml

from tests.irc.conftest import ngircd_available  # noqa: F401 (a fixture)
from tests.journal.servers import doubt_count, in_doubt, irc_plug, read_numbers
from tests.journal.test_kill import ROOT, Bridge, _stream
from tests.ngircd import NgircdServer, RawClient

N = 80


def _config(tmp_path, port: int, in_doubt: str, store: str) -> dict:
    return {
        "path": [ROOT],
        "store": store,
        "host": {"journal": True, "journal-in-doubt": in_doubt},
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
            "irc": irc_plug(port),
        },
        "channels": {
            "a": {"plug": "src", "source": "a"},
            "town": {"plug": "irc", "source": "#town"},
        },
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"town": ["a", "town"]}}}},
    }


async def _killed_run(tmp_path, immp_exe, clean_env, store: str, seed: int, in_doubt: str):
    """Stream N lines, kill the bridge at a random point, start it again: (got, before, stderr)."""
    async with NgircdServer.running(tmp_path / "ngircd") as server:
        async with RawClient.connected(server.port, "watcher") as watcher:
            await watcher.join("#town")
            bridge = Bridge(tmp_path, immp_exe, clean_env)
            config = _config(tmp_path, server.port, in_doubt, store)
            (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(config))
            got: list[int] = []

            done = threading.Event()
            writer = threading.Thread(target=_stream, args=(tmp_path / "in", 0, N, 40, done))
            bridge.start()
            writer.start()
            try:
                await read_numbers(watcher, got, N - 1, random.Random(seed).uniform(1.5, 2.5))
                bridge.kill()
                before, mark = len(got), len(watcher.lines)
                bridge.start()
                await trio.to_thread.run_sync(writer.join)
                await read_numbers(watcher, got, N - 1, 30)
                # Then whatever else comes once the restarted bridge is back in the channel (a
                # line sent again comes after the last one seen).
                with trio.fail_after(30):
                    while not any(line.startswith(":bridge!") and " JOIN " in line
                                  for line in watcher.lines[mark:]):  # fmt: skip
                        await read_numbers(watcher, got, N, 0.2)
                await read_numbers(watcher, got, N, 1.0)
                assert await trio.to_thread.run_sync(bridge.stop) == 0
            finally:
                bridge.kill()
                await trio.to_thread.run_sync(writer.join)
    return got, before, bridge.stderr(2)


#: Three runs on SQLite, one on the session's PostgreSQL server (``store_url``, indirect).
RUNS = pytest.mark.parametrize(
    ("seed", "store_url"),
    [(0, "sqlite"), (1, "sqlite"), (2, "sqlite"), (3, "postgresql")],
    indirect=["store_url"],
)


@pytest.fixture
def killed_run(ngircd_available, tmp_path, immp_exe, clean_env, store_url):  # noqa: F811
    """``await killed_run(seed, in_doubt)``: :func:`_killed_run` on the test's store."""
    return partial(_killed_run, tmp_path, immp_exe, clean_env, store_url)


@RUNS
async def test_killed_while_lines_stream_irc_gets_each_at_most_once_in_order(
    killed_run, store_url, seed
):
    got, before, stderr = await killed_run(seed, "drop")
    doubted = in_doubt(stderr)
    missing = sorted(set(range(N)) - set(got))
    print("irc kill run:", {"seed": seed, "store": store_url.partition(":")[0],
                            "before_kill": before, "in_doubt": doubted,
                            "missing": missing})  # fmt: skip
    assert got == sorted(set(got)), got  # in order, none twice
    assert set(missing) <= set(doubted), (missing, doubted)  # nothing lost but what was in doubt
    assert len(doubted) <= 1  # only the message in flight (each is acknowledged before the next)


@RUNS
async def test_killed_with_resend_irc_gets_every_line_and_only_the_one_in_doubt_twice(
    killed_run, store_url, seed
):
    got, before, stderr = await killed_run(seed, "resend")
    doubted = doubt_count(stderr)
    twice = sorted(n for n in set(got) if got.count(n) > 1)
    print("irc kill run, resend:", {"seed": seed, "store": store_url.partition(":")[0],
                                    "before_kill": before, "in_doubt": doubted,
                                    "twice": twice})  # fmt: skip
    assert sorted(set(got)) == list(range(N)), got  # nothing lost, in doubt or not
    assert got == sorted(got), got  # in order: a line sent again comes in its own place
    assert len(twice) <= doubted <= 1, (twice, doubted)  # only the line in flight, at most once


@pytest.mark.parametrize("close_timeout", [1.0, 30.0], ids=["backlog-left", "backlog-drained"])
async def test_sigterm_with_a_backlog_leaves_nothing_in_doubt(
    ngircd_available,  # noqa: F811 (the fixture)
    tmp_path,
    immp_exe,
    clean_env,
    close_timeout,
):
    # A clean stop (SIGTERM) while flood control holds a backlog of lines: what went out was
    # acknowledged before the plug said QUIT, and what did not is kept; the next start sends
    # the rest, each line once and in order, and finds nothing in doubt.
    async with NgircdServer.running(tmp_path / "ngircd") as server:
        async with RawClient.connected(server.port, "watcher") as watcher:
            await watcher.join("#town")
            config = _config(tmp_path, server.port, "drop", f"sqlite:///{tmp_path / 'b.db'}")
            config["host"]["close-timeout"] = close_timeout
            config["plugs"]["irc"]["config"].update({"send-delay": 0.05, "send-burst": 1})
            bridge = Bridge(tmp_path, immp_exe, clean_env)
            (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(config))
            (tmp_path / "in").write_text("".join(f"m{n}\n" for n in range(40)))
            got: list[int] = []
            bridge.start()
            try:
                await read_numbers(watcher, got, 5, 30)
                assert await trio.to_thread.run_sync(bridge.stop) == 0
                first = bridge.stderr(1)
                bridge.start()
                await read_numbers(watcher, got, 39, 40)
                await read_numbers(watcher, got, 40, 1.0)  # nothing more comes
                assert await trio.to_thread.run_sync(bridge.stop) == 0
            finally:
                bridge.kill()
    second = bridge.stderr(2)
    print("irc sigterm run:", {"close_timeout": close_timeout, "got": len(got),
                               "in_doubt": doubt_count(second)})  # fmt: skip
    assert got == list(range(40)), (got, first, second)
    assert doubt_count(second) == 0 and in_doubt(second) == [], second
    if close_timeout < 10:  # the backlog could not drain: the next start sent the rest
        assert "from the last run" in second, second
