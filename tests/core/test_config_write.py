"""``immp -w`` writes back what was set, never defaults nobody wrote (issue 13, item 11)."""

from __future__ import annotations

import pytest
import yaml

from immp import build_host, dump_config

from ..demo.console import Console

IRC = {"server": {"host": "irc.example.org"}, "user": {"nick": "bot"}}
CONFIG = {
    "plugs": {
        "chat": {"path": "demo", "config": {"interval": None, "console": True,
                                            "channel": "lobby", "console-user": "root"}},
        # Disabled, so that nothing connects; its config is still built and written back.
        "net": {"path": "irc", "config": IRC, "enabled": False},
    },
    "channels": {"lobby": {"plug": "chat", "source": "lobby"}},
    "hooks": {"commands": {"path": "commands", "config": {
        "return-errors": True, "admins": {"chat": ["console:root"]}}}},
}  # fmt: skip


@pytest.mark.slow
def test_channel_add_under_w_writes_no_untouched_defaults(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(CONFIG))
    console = Console(immp_exe, file, clean_env, options=("-w",), stderr=tmp_path / "immp.err")
    try:
        console.type("!channel-add extra net #extra")
        console.expect("Added channel extra: net #extra.")
    finally:
        status = console.stop()
    assert status == 0, console.stderr
    written = yaml.safe_load(file.read_text())
    assert written == {
        **CONFIG,
        "channels": {**CONFIG["channels"], "extra": {"plug": "net", "source": "#extra"}},
    }
    assert "groups" not in written


def test_a_default_the_user_wrote_is_kept_and_nested_defaults_stay_out():
    written = {"server": {"host": "h", "ssl": False}, "user": {"nick": "bot"},
               "quit": "Disconnecting"}  # fmt: skip
    config = {"plugs": {"net": {"path": "irc", "enabled": False, "config": written}}}
    host = build_host(config)
    host.plugs["net"].config["server"]["port"] = 7000  # changed at runtime: written
    dumped = dump_config(host)
    assert dumped["plugs"]["net"]["config"] == {
        "server": {"host": "h", "ssl": False, "port": 7000},
        "user": {"nick": "bot"},
        "quit": "Disconnecting",
    }
    assert list(dumped) == ["plugs"]
