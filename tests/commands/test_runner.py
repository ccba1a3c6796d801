"""End to end: a real ``immp -w`` process changed by chat commands typed on a demo console."""

from __future__ import annotations

import subprocess

import pytest
import yaml

import immp
from immp.plugins import Plugins
from tests.demo.console import Console

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


@pytest.mark.slow
def test_chat_commands_change_the_config_file_under_w(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    file.chmod(0o640)
    console = Console(immp_exe, file, clean_env, options=("-w",), stderr=tmp_path / "immp.err")
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
        status = console.stop()
    assert status == 0, console.stderr
    assert file.stat().st_mode & 0o777 == 0o640

    check = subprocess.run([immp_exe, "--check", str(file)], capture_output=True, text=True,
                           env=clean_env, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stderr
    host = immp.build_host(immp.load_file(file), plugins=Plugins())
    assert host.plugs["timer"].open_state is immp.OpenState.disabled
    assert host.plugs["chat"].open_state is not immp.OpenState.disabled
    assert host.channels["side"] == immp.Channel(host.plugs["timer"], "side-room")
    assert host.hooks["commands"].config["admins"] == {"chat": ["console:root"]}
