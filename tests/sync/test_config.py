"""Sync and forward hooks built from a config file's data, as the runner does."""

from __future__ import annotations

import pytest

import immp
import immp_demo.plugin
import immp_sync.plugin
from immp.plugins import Plugins
from immp_sync import ForwardHook, SyncHook


def plugins() -> Plugins:
    found = Plugins(discover=False)
    found.add(immp_demo.plugin, "immp-plug-demo")
    found.add(immp_sync.plugin, "immp-hook-sync")
    return found


def config(**hook) -> dict:
    return {
        "plugs": {"one": {"path": "demo"}, "two": {"path": "demo"}},
        "channels": {
            "lobby": {"plug": "one", "source": "room"},
            "hall": {"plug": "two", "source": "room"},
        },
        "hooks": {"sync": {"path": "immp.hook.sync.SyncHook", "config": hook}},
    }


def test_an_imm_config_builds_with_defaults():
    host = immp.build_host(
        config(channels={"main": ["lobby", "hall"]}, plug="bridge"), plugins=plugins()
    )
    hook = host.hooks["sync"]
    assert isinstance(hook, SyncHook)
    assert hook.config["joins"] and hook.config["renames"] and hook.config["edits"]
    assert hook.config["name-format"] is None and not hook.config["reset-author"]
    hook.on_load()
    assert host.plugs["bridge"].virtual
    # The virtual plug is never written back; the hook's config is, as the user wrote it.
    dumped = immp.dump_config(host)
    assert set(dumped["plugs"]) == {"one", "two"}
    assert dumped["hooks"]["sync"]["config"] == {
        "channels": {"main": ["lobby", "hall"]},
        "plug": "bridge",
    }


@pytest.mark.parametrize(
    ("hook", "where"),
    [
        ({"channels": {"main": ["lobby", "nowhere"]}}, "hooks.sync.config.channels.main[1]"),
        (
            {"channels": {"main": ["lobby"]}, "name-format": "{{ oops"},
            "hooks.sync.config.name-format",
        ),
        ({"channels": {}, "plugs": {"one": {"joins": "yes"}}}, "hooks.sync.config.plugs.one.joins"),
        ({"channels": {}, "plugs": {"one": {"jions": True}}}, "hooks.sync.config.plugs.one.jions"),
        (
            {"channels": {}, "plugs": {"one": {"name-format": "{{ oops"}}},
            "hooks.sync.config.plugs.one.name-format",
        ),
        ({"channels": {}, "queue-size": 0}, "hooks.sync.config.queue-size"),
        ({"channels": {}, "joins": 1}, "hooks.sync.config.joins"),
    ],
)
def test_config_errors_name_the_key(hook, where):
    with pytest.raises(immp.ConfigError) as caught:
        immp.build_host(config(**hook), plugins=plugins())
    assert str(caught.value.path).startswith(where)


def test_forward_by_short_name():
    data = config()
    data["hooks"] = {"fwd": {"path": "forward", "config": {"channels": {"lobby": ["hall"]}}}}
    host = immp.build_host(data, plugins=plugins())
    assert isinstance(host.hooks["fwd"], ForwardHook)


def test_per_plug_overrides_keep_only_what_was_written():
    data = config()
    data["hooks"]["sync"]["config"]["plugs"] = {"one": {"joins": False}, "two": None}
    host = immp.build_host(data, plugins=plugins())
    assert host.hooks["sync"].config["plugs"] == {"one": {"joins": False}, "two": {}}
    dumped = immp.dump_config(host, plugins())
    assert dumped["hooks"]["sync"]["config"]["plugs"]["one"] == {"joins": False}
