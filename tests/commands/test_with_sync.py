"""The commands hook next to the real sync hook: commands run once, sync commands dispatched."""

from __future__ import annotations

import pytest
import trio

import immp
from immp.testing import running

from .helpers import ToolHook, plugins, said
from .test_commands import ask

sync_plugin = pytest.importorskip("immp_sync.plugin")


def make_host(plug: str | None = None) -> immp.Host:
    found = plugins()
    found.add(sync_plugin, "immp-hook-sync")
    demo = {"path": "demo", "config": {"interval": None}}
    sync = {"channels": {"main": ["#a", "#b"]}, **({"plug": plug} if plug else {})}
    return immp.build_host({
        "plugs": {"a": demo, "b": demo, "c": demo},
        "channels": {f"#{n}": {"plug": n, "source": "room"} for n in "abc"},
        "hooks": {
            "sync": {"path": "sync", "config": sync},
            "commands": {"path": "commands", "config": {"admins": {"a": ["admin-1"]}}},
            "tools": {"path": f"{ToolHook.__module__}.ToolHook"},
        },
    }, plugins=found)  # fmt: skip


def users(host):
    a = host.plugs["a"]
    return immp.User(id="admin-1", plug=a, username="root"), immp.User(id="u-2", plug=a)


@pytest.mark.parametrize("plug", [None, "bridge"])
async def test_a_command_typed_in_a_bridged_channel_runs_once(plug):
    host = make_host(plug)
    _, alice = users(host)
    a, b = host.plugs["a"], host.plugs["b"]
    async with running(host):
        await a.receive("!ping", user=alice, channel="room")
        await a.wait_puts(1)  # pong
        await b.wait_puts(2)  # the copy of !ping, then the copy of pong
        await trio.sleep(0.3)  # room for a wrong second run to show up
    assert host.hooks["tools"].calls == [("ping", ())]
    assert said(a) == ["pong"]
    assert said(b) == ["!ping", "pong"]


async def test_sync_aware_commands_run_once_from_the_bridge_plug():
    host = make_host("bridge")
    _, alice = users(host)
    a, b = host.plugs["a"], host.plugs["b"]
    async with running(host):
        await a.receive("!whole", user=alice, channel="room")
        await a.wait_puts(1)
        await b.wait_puts(2)
        await trio.sleep(0.3)
    assert host.hooks["tools"].calls == [("whole", ())]
    assert said(a) == ["whole from bridge"]
    assert said(b) == ["!whole", "whole from bridge"]


async def test_sync_commands_are_dispatched_with_their_roles():
    host = make_host()
    admin, alice = users(host)
    changes = []
    host.on_config_change(changes.append)
    async with running(host):
        a = host.plugs["a"]
        [listing] = await ask(a, "!sync-list", alice)
        assert listing.startswith("Channels in bridge main:")
        assert await ask(a, "!sync-add main #c", alice) == ["!sync-add is for admins only."]
        assert await ask(a, "!sync-add main #c", admin) == ["Added #c to bridge main."]
        assert changes == [host.hooks["sync"]]
        [help_text] = await ask(a, "!help", admin)
        assert "!sync-add <label> <channel>" in help_text
        assert await ask(a, "!channel-remove #c", admin) == [
            "Channel #c is still used by hooks.sync.config.channels.main[2]."
        ]
