"""
What the faults suite shares: plugs and hooks that misbehave on purpose, a log catcher, and a
real ``immp`` subprocess whose output is read by threads so that every wait can time out.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable

import trio

import immp
from immp_demo.plug import DemoPlug


class HangingPlug(DemoPlug):
    """A demo network whose sends never return."""

    async def put(self, channel, msg):
        self.put_count += 1
        await trio.sleep_forever()


class FailingPlug(DemoPlug):
    """A demo network whose every send raises."""

    async def put(self, channel, msg):
        self.put_count += 1
        raise immp.PlugError("the network is down")


class BadHook(immp.Hook):
    """
    A hook that misbehaves in ``before_receive`` and/or ``on_receive``: ``mode`` maps the method
    to ``"raise"`` or ``"hang"``. It counts its calls in :attr:`calls`.
    """

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority=priority)
        self.calls: dict[str, int] = {"before_receive": 0, "on_receive": 0}

    async def _misbehave(self, method: str) -> None:
        self.calls[method] += 1
        mode = (self.config or {}).get(method)
        if mode == "raise":
            raise RuntimeError(f"{self.name} broke in {method}")
        if mode == "hang":
            await trio.sleep_forever()

    async def before_receive(self, sent, source, primary):
        await self._misbehave("before_receive")
        return sent

    async def on_receive(self, sent, source, primary):
        await self._misbehave("on_receive")


class LogCatcher(logging.Handler):
    """Collects every formatted record (with tracebacks) of every logger."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record):
        self.records.append(record)

    def lines(self, level: int = logging.DEBUG) -> list[str]:
        return [self.format(r) for r in self.records if r.levelno >= level]

    def text(self) -> str:
        return "\n".join(self.lines())


def catch_logs() -> tuple[LogCatcher, Callable[[], None]]:
    """Attach a :class:`LogCatcher` at DEBUG to the root logger; returns it and an undo."""
    catcher = LogCatcher()
    logger = logging.getLogger()
    old = logger.level
    logger.addHandler(catcher)
    logger.setLevel(logging.DEBUG)

    def undo():
        logger.removeHandler(catcher)
        logger.setLevel(old)

    return catcher, undo


def demo_texts(plug: DemoPlug) -> list[str]:
    """The text of every message sent to a demo plug, in order."""
    return [str(msg.text) for _, msg in list(plug.puts) if msg.text is not None]


class ImmpProcess:
    """A real ``immp`` process; stdout and stderr lines are collected by threads."""

    def __init__(self, args: list[str], env=None, stdin=subprocess.DEVNULL):
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     errors="replace")  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._read, args=(s, k), daemon=True)
            for s, k in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, into):
        for line in stream:
            into.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        """Wait for a line (stdout or stderr) containing ``text``."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                done += 1
                if done == 2:
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"{text!r} not seen; stderr: {''.join(self.err)[-3000:]}")

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 15) -> int:
        """Wait for the exit (killing it after ``timeout``); returns the exit status."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode

    def stderr(self) -> str:
        return "".join(self.err)


class ConfigChurn(immp.Hook):
    """Changes its own config every ``interval`` seconds and says so (``immp -w`` writes)."""

    async def open(self):
        self.nursery.start_soon(self._churn)

    async def _churn(self):
        while True:
            await trio.sleep(self.config.get("interval", 0.005))
            self.config["n"] = self.config.get("n", 0) + 1
            self.config["padding"] = "x" * (self.config["n"] % 5000)
            self.host.config_changed(self)
