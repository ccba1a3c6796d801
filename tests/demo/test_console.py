"""The demo console in a real ``immp`` process: what a person at the terminal types and sees."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import subprocess
import termios
import time
from pathlib import Path

import pytest

from .console import Console, console_config

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def trio_free_deadline(seconds: float):
    """``expired()`` turns true after ``seconds`` (for plain loops outside trio)."""
    end = time.monotonic() + seconds
    yield lambda: time.monotonic() > end


@pytest.fixture
def console(tmp_path, immp_exe, clean_env):
    """Start a console process (``console(tty=..., peer_interval=...)``); killed afterwards."""
    started = []

    def start(**kw) -> Console:
        tty = kw.pop("tty", False)
        proc = Console(immp_exe, console_config(tmp_path, **kw), clean_env, tty=tty)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def test_typed_lines_are_bridged_and_rendered(console):
    chat = console()
    chat.type("hello world")
    # The copy into the console's other room shows what a bridged message looks like.
    chat.expect("<alice> hello world")
    chat.expect("[peer] <alice> hello world")
    chat.type("/me waves")
    chat.expect("* alice waves")
    chat.expect("[peer] * alice waves")
    assert chat.stop() == 0


def test_edit_and_delete_typed_messages_by_number(console):
    chat = console()
    chat.type("teh first")
    chat.expect("[peer] <alice> teh first")
    chat.type("second")
    chat.expect("[peer] <alice> second")
    chat.type("/edit 1 the first")
    chat.expect("[peer] <alice> the first (edited)")
    chat.type("/delete 2")
    deleted = chat.expect("[peer] (deleted: <alice> second)", timeout=20)
    assert "<alice> second (edited)" not in deleted
    chat.type("/edit 7 nothing there")
    chat.expect("(no message '7' of yours to change)")
    chat.type("/delete 2")  # already gone
    chat.expect("(no message '2' of yours to change)")
    assert chat.stop() == 0


def test_console_commands_without_their_text_show_usage_and_send_nothing(console):
    chat = console()
    chat.type("first")
    chat.expect("[peer] <alice> first")
    chat.type("/me")
    chat.expect("(usage: /me TEXT)")
    chat.type("/edit 1")
    chat.expect("(usage: /edit N TEXT)")
    chat.type("/delete")
    chat.expect("(usage: /delete N)")
    chat.type("after")
    seen = chat.expect("[peer] <alice> after")
    assert "[peer] * alice" not in seen and "(edited)" not in seen
    assert chat.stop() == 0


def test_join_and_part_are_announced(console):
    chat = console()
    chat.type("/join")
    chat.expect("[peer] alice joined")
    chat.type("/part")
    chat.expect("[peer] alice left")
    assert chat.stop() == 0


def test_messages_from_the_other_network_reach_the_console(console):
    chat = console(peer_interval=0.2)
    chat.expect("<bob> ping")
    assert chat.stop() == 0


def test_plain_text_without_ansi_when_stdout_is_not_a_terminal(console):
    chat = console()
    chat.type("style me")
    seen = chat.expect("bold and italic under")
    assert not any("\x1b" in line for line in seen)
    assert chat.stop() == 0


def test_ansi_styles_when_stdout_is_a_terminal(console):
    chat = console(tty=True)
    chat.type("style me")
    chat.expect("\x1b[1mbold\x1b[0m and \x1b[3mitalic\x1b[0m \x1b[4munder\x1b[0m")
    assert chat.stop() == 0


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_control_characters_from_chat_never_reach_the_terminal_raw(console, tty):
    chat = console(tty=tty)
    # Clear the screen, ring the bell, move the cursor, an 8-bit CSI: all typed into chat.
    chat.type("evil \x1b[2J\x07\x08\x7f\u009b31m end")
    line = chat.expect(r"<alice> evil \x1b[2J\x07\x08\x7f\x9b31m end")[-1]
    assert not any(ch in line for ch in "\x1b\x07\x08\x7f\u009b")
    assert chat.stop() == 0


def test_delete_answers_with_the_number_typed_not_an_id_of_another_network(console):
    chat = console(peer_interval=0.05)
    # The peer's timer takes IDs there, and the mirror room's copies take IDs here: the
    # number typed matches neither the original's ID nor any copy's.
    chat.expect("<bob> ping")
    chat.type("first")
    chat.expect("[peer] <alice> first")
    chat.type("second")
    chat.expect("[peer] <alice> second")
    at = chat.mark()
    chat.type("/delete 2")
    seen = chat.expect("(message 2 deleted)", after=at)
    chat.expect("[peer] (deleted: <alice> second)", after=at)
    chat.expect("(deleted: <alice> second)", after=at)  # the copy in the mirror room
    assert not [line for line in seen if "message" in line and line != "(message 2 deleted)"]
    assert chat.stop() == 0


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_bidi_controls_from_chat_are_escaped(console, tty):
    chat = console(tty=tty)
    # An override that would show "evil ... txt.exe" as "evil ... exe.txt", and the rest.
    controls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    chat.type(f"evil {controls} txt.exe")
    escaped = r"\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    line = chat.expect(f"<alice> evil {escaped} txt.exe")[-1]
    assert not any(ch in line for ch in controls)
    chat.expect(f"[peer] <alice> evil {escaped} txt.exe")
    assert chat.stop() == 0


def test_end_of_input_closes_the_console_but_not_the_host(console):
    chat = console(peer_interval=0.2)
    chat.type("last words")
    chat.expect("[peer] <alice> last words")
    chat.end_input()
    chat.expect("(console closed: end of input; IMMP keeps running, Ctrl-C stops it)")
    # The host keeps running: the other network's timer is still bridged to the console.
    chat.expect("<bob> ping")
    chat.expect("<bob> ping")
    assert chat.proc.poll() is None
    assert chat.stop(signal.SIGTERM) == 0


@pytest.mark.skipif(not Path("/proc/self/fdinfo").exists(), reason="needs Linux /proc")
def test_a_terminal_on_stdin_and_stdout_is_left_in_blocking_mode(tmp_path, immp_exe, clean_env):
    # Reading the console must not make the shared terminal non-blocking: stdout would then
    # fail on a slow terminal, and the shell's terminal would be broken after IMMP exits.
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen([immp_exe, str(console_config(tmp_path))], stdin=slave, stdout=slave,
                            stderr=subprocess.DEVNULL, env=clean_env)  # fmt: skip
    os.close(slave)
    try:
        os.write(master, b"hello\n")
        output = b""
        with trio_free_deadline(20) as expired:
            while b"<alice> hello" not in output and not expired():
                if select.select([master], [], [], 0.5)[0]:
                    output += os.read(master, 65536)
        assert b"<alice> hello" in output
        for fd in (0, 1):
            flags = Path(f"/proc/{proc.pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
            assert not int(flags, 8) & os.O_NONBLOCK, f"fd {fd} is non-blocking"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
