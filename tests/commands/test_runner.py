"""End to end: a real ``immp -w`` process changed by chat commands typed on a demo console."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time

import pytest
import yaml

import immp
from immp.plugins import Plugins

CONFIG = {
    "plugs": {
        # The console user's ID is "console:" and the console-user name.
        "chat": {"path": "demo", "config": {
            "interval": None, "console": True, "channel": "lobby", "console-user": "root"}},
        "timer": {"path": "demo", "config": {"interval": None}},
    },
    "channels": {"lobby": {"plug": "chat", "source": "lobby"}},
    "hooks": {"commands": {"path": "immp.hook.command.CommandHook", "config": {
        "prefix": ["!"], "return-errors": True, "admins": {"chat": ["console:root"]}}}},
}  # fmt: skip


class Console:
    """A running ``immp`` process: type lines on its stdin, read its stdout line by line."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, wanted: str, timeout: float = 20) -> list[str]:
        """Wait for a stdout line equal to ``wanted``; return the lines seen up to it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {wanted!r} on stdout; saw {seen!r}") from None
            seen.append(line)
            if line == wanted:
                return seen


@pytest.mark.slow
def test_chat_commands_change_the_config_file_under_w(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    file.chmod(0o640)
    console = Console([immp_exe, "-w", str(file)], clean_env)
    try:
        console.type("!help")
        console.expect("Send !help NAME for details of one.")

        console.type("!disable timer")
        console.expect("Disabled plug timer.")
        written = yaml.safe_load(file.read_text())
        assert written["plugs"]["timer"]["enabled"] is False

        console.type("!channel-add side timer side-room")
        console.expect("Added channel side: timer side-room.")
        written = yaml.safe_load(file.read_text())
        assert written["channels"]["side"] == {"plug": "timer", "source": "side-room"}

        console.type("!plugs")
        console.expect("  timer (demo): disabled")
    finally:
        console.proc.send_signal(signal.SIGTERM)
        try:
            status = console.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            console.proc.kill()
            raise
    assert status == 0, console.proc.stderr.read()
    assert file.stat().st_mode & 0o777 == 0o640

    check = subprocess.run([immp_exe, "--check", str(file)], capture_output=True, text=True,
                           env=clean_env, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stderr
    host = immp.build_host(immp.load_file(file), plugins=Plugins())
    assert host.plugs["timer"].open_state is immp.OpenState.disabled
    assert host.plugs["chat"].open_state is not immp.OpenState.disabled
    assert host.channels["side"] == immp.Channel(host.plugs["timer"], "side-room")
    assert host.hooks["commands"].config["admins"] == {"chat": ["console:root"]}
