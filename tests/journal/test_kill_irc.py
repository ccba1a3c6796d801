"""
The journal on IRC (no idempotency): a real ``immp`` process bridging a demo network (reading
its messages from a file) into a real ngircd channel, killed with SIGKILL while lines stream and
started again on the same store. IRC gets every line at most once and in order; the only lines
missing are those in doubt (written, not acknowledged when the process died), each logged with
its text (``journal-in-doubt: drop``): at most the one message in flight.
"""

from __future__ import annotations

import random
import threading

import pytest
import trio
import yaml

from tests.irc.conftest import ngircd_available  # noqa: F401 (a fixture)
from tests.journal.servers import in_doubt, irc_plug, read_numbers
from tests.journal.test_kill import ROOT, Bridge, _stream
from tests.ngircd import NgircdServer, RawClient

N = 80


def _config(tmp_path, port: int) -> dict:
    return {
        "path": [ROOT],
        "store": f"sqlite:///{tmp_path / 'bridge.db'}",
        "host": {"journal": True},
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


@pytest.mark.parametrize("seed", range(3))
async def test_killed_while_lines_stream_irc_gets_each_at_most_once_in_order(
    ngircd_available,  # noqa: F811
    tmp_path,
    immp_exe,
    clean_env,
    seed,
):
    async with NgircdServer.running(tmp_path / "ngircd") as server:
        async with RawClient.connected(server.port, "watcher") as watcher:
            await watcher.join("#town")
            bridge = Bridge(tmp_path, immp_exe, clean_env)
            (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(_config(tmp_path, server.port)))
            got: list[int] = []

            done = threading.Event()
            writer = threading.Thread(target=_stream, args=(tmp_path / "in", 0, N, 40, done))
            bridge.start()
            writer.start()
            try:
                await read_numbers(watcher, got, N - 1, random.Random(seed).uniform(1.5, 2.5))
                bridge.kill()
                before = len(got)
                bridge.start()
                await trio.to_thread.run_sync(writer.join)
                await read_numbers(watcher, got, N - 1, 30)
                await trio.sleep(0.5)
                await read_numbers(watcher, got, N - 1, 0.5)
                assert await trio.to_thread.run_sync(bridge.stop) == 0
            finally:
                bridge.kill()
                await trio.to_thread.run_sync(writer.join)
    doubted = in_doubt(bridge.stderr(2))
    missing = sorted(set(range(N)) - set(got))
    print("irc kill run:", {"seed": seed, "before_kill": before, "in_doubt": doubted,
                            "missing": missing})  # fmt: skip
    assert got == sorted(set(got)), got  # in order, none twice
    assert set(missing) <= set(doubted), (missing, doubted)  # nothing lost but what was in doubt
    assert len(doubted) <= 1  # only the message in flight (each is acknowledged before the next)
