"""
The journal on Matrix: a real ``immp`` process bridging two rooms of a real Synapse, killed with
SIGKILL while messages stream into one of them and started again on the same store. Every
message arrives in the other room exactly once and in order: the sync token moves only after
the batch is journaled, and a send repeated after the crash reuses the txnId derived from the
journal's delivery key, so Synapse gives back the event of the first. Two runs on SQLite, one
on the session's PostgreSQL server.
"""

from __future__ import annotations

import random
import re
import signal

import pytest
import trio
import yaml

from tests.faults.helpers import ImmpProcess
from tests.journal.servers import LOGGING, ready, room_with
from tests.matrix.conftest import alice, bob, plug_config, synapse  # noqa: F401 (fixtures)

N = 30


@pytest.mark.parametrize(
    ("seed", "store_url"),
    [(0, "sqlite"), (1, "sqlite"), (2, "postgresql")],
    indirect=["store_url"],
)
async def test_killed_while_messages_stream_matrix_gets_each_once_in_order(
    synapse,  # noqa: F811
    alice,  # noqa: F811
    bob,  # noqa: F811
    tmp_path,
    immp_exe,
    clean_env,
    store_url,
    seed,
):
    bot = await synapse.register("jbot")
    try:
        room_a = await room_with(alice, bot)
        room_b = await room_with(bob, bot)
        config = {
            "plugs": {"matrix": {"path": "matrix", "config": plug_config(synapse, bot)}},
            "channels": {
                "a": {"plug": "matrix", "source": room_a},
                "b": {"plug": "matrix", "source": room_b},
            },
            "hooks": {"sync": {"path": "sync", "config": {"channels": {"bridge": ["a", "b"]}}}},
            "store": store_url,
            "host": {"journal": True},
            "logging": LOGGING,
        }
        file = tmp_path / "immp.yaml"
        file.write_text(yaml.safe_dump(config))

        def copies() -> list[int]:
            return [int(m.group(1)) for ev in events if ev["sender"] == bot.user_id
                    and (m := re.search(r"m(\d+)$", ev["content"].get("body", "")))]  # fmt: skip

        proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
        try:
            await ready(proc)
            kill_at = random.Random(seed).randrange(5, N - 5)
            for number in range(N):
                await alice.send(room_a, f"m{number}")
                await trio.sleep(0.02)
                if number == kill_at:
                    proc.proc.kill()
                    await trio.to_thread.run_sync(proc.proc.wait)
                    proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
            await ready(proc)
            with trio.fail_after(60):
                while True:
                    events = await bob.messages(room_b, limit=200)
                    if len(copies()) >= N:
                        break
                    await trio.sleep(0.3)
            await trio.sleep(1.0)  # nothing more (no duplicate) arrives later
            events = await bob.messages(room_b, limit=200)
            proc.proc.send_signal(signal.SIGTERM)
            await trio.to_thread.run_sync(proc.proc.wait, 20)
        finally:
            if proc.proc.poll() is None:
                proc.proc.kill()
        print("matrix kill run:", {"seed": seed, "killed_after": kill_at,
                                   "replay": [ln.strip() for ln in proc.err
                                              if "from the last run" in ln]})  # fmt: skip
        assert copies() == list(range(N)), copies()
    finally:
        await bot.aclose()
