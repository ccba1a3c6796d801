"""
The journal from Matrix to IRC: a real ``immp`` process bridging a room of a real Synapse
(messages posted by a user through the client API while it runs) into a real ngircd channel,
killed with SIGKILL while messages stream and started again on the same SQLite store.

On IRC (a raw client in the channel) every message arrives at most once and in order, and the
only ones missing are those the restarted process logged as in doubt (``journal-in-doubt:
drop``): at most the one message in flight at each kill. Messages posted while no process ran
arrive too: the sync token never moved past an event the journal lacks. IRC's flood control is
slow enough here that lines queue behind it, so that a kill finds some written but not
acknowledged and others not written at all.
"""

from __future__ import annotations

import random
import signal

import pytest
import trio
import yaml

from tests.faults.helpers import ImmpProcess
from tests.irc.conftest import ngircd_available  # noqa: F401 (a fixture)
from tests.journal import servers
from tests.matrix.conftest import alice, plug_config, synapse  # noqa: F401 (fixtures)
from tests.ngircd import NgircdServer, RawClient

N = 30
# One token per line and one per acknowledging PING: 5 one-line messages a second, fewer than
# are posted, so that lines queue.
SEND_DELAY = 0.1


class Scenario:
    """One bridge (its config file and store), its processes in turn, and what IRC showed."""

    def __init__(self, file, exe, env, watcher: RawClient, user, room: str):
        self.file, self.exe, self.env = file, exe, env
        self.watcher, self.user, self.room = watcher, user, room
        self.procs: list[ImmpProcess] = []
        self.got: list[int] = []
        self.posted = 0
        self.while_down: list[int] = []  # posted after a kill, before the next process was ready
        self.kills: list[dict] = []  # at each kill: posted so far, arrived on IRC so far

    @property
    def proc(self) -> ImmpProcess:
        return self.procs[-1]

    def start(self) -> None:
        self.procs.append(ImmpProcess([self.exe, str(self.file)], env=self.env))

    async def kill(self) -> None:
        await servers.read_numbers(self.watcher, self.got, self.posted, 0.05)  # what arrived by now
        self.kills.append({"posted": self.posted, "arrived": len(self.got)})
        if self.proc.proc.poll() is None:
            self.proc.proc.kill()
        await trio.to_thread.run_sync(self.proc.finish)

    async def post(self, count: int, *, kill_after: int | None = None) -> None:
        """Post the next ``count`` messages; with ``kill_after``, kill and restart after that
        many in all."""
        for _ in range(count):
            down = self.proc.proc.poll() is not None or not servers.is_ready(self.proc)
            await self.user.send(self.room, f"m{self.posted}")
            if down:
                self.while_down.append(self.posted)
            self.posted += 1
            await trio.sleep(0.005)
            if kill_after is not None and self.posted == kill_after:
                await self.kill()
                self.start()

    async def settle(self, timeout: float = 40) -> None:
        """
        Post one more message (no kill follows it: it cannot be in doubt), read the channel
        until it arrived, then a moment longer.
        """
        await self.post(1)
        await servers.read_numbers(self.watcher, self.got, self.posted - 1, timeout)
        await servers.read_numbers(self.watcher, self.got, self.posted, 0.5)  # nothing more comes

    async def stop(self) -> None:
        self.proc.proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(self.proc.finish, 20) == 0, self.proc.stderr()

    def check(self, **about) -> dict:
        """Assert on what IRC showed; what each run logged as in doubt, for the report."""
        doubted = [servers.in_doubt(proc.stderr()) for proc in self.procs]
        flat = {n for run in doubted for n in run}
        missing = sorted(set(range(self.posted)) - set(self.got))
        replayed = [line.strip().partition("Journal: ")[2] for proc in self.procs
                    for line in proc.err if "from the last run" in line]  # fmt: skip
        outcome = {**about, "kills": self.kills, "replayed": replayed, "in_doubt": doubted,
                   "missing": missing, "posted_while_down": len(self.while_down)}  # fmt: skip
        print("matrix->irc kill run:", outcome)
        assert self.got == sorted(set(self.got)), self.got  # in order, none twice
        assert set(missing) <= flat, outcome  # nothing lost but what was in doubt
        assert all(len(run) <= 1 for run in doubted), outcome  # only the message in flight
        assert set(self.while_down) <= set(self.got), outcome  # fetched after the restart
        return outcome


@pytest.fixture
async def bridge(synapse, alice, ngircd_available, tmp_path, immp_exe, clean_env):  # noqa: F811
    """A room of alice's and an ngircd channel, bridged by a first process (ready)."""
    bot = await synapse.register("jbot")
    try:
        room = await servers.room_with(alice, bot)
        async with NgircdServer.running(tmp_path / "ngircd") as irc:
            async with RawClient.connected(irc.port, "watcher") as watcher:
                await watcher.join("#town")
                config = {
                    "plugs": {
                        "matrix": {"path": "matrix", "config": plug_config(synapse, bot)},
                        "irc": servers.irc_plug(irc.port, **{"send-delay": SEND_DELAY}),
                    },
                    "channels": {
                        "a": {"plug": "matrix", "source": room},
                        "town": {"plug": "irc", "source": "#town"},
                    },
                    "hooks": {
                        "sync": {"path": "sync", "config": {"channels": {"town": ["a", "town"]}}}
                    },
                    "store": f"sqlite:///{tmp_path / 'immp.db'}",
                    "host": {"journal": True},
                    "logging": servers.LOGGING,
                }
                file = tmp_path / "immp.yaml"
                file.write_text(yaml.safe_dump(config))
                scenario = Scenario(file, immp_exe, clean_env, watcher, alice, room)
                try:
                    scenario.start()
                    await servers.ready(scenario.proc)
                    yield scenario
                finally:
                    for proc in scenario.procs:
                        if proc.proc.poll() is None:
                            proc.proc.kill()
                        await trio.to_thread.run_sync(proc.finish)
    finally:
        await bot.aclose()


@pytest.mark.parametrize("seed", range(3))
async def test_killed_while_messages_stream_irc_gets_each_at_most_once_in_order(bridge, seed):
    kill_after = random.Random(seed).randrange(6, N - 6)
    await bridge.post(N, kill_after=kill_after)
    await servers.ready(bridge.proc)
    await bridge.settle()
    await bridge.stop()
    bridge.check(seed=seed, killed_after=kill_after)


async def test_killed_during_startup_and_during_shutdown(bridge):
    await bridge.post(10)
    await bridge.kill()  # lines still queued behind flood control
    bridge.start()
    await trio.sleep(0.3)  # the interpreter is still importing / opening the store
    await bridge.kill()
    await bridge.post(5)  # nobody syncs these: the next process must fetch them
    bridge.start()
    await servers.ready(bridge.proc)
    await bridge.post(10)
    bridge.proc.proc.send_signal(signal.SIGTERM)
    await trio.sleep(0.1)  # closing: hooks draining the backlog, the store being flushed
    await bridge.kill()
    bridge.start()
    await servers.ready(bridge.proc)
    await bridge.settle()
    await bridge.stop()
    bridge.check(killed="startup, shutdown")
