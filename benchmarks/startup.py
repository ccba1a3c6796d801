"""
Start-up: how long until the demo delivers its first message, and how long ``immp --check``
takes.

    hatch run bench-startup [--runs 7]

"Ready" is measured on a copy of ``examples/demo.yaml`` changed so that it can run unattended:
the console plug reads no standard input (``console: false``) but prints what is sent to it
(``show: true``), and the timer posts every 0.01 s. The time is from starting ``immp COPY`` to
the first bridged line on its standard output (the timer's message, copied into the console's
room by the sync hook), so it includes Python's start-up, imports, plugin discovery, config
validation, opening everything, and one timer interval (0.01 s). ``--check`` is the whole
``immp --check examples/demo.yaml`` process. Each is run ``--runs`` times; the median, the
minimum and the maximum are printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time

import yaml
from _measure import immp_command

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, os.pardir, "examples", "demo.yaml")
INTERVAL = 0.01


def _unattended_demo(directory: str) -> str:
    with open(DEMO) as file:
        config = yaml.safe_load(file)
    console = config["plugs"]["console"]["config"]
    console.update({"console": False, "show": True})
    config["plugs"]["timer"]["config"].update({"interval": INTERVAL, "show": False})
    path = os.path.join(directory, "demo.yaml")
    with open(path, "w") as file:
        yaml.safe_dump(config, file)
    return path


def time_ready(config: str) -> float:
    """Seconds from starting ``immp config`` to its first bridged line on standard output."""
    started = time.perf_counter()
    process = subprocess.Popen([*immp_command(), config], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith(b"[console]"):
                return time.perf_counter() - started
        raise RuntimeError("immp exited without delivering a message")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def time_check() -> float:
    """Seconds for a whole ``immp --check examples/demo.yaml``."""
    started = time.perf_counter()
    subprocess.run([*immp_command(), "--check", DEMO], check=True, capture_output=True)
    return time.perf_counter() - started


def _summary(name: str, times: list[float]) -> None:
    print(
        f"  {name:28} median {statistics.median(times) * 1000:7.0f} ms"
        f"   (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {len(times)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each (default 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        config = _unattended_demo(directory)
        time_ready(config)  # warm the file system cache and .pyc files; not counted
        ready = [time_ready(config) for _ in range(args.runs)]
    check = [time_check() for _ in range(args.runs)]
    print(f"Start-up of the demo (timer interval {INTERVAL} s, console off, show on):")
    _summary("first message delivered", ready)
    _summary("immp --check", check)


if __name__ == "__main__":
    main()
