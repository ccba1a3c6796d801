"""
The IRC -> Matrix relay: how much latency IMMP adds, and how fast a burst gets through the
homeserver's rate limit.

    hatch run bench-matrix [-n 200] [--interval 0.2] [--burst 100]

A real Synapse (``tests/synapse.py``: its own venv, SQLite, ``rc_message`` at
``MESSAGES_PER_SECOND`` with a burst of ``MESSAGE_BURST`` for the bridge's bot) and a real ngircd
on loopback. The relay is a real ``immp`` process: the IRC plug in ``#bench`` and the Matrix plug
(the bot, not exempt from the rate limit) in one room, bridged by the sync hook. In this process
a watcher user long-polls ``/sync`` on the room and takes every arrival time with
``time.perf_counter()``.

Latency: ``-n`` pairs of messages one every ``--interval`` seconds (under the rate limit, so it
never holds one back), each tagged with a sequence number: one sent by a Matrix user straight to
the room (direct: PUT -> the watcher's /sync), then one by an IRC client into the channel
(relayed: IRC -> ngircd -> immp -> PUT -> /sync), alternating so that both meet the same load.
Printed: p50 and p99 of both, and the difference, which is what the relay adds (IMMP and the
one hop through ngircd).

Burst: ``--burst`` lines from IRC as fast as ngircd takes them. Printed: the time from the first
line to the last arrival on Matrix, whether all arrived once and in order, and the rate against
what the homeserver's limit allows (``MESSAGE_BURST`` at once, then ``MESSAGES_PER_SECOND``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the test harnesses

from tests.ngircd import NgircdServer, RawClient  # noqa: E402
from tests.synapse import (  # noqa: E402
    MESSAGE_BURST,
    MESSAGES_PER_SECOND,
    MatrixUser,
    SynapseServer,
    ensure_synapse,
)

TAG = re.compile(r"\b(lat|burst)-(\d+)\b")


def _immp() -> list[str]:
    found = shutil.which("immp")
    return [found] if found else [sys.executable, "-m", "immp"]


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


class Watcher:
    """A Matrix user long-polling /sync on one room: arrival time of each tagged message."""

    def __init__(self, user: MatrixUser, room: str):
        self.user = user
        self.room = room
        self.arrivals: dict[tuple[str, str, int], float] = {}  # (sender kind, tag, seq) -> t
        self.order: list[tuple[str, int]] = []
        self.bot: str | None = None
        self._changed = trio.Event()

    async def run(self) -> None:
        filter = json.dumps({"room": {"rooms": [self.room], "timeline": {"limit": 200}},
                             "presence": {"not_types": ["*"]}})  # fmt: skip
        since = None
        while True:
            params = {"filter": filter, "timeout": "30000"}
            if since:
                params["since"] = since
            reply = await self.user.http.get("/_matrix/client/v3/sync", params=params,
                                             timeout=60)  # fmt: skip
            now = time.perf_counter()
            batch = reply.json()
            first = since is None
            since = batch["next_batch"]
            if first:
                continue
            room = batch.get("rooms", {}).get("join", {}).get(self.room, {})
            for event in room.get("timeline", {}).get("events", []):
                body = (event.get("content") or {}).get("body", "")
                match = TAG.search(body)
                if event.get("type") != "m.room.message" or not match:
                    continue
                kind = "relay" if event["sender"] == self.bot else "direct"
                key = (kind, match[1], int(match[2]))
                if key in self.arrivals:
                    self.order.append(("dup", key[2]))
                    continue
                self.arrivals[key] = now
                self._changed.set()
                self._changed = trio.Event()
                if kind == "relay" and match[1] == "burst":
                    self.order.append(("burst", key[2]))

    async def wait(self, kind: str, tag: str, seq: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while (kind, tag, seq) not in self.arrivals:
                await self._changed.wait()
            return True
        return False


async def _drain(client: RawClient) -> None:
    while True:
        await client._read_line()  # answers PINGs; lines are kept by the client


async def bench(args: argparse.Namespace) -> None:
    ensure_synapse()
    directory = Path(tempfile.mkdtemp(prefix="immp-bench-matrix-"))
    synapse = SynapseServer(directory / "synapse")
    await trio.to_thread.run_sync(synapse.start)
    relay = None
    try:
        sender = await synapse.register("sender")
        watcher_user = await synapse.register("watcher")
        bot = await synapse.register("bot", exempt=False)
        room = await sender.create_room(invite=[watcher_user.user_id, bot.user_id])
        await watcher_user.join(room)
        await bot.join(room)
        async with NgircdServer.running(directory / "ngircd") as server:
            config = {
                "plugs": {
                    "irc": {"path": "irc", "config": {
                        "server": {"host": "127.0.0.1", "port": server.port},
                        "user": {"nick": "relay"}}},
                    "matrix": {"path": "matrix", "config": {
                        "homeserver": synapse.url, "user": bot.user_id,
                        "password": bot.password, "device": "BENCH"}},
                },
                "channels": {"irc-room": {"plug": "irc", "source": "#bench"},
                             "matrix-room": {"plug": "matrix", "source": room}},
                "hooks": {"sync": {"path": "sync", "config": {
                    "channels": {"bench": ["irc-room", "matrix-room"]}}}},
                "logging": {"version": 1, "root": {"level": "WARNING"}},
            }  # fmt: skip
            file = directory / "relay.yaml"
            file.write_text(yaml.safe_dump(config))
            log = (directory / "relay.log").open("wb")
            relay = await trio.lowlevel.open_process([*_immp(), str(file)],
                                                     stdin=subprocess.DEVNULL, stdout=log,
                                                     stderr=subprocess.STDOUT)  # fmt: skip
            log.close()
            async with RawClient.connected(server.port, "alice") as alice, \
                    trio.open_nursery() as nursery:  # fmt: skip
                await alice.join("#bench")
                nursery.start_soon(_drain, alice)  # after the join, which reads for itself
                watcher = Watcher(watcher_user, room)
                watcher.bot = bot.user_id
                nursery.start_soon(watcher.run)
                # The relay is up when a warm-up message gets through.
                with trio.fail_after(60):
                    for seq in range(10_000):
                        await alice.privmsg("#bench", f"lat-{1_000_000 + seq}")
                        if await watcher.wait("relay", "lat", 1_000_000 + seq, 1.0):
                            break
                await trio.sleep(0.5)
                # Direct and relayed alternate, so that both meet the same load on the
                # (shared) machine.
                direct, relayed = [], []
                for seq in range(args.n):
                    start = time.perf_counter()
                    await sender.send(room, f"lat-{seq}")
                    if await watcher.wait("direct", "lat", seq, 10):
                        direct.append(watcher.arrivals[("direct", "lat", seq)] - start)
                    await trio.sleep(args.interval)
                    start = time.perf_counter()
                    await alice.privmsg("#bench", f"lat-{seq}")
                    if await watcher.wait("relay", "lat", seq, 10):
                        relayed.append(watcher.arrivals[("relay", "lat", seq)] - start)
                    await trio.sleep(args.interval)
                _print_latency(direct, relayed, args)
                await trio.sleep(2)  # let the rate limit's bucket fill again
                if args.burst:
                    start = time.perf_counter()
                    for seq in range(args.burst):
                        await alice.privmsg("#bench", f"burst-{seq}")
                    done = await watcher.wait(
                        "relay", "burst", args.burst - 1, 30 + 3 * args.burst / MESSAGES_PER_SECOND
                    )
                    elapsed = time.perf_counter() - start
                    await trio.sleep(1)
                    _print_burst(watcher, args.burst, elapsed, done)
                nursery.cancel_scope.cancel()
    finally:
        if relay is not None and relay.poll() is None:
            relay.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await relay.wait()
            if relay.poll() is None:
                relay.kill()
        await trio.to_thread.run_sync(synapse.stop)


def _ms(value: float) -> str:
    return f"{value * 1000:7.1f} ms"


def _print_latency(direct: list[float], relayed: list[float], args) -> None:
    print(f"Latency, {args.n} messages one every {args.interval} s (shared machine: figures "
          "vary with the other load on it)")  # fmt: skip
    for name, values in (("direct  PUT -> /sync", direct), ("relayed IRC -> /sync", relayed)):
        print(f"  {name}: p50 {_ms(statistics.median(values))}  p99 "
              f"{_ms(_percentile(values, 99))}  ({len(values)}/{args.n} arrived)")  # fmt: skip
    added50 = statistics.median(relayed) - statistics.median(direct)
    added99 = _percentile(relayed, 99) - _percentile(direct, 99)
    print(f"  added by the relay: p50 {_ms(added50)}  p99 {_ms(added99)}")


def _print_burst(watcher: Watcher, count: int, elapsed: float, done: bool) -> None:
    got = [seq for kind, seq in watcher.order if kind == "burst"]
    dups = sum(1 for kind, _ in watcher.order if kind == "dup")
    allowed = max(0.0, (count - MESSAGE_BURST) / MESSAGES_PER_SECOND)
    print(f"Burst of {count} from IRC through rc_message ({MESSAGES_PER_SECOND:g}/s, burst "
          f"{MESSAGE_BURST}):")  # fmt: skip
    print(f"  {len(got)}/{count} arrived, in order: {got == list(range(count))}, duplicates: "
          f"{dups}{'' if done else ' (timed out)'}")  # fmt: skip
    print(f"  {elapsed:.2f} s, {len(got) / elapsed:.1f} msg/s; the limit allows {count} in "
          f"{allowed:.2f} s ({count / allowed if allowed else math.inf:.1f} msg/s): "
          f"{allowed / elapsed * 100 if elapsed else 0:.0f}% of it")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="latency messages (default 200)")
    parser.add_argument(
        "--interval", type=float, default=0.2, help="seconds between latency messages (default 0.2)"
    )
    parser.add_argument("--burst", type=int, default=100, help="burst messages (default 100)")
    trio.run(bench, parser.parse_args())


if __name__ == "__main__":
    main()
