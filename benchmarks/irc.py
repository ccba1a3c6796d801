"""
The IRC relay: how much latency IMMP adds to a message, and how fast it relays a burst.

    hatch run bench-irc [-n 300] [--interval 0.05] [--runs 1] [--burst 500] [--skip-burst]

A real ngircd on loopback (``tests/ngircd.py``, ngircd's own penalties off), two channels, and
three raw clients in this process: alice and bob in ``#a``, carol in ``#b``. The relay is a real
``immp`` process started on a generated config: the IRC plug (nick ``relay``) in ``#a`` and
``#b``, and the sync hook bridging them. It runs in its own process, as it does in production,
so that its work does not hold up the raw clients' reads (which would make the direct figure
look slower than it is); every receive time is taken with ``time.perf_counter()`` in this
process.

Latency: alice sends ``-n`` messages, each tagged with a sequence number, one every
``--interval`` seconds (after a few untimed warm-up messages). bob sees each directly; carol
sees the relay's copy. The relay's plug has a ``send-delay`` of ``LATENCY_SEND_DELAY``, so at
this pace its flood control never holds a line back: this phase measures IMMP's own latency
(and one more pass through ngircd and loopback). Printed: p50 and p99 of each path and the
difference at p50. With ``--runs`` above 1 each run has its own relay process and the median
of the runs' figures is printed.

The pace matters beyond flood control: after a line, when nothing else waits, the plug writes
a PING of its own (to learn that the line arrived). ngircd does not set TCP_NODELAY, so its
next line to the relay waits until the relay's kernel acknowledges that PING's PONG, which
delayed acknowledgement holds back for about 40 ms. Messages more than ~45 ms apart never meet
this; at ``--interval 0.03`` the relayed p50 is about 20 ms (see docs/performance.md).

Burst: alice sends ``--burst`` messages as fast as the server takes them, and the relay runs
with the IRC plug's DEFAULT flood control (``send-burst`` 5 lines, then one per ``send-delay``
0.5 s). Printed: the time from alice's first line to carol's last, whether every message
arrived once and in order, and the rate against the rate that flood control allows. 500
messages take over four minutes: progress is shown every 50 messages (``--skip-burst`` leaves
this phase out).
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for the ngircd harness of the tests

from _measure import immp_command, percentile  # noqa: E402
from tests.ngircd import NgircdServer, RawClient, parse_privmsg  # noqa: E402

from immp_irc.outgoing import ACK_EVERY  # noqa: E402
from immp_irc.plug import SCHEMA as IRC_SCHEMA  # noqa: E402

NICK = "relay"
# The latency phase's plug flood control: a token a line (and one for the plug's acknowledging
# PING after a line) comes back every 5 ms, far quicker than alice's pace.
LATENCY_SEND_DELAY = 0.005
# The IRC plug's defaults, used as they are in the burst phase (read from its schema).
_DEFAULTS = {key.key: key.default for key in IRC_SCHEMA.spec if hasattr(key, "default")}
DEFAULT_SEND_DELAY = _DEFAULTS["send-delay"]
DEFAULT_SEND_BURST = _DEFAULTS["send-burst"]
# The plug writes an acknowledging PING (which takes a token) after every ACK_EVERY lines in a
# row, so a long burst costs 1/ACK_EVERY more time.
WARMUP = 10
PROGRESS_EVERY = 50
FILLER = "the quick brown fox jumps over the lazy dog"
TAG = re.compile(r"(?P<phase>\S+) seq (?P<seq>\d+):")


class Receiver:
    """
    Reads everything one raw client receives (so that it answers the server's PINGs) and keeps
    the receive time of each tagged message of the current phase, first arrival only.
    """

    def __init__(self, client: RawClient):
        self.client = client
        self.phase: str | None = None
        self.times: dict[int, float] = {}
        self.order: list[int] = []  # every arrival, duplicates included
        self.others: list[str] = []  # lines other than tagged messages, since the last reset
        self.on_message: Callable[[int], None] | None = None  # on a first arrival
        self._changed = trio.Event()

    def reset(self, phase: str | None) -> None:
        self.phase, self.times, self.order, self.others = phase, {}, [], []
        self.on_message = None

    async def run(self) -> None:
        while True:
            line = await self.client.expect(" ", timeout=math.inf)
            now = time.perf_counter()
            match = TAG.search(parse_privmsg(line)[2]) if " PRIVMSG " in line else None
            if match and match["phase"] == self.phase:
                seq = int(match["seq"])
                self.order.append(seq)
                if seq not in self.times:
                    self.times[seq] = now
                    if self.on_message:
                        self.on_message(seq)
            else:
                self.others.append(line)
            self._changed.set()
            self._changed = trio.Event()

    async def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``check()`` is true; ``False`` if ``timeout`` passes first."""
        with trio.move_on_after(timeout):
            while not check():
                await self._changed.wait()
            return True
        return False

    async def wait_joined(self, channel: str, timeout: float = 20) -> None:
        def joined() -> bool:
            return any(ln.startswith(f":{NICK}!") and " JOIN " in ln and channel in ln
                       for ln in self.others)  # fmt: skip

        if not await self.wait(joined, timeout):
            raise RuntimeError(f"the relay did not join {channel} within {timeout} s")


def _relay_config(port: int, plug_changes: dict) -> dict:
    return {
        "plugs": {
            "irc": {
                "path": "irc",
                "config": {
                    "server": {"host": "127.0.0.1", "port": port},
                    "user": {"nick": NICK, "real-name": "IMMP benchmark relay"},
                    **plug_changes,
                },
            }
        },
        "channels": {
            "chan-a": {"plug": "irc", "source": "#a"},
            "chan-b": {"plug": "irc", "source": "#b"},
        },
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"ab": ["chan-a", "chan-b"]}}}},
    }


class Relay:
    """One ``immp`` process on a generated config; its log goes to a file."""

    def __init__(self, directory: Path, name: str, port: int, plug_changes: dict):
        self.config = directory / f"{name}.yaml"
        self.log = directory / f"{name}.log"
        self.config.write_text(yaml.safe_dump(_relay_config(port, plug_changes)))
        self.process: trio.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = await trio.lowlevel.open_process(
                [*immp_command(), str(self.config)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await process.wait()
            return
        process.kill()
        await process.wait()

    def complaints(self) -> list[str]:
        """Warnings, errors and tracebacks from the relay's log."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [ln for ln in lines if re.search(r"WARNING|ERROR|CRITICAL|Traceback", ln)]


class Bench:
    """The server, the three raw clients and their receivers, for the whole invocation."""

    def __init__(self, directory: Path, server: NgircdServer, alice, bob, carol):
        self.directory = directory
        self.server = server
        self.alice = alice
        self.bob, self.carol = Receiver(bob), Receiver(carol)

    async def _relay_ready(self, relay: Relay) -> None:
        self.bob.reset(None)
        self.carol.reset(None)
        await relay.start()
        await self.bob.wait_joined("#a")
        await self.carol.wait_joined("#b")

    async def latency(self, run: int, count: int, interval: float) -> dict:
        """One latency run with a relay of its own; returns the figures."""
        relay = Relay(self.directory, f"latency-{run}", self.server.port,
                      {"send-delay": LATENCY_SEND_DELAY})  # fmt: skip
        try:
            await self._relay_ready(relay)
            await trio.sleep(1)  # the relay's WHO replies and so on, out of the way
            # One paced sequence: the first WARMUP messages are not timed. (A pause between
            # warm-up and timed messages would change what the first timed one meets.)
            sent = await self._paced(f"latency{run}", WARMUP + count, interval)
            await self.carol.wait(lambda: len(self.carol.times) >= WARMUP + count, 10)
            await self.bob.wait(lambda: len(self.bob.times) >= WARMUP + count, 1)
        finally:
            await relay.stop()
        timed = [seq for seq in sent if seq >= WARMUP]
        direct = [self.bob.times[s] - sent[s] for s in timed if s in self.bob.times]
        relayed = [self.carol.times[s] - sent[s] for s in timed if s in self.carol.times]
        if not direct or not relayed:
            raise RuntimeError(
                f"run {run}: {len(direct)} messages arrived directly, {len(relayed)} relayed; "
                f"bob's last other lines {self.bob.others[-5:]}, carol's "
                f"{self.carol.others[-5:]}; the relay's log ends:\n"
                + relay.log.read_text(errors="replace")[-3000:]
            )
        result = {
            "direct_p50": percentile(direct, 50),
            "direct_p99": percentile(direct, 99),
            "relayed_p50": percentile(relayed, 50),
            "relayed_p99": percentile(relayed, 99),
            "lost_direct": count - len(direct),
            "lost_relayed": count - len(relayed),
            "in_order": self.carol.order == sorted(self.carol.order),
            "complaints": relay.complaints(),
        }
        result["added_p50"] = result["relayed_p50"] - result["direct_p50"]
        return result

    async def _paced(self, phase: str, count: int, interval: float) -> dict[int, float]:
        self.bob.reset(phase)
        self.carol.reset(phase)
        sent = {}
        start = trio.current_time()
        for seq in range(count):
            await trio.sleep_until(start + seq * interval)
            sent[seq] = time.perf_counter()
            await self.alice.privmsg("#a", f"{phase} seq {seq}: {FILLER}")
        return sent

    async def burst(self, count: int) -> dict:
        """The burst with the plug's default flood control; returns the figures."""
        relay = Relay(self.directory, "burst", self.server.port, {})
        try:
            await self._relay_ready(relay)
            # The relay's JOINs and WHOs took tokens: let the bucket fill up again.
            await trio.sleep(DEFAULT_SEND_BURST * DEFAULT_SEND_DELAY + 1)
            self.bob.reset("burst")
            self.carol.reset("burst")
            started = time.perf_counter()

            def progress(seq: int) -> None:
                got = len(self.carol.times)
                if got % PROGRESS_EVERY == 0:
                    print(f"  burst: carol has {got}/{count} after "
                          f"{time.perf_counter() - started:.1f} s", file=sys.stderr,
                          flush=True)  # fmt: skip

            self.carol.on_message = progress
            for seq in range(count):
                await self.alice.privmsg("#a", f"burst seq {seq}: {FILLER}")
            alice_done = time.perf_counter() - started
            await self.bob.wait(lambda: len(self.bob.times) >= count, 30)
            bob_done = time.perf_counter() - started
            allowed = _allowed_seconds(count, with_acks=True)
            complete = await self.carol.wait(lambda: len(self.carol.times) >= count,
                                             allowed * 1.5 + 60)  # fmt: skip
            carol_done = time.perf_counter() - started
        finally:
            await relay.stop()
        return {
            "count": count,
            "alice_s": alice_done,
            "direct_s": bob_done,
            "direct_complete": len(self.bob.times) == count,
            "relayed_s": carol_done if complete else None,
            "received": len(self.carol.times),
            "in_order": self.carol.order == list(range(count)),
            "duplicates": len(self.carol.order) - len(self.carol.times),
            "complaints": relay.complaints(),
        }


def _allowed_seconds(count: int, *, with_acks: bool) -> float:
    """How long flood control takes for ``count`` lines: a burst, then one per send-delay."""
    # The last line goes out before the PING that follows it.
    lines = count + ((count - 1) // ACK_EVERY if with_acks else 0)
    return max(0, lines - DEFAULT_SEND_BURST) * DEFAULT_SEND_DELAY


def _print_latency(results: list[dict], count: int, interval: float) -> None:
    runs = len(results)
    keys = ("direct_p50", "direct_p99", "relayed_p50", "relayed_p99", "added_p50")
    med = {key: statistics.median(r[key] for r in results) for key in keys}
    median = f", median of {runs} runs" if runs > 1 else ""
    print(f"Latency: {count} messages, one every {interval * 1000:g} ms{median}")
    print(f"  relay send-delay {LATENCY_SEND_DELAY} s (send-burst {DEFAULT_SEND_BURST}): its "
          "flood control does not hold up any line at this pace")  # fmt: skip
    print(f"  direct  (alice -> bob, #a):           p50 {med['direct_p50'] * 1000:7.3f} ms"
          f"   p99 {med['direct_p99'] * 1000:7.3f} ms")  # fmt: skip
    print(f"  relayed (alice -> IMMP -> carol, #b): p50 {med['relayed_p50'] * 1000:7.3f} ms"
          f"   p99 {med['relayed_p99'] * 1000:7.3f} ms")  # fmt: skip
    verdict = "met" if med["added_p50"] < 0.002 else "NOT met"
    print(f"  added by the relay at p50:            {med['added_p50'] * 1000:7.3f} ms"
          f"   (target under 2 ms: {verdict})")  # fmt: skip
    if runs > 1:
        print("  every run (p50 direct/relayed/added ms): " + ", ".join(
            f"{r['direct_p50'] * 1000:.2f}/{r['relayed_p50'] * 1000:.2f}/"
            f"{r['added_p50'] * 1000:.2f}" for r in results))  # fmt: skip
    for index, r in enumerate(results, 1):
        if r["lost_direct"] or r["lost_relayed"] or not r["in_order"]:
            print(f"  run {index}: PROBLEM: lost {r['lost_direct']} direct, "
                  f"{r['lost_relayed']} relayed; relayed in order: {r['in_order']}")  # fmt: skip
        for line in r["complaints"]:
            print(f"  run {index}: relay log: {line}")


def _print_burst(r: dict) -> None:
    count = r["count"]
    print(f"Burst: {count} messages from alice, relay with the default flood control (send-burst "
          f"{DEFAULT_SEND_BURST}, then one line per {DEFAULT_SEND_DELAY} s)")  # fmt: skip
    print(f"  alice sent them all in {r['alice_s']:.3f} s; bob had them all directly after "
          f"{r['direct_s']:.3f} s" + ("" if r["direct_complete"] else " (INCOMPLETE)"))  # fmt: skip
    if r["relayed_s"] is None:
        print(f"  relayed: INCOMPLETE, carol has {r['received']}/{count}")
    else:
        print(f"  relayed: carol had all {count} after {r['relayed_s']:.1f} s "
              f"({count / r['relayed_s']:.2f} messages/s)")  # fmt: skip
    print(f"  complete: {r['received'] == count}, in order: {r['in_order']}, "
          f"duplicates: {r['duplicates']}")  # fmt: skip
    plain = _allowed_seconds(count, with_acks=False)
    acks = _allowed_seconds(count, with_acks=True)
    print(f"  flood control allows: {plain:.1f} s for {count} lines "
          f"({count / plain if plain else math.inf:.2f}/s); {acks:.1f} s "
          f"({count / acks if acks else math.inf:.2f}/s) with the plug's acknowledging PING "
          f"after every {ACK_EVERY} lines")  # fmt: skip
    if r["relayed_s"] is not None and acks:
        print(f"  measured / allowed (with PINGs): {r['relayed_s'] / acks:.3f}")
    for line in r["complaints"]:
        print(f"  relay log: {line}")


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-irc-") as name:
        directory = Path(name)
        async with (
            NgircdServer.running(directory / "ngircd", penalties=False) as server,
            RawClient.connected(server.port, "alice") as alice,
            RawClient.connected(server.port, "bob") as bob,
            RawClient.connected(server.port, "carol") as carol,
            trio.open_nursery() as nursery,
        ):
            await alice.join("#a")
            await bob.join("#a")
            await carol.join("#b")
            bench = Bench(directory, server, alice, bob, carol)
            nursery.start_soon(Receiver(alice).run)  # answers PINGs, nothing else
            nursery.start_soon(bench.bob.run)
            nursery.start_soon(bench.carol.run)
            results = []
            for run in range(args.runs):
                print(f"latency run {run + 1}/{args.runs}...", file=sys.stderr, flush=True)
                results.append(await bench.latency(run, args.n, args.interval))
            _print_latency(results, args.n, args.interval)
            if not args.skip_burst:
                print(f"burst of {args.burst} (about "
                      f"{_allowed_seconds(args.burst, with_acks=True):.0f} s)...",
                      file=sys.stderr, flush=True)  # fmt: skip
                _print_burst(await bench.burst(args.burst))
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=300, help="latency messages (default 300)")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between latency messages (default 0.05)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1,
                        help="latency runs (own relay each); prints the median")  # fmt: skip
    parser.add_argument("--burst", type=int, default=500, help="burst messages (default 500)")
    parser.add_argument("--skip-burst", action="store_true", help="measure latency only")
    args = parser.parse_args()
    trio.run(bench, args)


if __name__ == "__main__":
    main()
