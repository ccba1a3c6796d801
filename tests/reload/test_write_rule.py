"""
``immp -w`` and reloads: a real process changed by chat commands on a demo console while the
user edits its config file. The write never overwrites an edit IMMP has not read; a reload
takes the edit in and then the file holds both.
"""

from __future__ import annotations

import signal
import time

import yaml

from tests.commands.test_runner import CONFIG
from tests.demo.console import Console


def wait_until(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_w_keeps_edits_until_a_reload_takes_them_in(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    console = Console(immp_exe, file, clean_env, stderr=tmp_path / "stderr", options=("-w",))

    def say(line: str, answer: str) -> list[str]:
        mark = console.mark()
        console.type(line)
        return console.expect(answer, after=mark)

    try:
        say("!disable timer", "Disabled plug timer.")
        assert yaml.safe_load(file.read_text())["plugs"]["timer"]["enabled"] is False

        # The user edits the file while IMMP runs: a new plug with a channel.
        edited = yaml.safe_load(file.read_text())
        edited["plugs"]["extra"] = {"path": "demo", "config": {"interval": None}}
        edited["channels"]["extra-room"] = {"plug": "extra", "source": "x"}
        file.write_text(yaml.safe_dump(edited))
        text = file.read_text()

        # A change from chat now is not written over the edit (IMMP has not read it yet).
        say("!channel-add side chat side", "Added channel side: chat side. Not written to the "
            "config file: immp.yaml was changed since IMMP last read it; reload it (SIGHUP or the "
            "reload command).")  # fmt: skip
        assert file.read_text() == text

        # SIGHUP reads the edit in; then the file holds the edit and the runtime changes.
        console.proc.send_signal(signal.SIGHUP)
        written = wait_until(lambda: "side" in (d := yaml.safe_load(file.read_text()))
                             .get("channels", {}) and d)  # fmt: skip
        assert written["plugs"]["extra"]["path"] == "demo"
        assert written["channels"]["extra-room"] == {"plug": "extra", "source": "x"}
        assert written["channels"]["side"] == {"plug": "chat", "source": "side"}
        assert written["plugs"]["timer"]["enabled"] is False
        seen = say("!plugs", "  extra (demo): active")
        assert "  timer (demo): disabled" in seen, seen

        # Where the file changes what a command changed, the file wins.
        written["plugs"]["timer"].pop("enabled")
        file.write_text(yaml.safe_dump(written))
        say("!reload", "Reloaded: restarted plug timer.")
        say("!plugs", "  timer (demo): active")
        assert "enabled" not in yaml.safe_load(file.read_text())["plugs"]["timer"]
    finally:
        status = console.stop()
    stderr = console.stderr
    assert status == 0, stderr
    assert stderr.count("Not writing") == 1, stderr


def test_w_writes_what_was_held_back_at_a_reload_of_an_edit_that_changed_nothing(
    tmp_path, immp_exe, clean_env
):
    # The edit is a comment: the reload changes nothing IMMP runs, but the command's change,
    # held back because of the edit, is written then (not only at exit).
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    console = Console(immp_exe, file, clean_env, stderr=tmp_path / "stderr", options=("-w",))
    try:
        mark = console.mark()
        console.type("!disable timer")  # written: IMMP read the file, and writes it back
        console.expect("Disabled plug timer.", after=mark)
        file.write_text("# the operator was here\n" + file.read_text())
        mark = console.mark()
        console.type("!channel-add side chat side")
        console.expect("Added channel side: chat side. Not written to the config file: immp.yaml "
                       "was changed since IMMP last read it; reload it (SIGHUP or the reload "
                       "command).", after=mark)  # fmt: skip
        assert "side" not in yaml.safe_load(file.read_text())["channels"]
        console.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "side" in yaml.safe_load(file.read_text())["channels"])
    finally:
        status = console.stop()
    assert status == 0, console.stderr


def test_a_reload_from_chat_that_restarts_the_commands_hook_still_answers(
    tmp_path, immp_exe, clean_env
):
    # The reload restarts the very hook whose command asked for it: the command's task ends with
    # the old hook, and the answer came from nobody. The new hook (new prefix) answers.
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    console = Console(immp_exe, file, clean_env, stderr=tmp_path / "stderr")
    try:
        console.type("!plugs")  # running: the file was read
        console.expect("  timer (demo): active")
        edited = yaml.safe_load(file.read_text())
        edited["hooks"]["commands"]["config"]["prefix"] = ["!", "?"]
        file.write_text(yaml.safe_dump(edited))
        mark = console.mark()
        console.type("!reload")
        console.expect("Reloaded: restarted hook commands.", after=mark)
        mark = console.mark()
        console.type("?plugs")  # the new hook's prefix: the reload did take
        console.expect("  timer (demo): active", after=mark)
    finally:
        status = console.stop()
    assert status == 0, console.stderr
    assert "not handled" not in console.stderr  # the old hook closed at once, its queue empty
