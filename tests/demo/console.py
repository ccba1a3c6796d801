"""A real ``immp`` process with a demo console: type on its stdin, read its stdout by line."""

from __future__ import annotations

import os
import pty
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

STYLER = '''
import immp


class StyleHook(immp.Hook):
    """Answers "style me" with bold, italic and underlined text, as a rich network would."""

    async def on_receive(self, sent, source, primary):
        if sent is source and str(sent.text) == "style me":
            await sent.channel.send(immp.Message(text=immp.RichText([
                immp.Segment("bold", bold=True), immp.Segment(" and "),
                immp.Segment("italic", italic=True), immp.Segment(" "),
                immp.Segment("under", underline=True)])))
'''


def console_config(folder: Path, *, peer_interval: float | None = None) -> Path:
    """
    Write a config: plug ``chat`` (console, user alice, room ``lobby``) bridged by the sync hook
    to ``mirror`` (another room on the console, so that the console shows what is typed) and to
    plug ``peer`` (``show: true``, timer by ``bob`` every ``peer_interval``), and a hook that
    answers "style me" with formatted text.
    """
    (folder / "styler.py").write_text(STYLER)
    config = {
        "path": [str(folder)],
        "plugs": {
            "chat": {"path": "demo", "config": {
                "console": True, "interval": None, "channel": "lobby", "console-user": "alice"}},
            "peer": {"path": "demo", "config": {
                "show": True, "interval": peer_interval, "channel": "room", "user": "bob",
                "text": "ping"}},
        },
        "channels": {
            "lobby": {"plug": "chat", "source": "lobby"},
            "mirror": {"plug": "chat", "source": "mirror"},
            "room": {"plug": "peer", "source": "room"},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"town": ["lobby", "mirror", "room"]}}},
            "styler": {"path": "styler.StyleHook"},
        },
    }  # fmt: skip
    file = folder / "console.yaml"
    file.write_text(yaml.safe_dump(config))
    return file


class Console:
    """
    A running ``immp`` process: stdin is a pipe; stdout is a pipe, or a terminal (a pty) with
    ``tty=True``. Lines of stdout are collected by a thread; stderr goes to the file
    ``stderr``, if given. ``options`` go before the config file (``("-w",)``).
    """

    def __init__(
        self,
        exe: str,
        config: Path,
        env: dict[str, str],
        *,
        tty: bool = False,
        stderr: Path | None = None,
        options: tuple[str, ...] = (),
    ):
        self.stderr_path = stderr
        self._stderr = open(stderr, "w") if stderr else subprocess.DEVNULL
        self.lines: queue.Queue[str] = queue.Queue()
        #: Every stdout line so far.
        self.output: list[str] = []
        args = [exe, *options, str(config)]
        if tty:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=slave,
                                         stderr=self._stderr, env=env)  # fmt: skip
            os.close(slave)
            threading.Thread(target=self._read_pty, args=(master,), daemon=True).start()
        else:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
            )
            threading.Thread(target=self._read_pipe, daemon=True).start()

    def _read_pipe(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace").rstrip("\n"))

    def _read_pty(self, master: int) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self.lines.put(line.decode("utf-8", "replace").rstrip("\r"))
        os.close(master)

    def type(self, text: str) -> None:
        """Type one or more lines (a newline is added)."""
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        """Ctrl-D: close standard input."""
        self.proc.stdin.close()

    def mark(self) -> int:
        """How many stdout lines were seen so far (for ``expect(..., after=mark)``)."""
        self._drain()
        return len(self.output)

    def _drain(self, timeout: float = 0) -> bool:
        try:
            self.output.append(self.lines.get(timeout=timeout))
        except queue.Empty:
            return False
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return True

    def expect(self, wanted: str, *, after: int = 0, timeout: float = 20) -> list[str]:
        """
        Wait until a stdout line (from line ``after`` on) equals ``wanted``; return every line
        from ``after`` on. Lines from different plugs may come in either order.
        """
        deadline = time.monotonic() + timeout
        while True:
            if wanted in self.output[after:]:
                return self.output[after:]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (
                not self._drain(min(remaining, 0.5))
                and self.proc.poll() is not None
                and self.lines.empty()
            ):
                if wanted in self.output[after:]:
                    return self.output[after:]
                raise AssertionError(f"no {wanted!r} on stdout; saw {self.output[after:]!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``sig`` and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.stderr_path:
            self._stderr.close()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""
