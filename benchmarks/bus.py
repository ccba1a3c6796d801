"""
The message bus: how many messages per second IMMP bridges, and whether its memory stays flat.

    hatch run bench-bus [-n 20000] [-k 2] [--runs 1] [--json] [--compare]
                        [--store memory|sqlite|postgres] [--journal]

N messages are posted in one demo plug's channel and bridged by the sync hook to K other demo
plugs, which echo what they are sent back into their channel as a real network does (so the
host's echo recognition and the hook's "never copy a copy" check run for every delivery). An
injector keeps at most ``WINDOW`` messages in flight (posted but not yet delivered to every
target), as a network reader under backpressure would.

Printed: messages in per second and deliveries per second over the N messages, peak RSS
(``ru_maxrss``) after them, and RSS growth per 100,000 messages, measured over N more messages
after those: the first N are the warm-up that fills every bounded history (echo history, copy
map, demo history), so the growth over the next N is what a long-running bridge keeps adding.
(Peak RSS is per process: with ``--runs`` above 1 without ``--compare`` it is the largest.)

``--store`` picks the host's store (where the sync hook's copy map and the demo plugs' state
go): ``memory`` (the default of a host built without a config file), ``sqlite`` (the default
of ``immp`` itself: a file in a temporary folder, WAL, synchronous=NORMAL) or ``postgres`` (a
throwaway PostgreSQL server started for the run with ``immp_store_postgres.testing``, or
the database in ``$IMMP_BENCH_POSTGRES``).

``--journal`` turns the host's journal on (``host: journal: true``): every message journaled
with one delivery row per target, each marked when delivered, in the store's group commits
(use it with ``--store sqlite`` or ``--store postgres``, the stores it is meant for).

``--cursor`` gives the injecting plug an (empty) ``input`` file, so that it reads from a cursor
as Matrix does (``Plug.has_cursor``): with ``--journal``, each copy then waits for its entry's
commit (docs/journal.md). Without it, the injecting plug is like IRC, which never sends a
message twice, and its copies do not wait.

``--compare`` runs this scenario and the original IMMP 0.12.1's (``benchmarks/bus_original.py``
in the ``original`` hatch environment), each in its own process, ``--runs`` times each,
alternating, and prints the medians and the ratio.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile

import trio
from _measure import arguments, inject, measure, print_result, report

import immp


def _config(
    k: int, store: str = "memory", journal: bool = False, cursor: str | None = None
) -> dict:
    names = ["in", *(f"out{i}" for i in range(1, k + 1))]
    config = {
        "store": store,
        "host": {"journal": journal},
        "plugs": {
            name: {"path": "demo", "config": {"interval": None, "channel": "room", "echo": True}}
            for name in names
        },
        "channels": {f"{name}-room": {"plug": name, "source": "room"} for name in names},
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"bus": [f"{n}-room" for n in names]}}}
        },
    }
    if cursor is not None:
        config["plugs"]["in"]["config"]["input"] = cursor
    return config


async def scenario(
    n: int, k: int, store: str = "memory", journal: bool = False, cursor: str | None = None
) -> dict:
    """Run the scenario once in this process on the store URL ``store``; returns the figures.
    ``cursor``: the path of an input file for the injecting plug (see ``--cursor``)."""
    host = immp.build_host(_config(k, store, journal, cursor))
    source = host.plugs["in"]
    outs = [host.plugs[f"out{i}"] for i in range(1, k + 1)]
    user = immp.User("alice", source, username="alice", real_name="Alice")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.run)
        await host.ready.wait()

        def post(i: int):
            return source.receive(f"message {i}", user=user)

        result = await measure(
            lambda start, stop: inject(post, outs, start, stop), outs, n, host.store.flush
        )
        host.quit()
    return {
        "impl": f"IMMP on trio, {host.store.scheme} store"
        + (", journal" if journal else "")
        + (", cursor" if cursor else ""),
        "k": k,
        **result,
        "store_flushes": host.store.stats()["flushes"],
        # Echoes the demo network dropped because the host fell behind: each is a message the
        # host did not have to process, so a fair run has none.
        "skipped_echoes": sum(out.skipped_echoes for out in outs),
    }


def _median(results: list[dict]) -> dict:
    out = dict(results[0])
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in results)
    if "skipped_echoes" in out:
        out["skipped_echoes"] = max(r["skipped_echoes"] for r in results)  # the worst run
    return out


def _subprocess(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return json.loads(lines[-1])


def compare(n: int, k: int, runs: int, store: str, journal: bool = False, cursor: bool = False
            ) -> None:  # fmt: skip
    here = os.path.dirname(os.path.abspath(__file__))
    ours_cmd = [sys.executable, os.path.join(here, "bus.py"), "-n", str(n), "-k", str(k), "--json",
                "--store", store, *(["--journal"] if journal else []),
                *(["--cursor"] if cursor else [])]  # fmt: skip
    original_cmd = [
        "hatch",
        "-e",
        "original",
        "run",
        "python",
        os.path.join(here, "bus_original.py"),
        "-n",
        str(n),
        "-k",
        str(k),
        "--json",
    ]
    ours, original = [], []
    for run in range(runs):
        print(f"run {run + 1}/{runs}...", file=sys.stderr)
        ours.append(_subprocess(ours_cmd))
        original.append(_subprocess(original_cmd))
    mine, theirs = _median(ours), _median(original)
    print_result(mine, runs)
    print_result(theirs, runs)
    print("Ratio (ours / original):")
    print(f"  messages in per second:  {mine['msgs_per_s'] / theirs['msgs_per_s']:6.1f}x")
    print(
        f"  deliveries per second:   {mine['deliveries_per_s'] / theirs['deliveries_per_s']:6.1f}x"
    )
    print(f"  peak RSS:                {mine['peak_rss_mib'] / theirs['peak_rss_mib']:6.2f}x")
    if runs > 1:
        print(
            "Every run (ours, original) msgs/s: "
            + ", ".join(
                f"{a['msgs_per_s']:.0f}/{b['msgs_per_s']:.0f}"
                for a, b in zip(ours, original, strict=True)
            )
        )


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=1, help="runs; the median is printed")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run the original IMMP 0.12.1 and print the ratio",
    )
    parser.add_argument("--store", choices=("memory", "sqlite", "postgres"), default="memory",
                        help="the host's store (default memory)")  # fmt: skip
    parser.add_argument("--journal", action="store_true", help="turn the host's journal on")
    parser.add_argument("--cursor", action="store_true",
                        help="the injecting plug reads from a cursor, as Matrix does")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if os.environ.get("IMMP_BENCH_SEED"):
        # Trio shuffles the order in which ready tasks run (so that code cannot come to depend
        # on it); seeded, the same run schedules the same way, and bench-instructions counts the
        # same instructions each time (its figures moved by 3% between runs without this).
        trio._core._run._r.seed(int(os.environ["IMMP_BENCH_SEED"]))
    if args.compare:
        compare(args.n, args.k, args.runs, args.store, args.journal, args.cursor)
        return
    with _store_url(args.store) as url, tempfile.TemporaryDirectory() as folder:
        cursor = None
        if args.cursor:
            cursor = os.path.join(folder, "input.txt")
            open(cursor, "w").close()  # an empty file
        results = []
        for run in range(args.runs):
            gc.collect()  # the last run's host is garbage: do not count collecting it in this run
            url_run = url.replace("RUN", str(run))
            results.append(trio.run(scenario, args.n, args.k, url_run, args.journal, cursor))
    report(_median(results), args.json, args.runs)


@contextlib.contextmanager
def _store_url(kind: str):
    """The store URL for ``--store``, with RUN standing for the run number (a fresh namespace)."""
    if kind == "memory":
        yield "memory"
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="immp-bench-") as folder:
            yield f"sqlite:///{folder}/bus.db?namespace=runRUN"
    elif os.environ.get("IMMP_BENCH_POSTGRES"):
        yield os.environ["IMMP_BENCH_POSTGRES"] + "?namespace=bench-runRUN"
    else:
        from immp_store_postgres.testing import PostgresServer, binaries

        server = PostgresServer(binaries())
        try:
            server.start()
            yield server.url() + "?namespace=runRUN"
        finally:
            server.remove()


if __name__ == "__main__":
    main()
