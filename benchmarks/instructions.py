"""
The bus scenario counted in CPU instructions per bridged message, ours and the original IMMP
0.12.1's, with the ratio: a figure that does not swing with the machine's load.

    hatch run bench-instructions [-k 2] [--store memory|sqlite|postgres] [--journal] [--cursor]
                                 [--small 1000] [--large 3000] [--seeds 1] [--ours-only]

The messages-per-second ratio of ``bench-bus --compare`` is what a user sees, but on a shared
machine single runs of it swing by a quarter, and it moves from one machine to another (on a
slower one, with smaller caches, ours lost more than the original). An instruction count is the
same run after run. Each scenario (``benchmarks/bus.py`` and ``benchmarks/bus_original.py``,
unchanged) runs under ``valgrind --tool=callgrind`` twice, with ``--small`` and ``--large``
messages (the original with a third of them: it does several times the work per message), and
the difference of the totals over the difference of the messages is what one more message
costs: start-up and imports cancel out. Each scenario posts 2N messages
(N timed, N more for the memory reading), and that is what the counts are divided by.

Ours runs with ``PYTHONHASHSEED=0`` and trio's scheduler seeded (``IMMP_BENCH_SEED``, see
``bus.py``): one tree gives the same count run after run. A change to the code changes which
tasks run in which order, and with it how many items each worker finds queued at once: over
three seeds one tree's count spread over 4% (245.4k-255.7k). To compare two trees, give
``--seeds 3`` (the mean over three schedules; three times as long).

Printed per thread: the trio thread (what every message's Python runs in) and the store's (a
database store's thread, which holds the GIL while its Python runs; SQLite's own work in it runs
beside the trio thread, on the other core). Instructions are not seconds: the count leaves out
cache misses and waits for the GIL, so it is a measure of work, for comparing two trees or the
two implementations, not a replacement for the messages-per-second figures.

Needs ``valgrind`` (Debian's package; it is on every machine of this project's kind). Takes
about three minutes (the four runs two at a time).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))


def _original_python() -> str:
    done = subprocess.run(
        ["hatch", "-e", "original", "run", "python", "-c", "import sys; print(sys.executable)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def _counts(command: list[str], folder: str, seed: int = 1) -> list[int]:
    """Run ``command`` under callgrind; the instructions of each thread, in thread order."""
    out = os.path.join(folder, "callgrind.out")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--separate-threads=yes",
         f"--callgrind-out-file={out}", *command],
        cwd=HERE, capture_output=True, text=True, check=False,
        # The same hashes and the same schedule in every run of a seed (see bus.py's
        # IMMP_BENCH_SEED; the original ignores it).
        env={**os.environ, "PYTHONHASHSEED": "0", "IMMP_BENCH_SEED": str(seed)},
    )  # fmt: skip
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed under valgrind:\n{done.stderr[-3000:]}")
    counts = []
    # callgrind.out-01 is the main thread, -02 the next started, and so on.
    for path in sorted(glob.glob(out + "-*")):
        with open(path) as lines:
            for line in lines:
                if line.startswith(("summary:", "totals:")):
                    counts.append(int(line.split()[1]))
                    break
    return counts


def _per_message(command: list[str], small: int, large: int, seeds: int = 1) -> list[float]:
    """
    Instructions per posted message of each thread: the long run less the short, per message,
    the mean over ``seeds`` schedules.
    """
    means: list[float] = []
    for seed in range(1, seeds + 1):
        with tempfile.TemporaryDirectory(prefix="immp-instr-") as folder:
            runs = []
            with ThreadPoolExecutor(2) as pool:
                for n in (small, large):
                    where = os.path.join(folder, str(n))
                    os.mkdir(where)
                    runs.append(pool.submit(_counts, [*command, "-n", str(n), "--json"], where,
                                            seed))  # fmt: skip
            few, many = (run.result() for run in runs)
        if len(few) != len(many):
            sys.exit(f"the runs had {len(few)} and {len(many)} threads: give --small a larger N")
        per = [(b - a) / (2 * (large - small)) for a, b in zip(few, many, strict=True)]
        means = per if not means else [m + p for m, p in zip(means, per, strict=True)]
    return [m / seeds for m in means]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", type=int, default=2, help="bridged target plugs (default 2)")
    parser.add_argument("--store", choices=("memory", "sqlite", "postgres"), default="memory",
                        help="our host's store (default memory)")  # fmt: skip
    parser.add_argument("--journal", action="store_true", help="turn our host's journal on")
    parser.add_argument("--cursor", action="store_true",
                        help="the injecting plug reads from a cursor (see bus.py)")  # fmt: skip
    parser.add_argument("--small", type=int, default=1000, help="messages of the short run")
    parser.add_argument("--large", type=int, default=3000, help="messages of the long run")
    parser.add_argument("--ours-only", action="store_true", help="leave the original out")
    parser.add_argument("--seeds", type=int, default=1,
                        help="schedules to average ours over (3 to compare two trees)")  # fmt: skip
    args = parser.parse_args()
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    ours_cmd = [sys.executable, "bus.py", "-k", str(args.k), "--store", args.store,
                *(["--journal"] if args.journal else []),
                *(["--cursor"] if args.cursor else [])]  # fmt: skip
    print(f"ours: {args.small} and {args.large} messages under callgrind...", file=sys.stderr)
    ours = _per_message(ours_cmd, args.small, args.large, max(1, args.seeds))
    label = (f"IMMP on trio, {args.store} store" + (", journal" if args.journal else "")
             + (", cursor" if args.cursor else ""))  # fmt: skip
    seeds = f" (mean of {args.seeds} schedules)" if args.seeds > 1 else ""
    print(f"{label}, K={args.k}: instructions per bridged message{seeds}")
    print(f"  trio thread:   {ours[0] / 1000:8.1f}k")
    for index, count in enumerate(ours[1:], 1):
        print(f"  thread {index + 1}:      {count / 1000:8.1f}k  (the store's)")
    print(f"  all threads:   {sum(ours) / 1000:8.1f}k")
    if args.ours_only:
        return
    small, large = max(1, args.small // 3), max(2, args.large // 3)
    print(f"original: {small} and {large} messages under callgrind...", file=sys.stderr)
    theirs = _per_message([_original_python(), "bus_original.py", "-k", str(args.k)], small, large)
    print(f"original IMMP 0.12.1, K={args.k}: {sum(theirs) / 1000:8.1f}k per bridged message")
    print("Ratio (original / ours), instructions per message:")
    print(f"  the trio thread alone: {sum(theirs) / ours[0]:5.1f}x")
    print(f"  all threads:           {sum(theirs) / sum(ours):5.1f}x")


if __name__ == "__main__":
    main()
