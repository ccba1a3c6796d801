"""``examples/demo.yaml``: the demo the README's first command (``hatch run demo``) runs."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import signal
import time

import pytest

from tests.conftest import ROOT

from .console import Console

DEMO = ROOT / "examples" / "demo.yaml"


def test_the_demo_config_checks_clean(immp_command):
    result = immp_command("--check", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{DEMO}: OK (2 plugs, 2 channels, 0 groups, 2 hooks)"


@pytest.mark.slow
def test_the_demo_bridges_typed_lines_answers_help_and_shows_the_timer(immp_exe, clean_env):
    demo = Console(immp_exe, DEMO, clean_env)
    try:
        demo.type("hello")
        demo.expect("[timer] <you (lobby)> hello")
        demo.type("!help")
        help_text = demo.expect("Send !help NAME for details of one.")
        assert "  !help [name] - List the commands you can run here, or show how to use one." in (
            help_text
        )
        # The timer network posts every 5 seconds; the bridge copies it into the console.
        demo.expect("<timer-bot (square)> Hello from the timer network")
        assert demo.stop() == 0
    finally:
        demo.kill()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("hatch") is None, reason="needs hatch, as the README does")
def test_ctrl_c_in_a_terminal_stops_hatch_run_demo_with_status_0(clean_env):
    # The README's own command, in a real terminal: Ctrl-C there is SIGINT to the whole
    # foreground process group (hatch, the shell it runs the script with, and immp), and
    # docs/getting-started.md promises status 0 afterwards.
    pid, master = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty as its controlling terminal
        os.chdir(ROOT)
        os.execvpe("hatch", ["hatch", "run", "demo"], clean_env)
    output = b""
    try:
        output = _read_until(master, b"Hello from the timer network", 120)
        assert b"Hello from the timer network" in output, output.decode(errors="replace")
        os.write(master, b"\x03")  # Ctrl-C, as typed
        output += _read_until(master, b"Stopped", 60)
        assert b"Got SIGINT: shutting down" in output
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")[-2000:]
    finally:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(master)


def _read_until(master: int, wanted: bytes, timeout: float) -> bytes:
    """What the terminal shows until ``wanted`` appears, it closes or ``timeout`` passes."""
    output = b""
    deadline = time.monotonic() + timeout
    while wanted not in output and time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process on the terminal closed it
                break
            if not chunk:
                break
            output += chunk
    return output
