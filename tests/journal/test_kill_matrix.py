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

from tests.conftest import ROOT
from tests.faults.helpers import ImmpProcess
from tests.journal.servers import LOGGING, ready, room_with
from tests.matrix.conftest import alice, bob, plug_config, synapse  # noqa: F401 (fixtures)

N = 30


def _config(synapse, bot, room_a: str, room_b: str, store: str, **hooks) -> dict:  # noqa: F811
    """The bot's plug, rooms a and b bridged by the sync hook (and ``hooks``), the journal on."""
    return {
        "plugs": {"matrix": {"path": "matrix", "config": plug_config(synapse, bot)}},
        "channels": {
            "a": {"plug": "matrix", "source": room_a},
            "b": {"plug": "matrix", "source": room_b},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"bridge": ["a", "b"]}}},
            **hooks,
        },
        "store": store,
        "host": {"journal": True},
        "logging": LOGGING,
        "path": [str(ROOT)],
    }


def _numbers(events: list[dict], sender: str) -> list[int]:
    """The numbers of the ``m<N>`` messages ``sender`` posted, in order."""
    bodies = [ev["content"].get("body", "") for ev in events if ev["sender"] == sender]
    return [int(m.group(1)) for body in bodies if (m := re.search(r"m(\d+)$", body))]


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
        file = tmp_path / "immp.yaml"
        file.write_text(yaml.safe_dump(_config(synapse, bot, room_a, room_b, store_url)))

        def copies() -> list[int]:
            return _numbers(events, bot.user_id)

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


def _stored(db, query: str, *args):
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # not made yet
        return None
    try:
        return conn.execute(query, args).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


_SINCE = ("SELECT value FROM state JOIN scopes ON scopes.id = state.scope"
          " WHERE area = 'matrix' AND key = 'since'")  # fmt: skip


async def test_killed_before_the_sync_token_was_committed_matrix_gets_each_once(
    synapse,  # noqa: F811
    alice,  # noqa: F811
    bob,  # noqa: F811
    tmp_path,
    immp_exe,
    clean_env,
):
    # The window between a sync batch's entries being committed and the token after them: made
    # on purpose (the copies held by a slow hook, the process killed, the token put back). The
    # next start replays the entries, and Synapse sends the same events again from the old
    # token: each must reach the other room once.
    bot = await synapse.register("wbot")
    db = tmp_path / "bridge.db"
    count = 5
    try:
        room_a = await room_with(alice, bot)
        room_b = await room_with(bob, bot)

        def write_config(hooks: dict) -> None:
            config = _config(synapse, bot, room_a, room_b, f"sqlite:///{db}", **hooks)
            file.write_text(yaml.safe_dump(config))

        async def answers() -> int:
            events = await alice.messages(room_a, limit=100)
            return sum(1 for ev in events if ev["sender"] == bot.user_id
                       and "Send !help NAME" in ev["content"].get("body", ""))  # fmt: skip

        file = tmp_path / "immp.yaml"
        # Copies to room b wait; the commands hook answers in room a at once.
        commands = {"commands": {"path": "commands", "config": {"prefix": ["!"]}}}
        slow = {"path": "tests.journal.slow.SlowSends", "priority": 1,
                "config": {"delay": 60, "sources": [room_b]}}  # fmt: skip
        write_config({**commands, "slow": slow})
        proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
        try:
            await ready(proc)
            with trio.fail_after(20):
                while (before := _stored(db, _SINCE)) is None:
                    await trio.sleep(0.05)
            for number in range(count):
                await alice.send(room_a, f"m{number}")
            await alice.send(room_a, "!help")
            with trio.fail_after(20):  # the entries and the token after them committed
                while not (_stored(db, "SELECT count(*) FROM journal") == (count + 1,)
                           and _stored(db, _SINCE) != before):  # fmt: skip
                    await trio.sleep(0.05)
            proc.proc.kill()
            await trio.to_thread.run_sync(proc.proc.wait)
            import sqlite3

            with sqlite3.connect(db) as conn:  # the token's commit never happened
                conn.execute("UPDATE state SET value = ? WHERE key = 'since' AND scope IN"
                             " (SELECT id FROM scopes WHERE area = 'matrix')", before)  # fmt: skip
            with trio.fail_after(20):
                while not await answers():  # answered before the kill
                    await trio.sleep(0.1)
            write_config(commands)
            proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
            await ready(proc)

            def copies() -> list[int]:
                return _numbers(events, bot.user_id)

            with trio.fail_after(60):
                while True:
                    events = await bob.messages(room_b, limit=100)
                    if len(copies()) >= count:
                        break
                    await trio.sleep(0.3)
            await trio.sleep(1.5)  # nothing more (no second copy) arrives later
            events = await bob.messages(room_b, limit=100)
            n_answers = await answers()
            proc.proc.send_signal(signal.SIGTERM)
            await trio.to_thread.run_sync(proc.proc.wait, 20)
        finally:
            if proc.proc.poll() is None:
                proc.proc.kill()
        assert copies() == list(range(count)), copies()
        assert n_answers == 1  # the command, read again, was not run again
        log = proc.stderr()
        assert f"Journal: {count + 1} entries from the last run" in log, log
        assert log.count("Journal: plug matrix sent again what the last run had journaled") == 1, (
            log
        )
    finally:
        await bot.aclose()
