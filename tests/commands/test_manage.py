"""The admin commands that look at and change the running host, and what they write back."""

from __future__ import annotations

import json

import trio
import trio.testing

import immp
from immp.testing import running

from .helpers import WatchHook, plugins
from .test_commands import ask, make_host, people

ADMINS = {"admins": {"a": ["admin-1"]}}


def watch(host: immp.Host) -> list[tuple[object, dict, int]]:
    """Record each config change: its source, the config as written then, and a's put count."""
    changes = []
    host.on_config_change(lambda source: changes.append(
        (source, immp.dump_config(host, plugins()), host.plugs["a"].put_count)))  # fmt: skip
    return changes


def reload(config: dict) -> immp.Host:
    return immp.build_host(config, plugins=plugins())


async def test_listing_plugs_hooks_and_channels():
    host = make_host(ADMINS, channels={"room": {"plug": "a", "source": "room"}})
    admin, _ = people(host)
    async with running(host):
        a = host.plugs["a"]
        await host.stop("b", disable=True)
        [plugs] = await ask(a, "!plugs", admin)
        [hooks] = await ask(a, "!hooks", admin)
        [channels] = await ask(a, "!channels", admin)
    assert plugs == "Plugs:\n  a (demo): active\n  b (demo): disabled"
    assert hooks.splitlines() == [
        "Hooks:",
        "  commands (commands): active",
        "  tools (tests.commands.helpers.ToolHook): active",
    ]
    assert channels == "Channels:\n  room: a room"


async def test_disable_enable_restart_a_plug_take_effect_and_are_written_before_the_answer():
    host = make_host(ADMINS)
    admin, _ = people(host)
    changes = watch(host)
    async with running(host):
        a, b = host.plugs["a"], host.plugs["b"]
        assert await ask(a, "!disable b", admin) == ["Disabled plug b."]
        assert b.open_state is immp.OpenState.disabled
        source, written, puts_then = changes[-1]
        assert source is b and written["plugs"]["b"]["enabled"] is False
        assert puts_then == a.put_count - 1  # written before the answer was sent
        assert reload(written).plugs["b"].open_state is immp.OpenState.disabled

        assert await ask(a, "!restart b", admin) == ["plug b is disabled: enable it instead."]
        assert await ask(a, "!enable b", admin) == ["Enabled plug b: active."]
        assert b.open_state is immp.OpenState.active
        assert "enabled" not in changes[-1][1]["plugs"]["b"]
        assert await ask(a, "!enable b", admin) == ["plug b is already running."]

        await b.receive("before restart")
        assert await ask(a, "!restart b", admin) == ["Restarted plug b: running."]
        assert b.open_state is immp.OpenState.active
    assert len(changes) == 2


async def test_disable_and_enable_a_hook_removes_and_restores_its_commands():
    host = make_host(ADMINS)
    admin, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!disable tools", admin) == ["Disabled hook tools."]
        [help_text] = await ask(a, "!help", alice)
        assert "!ping" not in help_text
        assert await ask(a, "!enable tools", admin) == ["Enabled hook tools: active."]
        assert await ask(a, "!ping", alice) == ["pong"]
        assert await ask(a, "!restart tools", admin) == ["Restarted hook tools: running."]
        assert await ask(a, "!ping", alice) == ["pong"]


async def test_the_commands_hook_cannot_switch_itself_off_and_unknown_names_are_told():
    host = make_host(ADMINS)
    admin, _ = people(host)
    changes = watch(host)
    async with running(host):
        a = host.plugs["a"]
        for verb in ("disable", "restart", "enable"):
            assert await ask(a, f"!{verb} commands", admin) == [
                f"The commands hook cannot {verb} itself from chat."
            ]
        assert await ask(a, "!disable nosuch", admin) == ["No plug or hook named 'nosuch'."]
        assert await ask(a, "!disable", admin) == ["missing <name>; usage: !disable <name>"]
        assert host.hooks["commands"].open_state is immp.OpenState.active
    assert changes == []


async def test_adding_and_removing_named_channels():
    host = make_host(ADMINS, channels={"room": {"plug": "a", "source": "room"}},
                     groups={"main": {"channels": ["room"]}})  # fmt: skip
    admin, _ = people(host)
    changes = watch(host)
    told = []  # what the host tells plug b (an IRC plug joins and parts there)

    async def added(channel):
        told.append(("added", channel.source))

    async def removed(channel):
        told.append(("removed", channel.source))

    host.plugs["b"].on_channel_added, host.plugs["b"].on_channel_removed = added, removed
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!channel-add side b side-room", admin) == [
            "Added channel side: b side-room."
        ]
        assert host.channels["side"] == immp.Channel(host.plugs["b"], "side-room")
        written = changes[-1][1]
        assert written["channels"]["side"] == {"plug": "b", "source": "side-room"}
        assert reload(written).channels["side"].source == "side-room"

        assert await ask(a, "!channel-add side a x", admin) == [
            "The name 'side' is already used by a channel."
        ]
        assert await ask(a, "!channel-add main a x", admin) == [
            "The name 'main' is already used by a group."
        ]
        assert await ask(a, "!channel-add other nope x", admin) == ["No plug named 'nope'."]
        assert await ask(a, "!channel-add other a", admin) == [
            "missing <source>; usage: !channel-add <name> <plug> <source>"
        ]

        assert await ask(a, "!channel-remove room", admin) == [
            "Channel room is still used by groups.main.channels[0]."
        ]
        assert await ask(a, "!channel-remove nope", admin) == ["No channel named 'nope'."]
        assert await ask(a, "!channel-remove side", admin) == ["Removed channel side."]
        assert "side" not in host.channels
        written = changes[-1][1]
        assert "side" not in written["channels"] and "room" in written["channels"]
        reload(written)
        with trio.fail_after(10):
            while len(told) < 2:
                await trio.sleep(0.01)
    assert len(changes) == 2
    assert told == [("added", "side-room"), ("removed", "side-room")]


async def test_a_channel_used_by_a_hook_config_cannot_be_removed():
    host = make_host(ADMINS, channels={"room": {"plug": "a", "source": "room"}})
    host.add_hook(WatchHook("watch", {"channel": "room"}, host))
    admin, _ = people(host)
    async with running(host):
        assert await ask(host.plugs["a"], "!channel-remove room", admin) == [
            "Channel room is still used by hooks.watch.config.channel."
        ]
    assert "room" in host.channels


async def test_management_commands_are_admin_only():
    host = make_host(ADMINS)
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        for line in ("!plugs", "!hooks", "!channels", "!enable b", "!disable b", "!restart b",
                     "!channel-add x a y", "!channel-remove x"):  # fmt: skip
            name = line.split()[0]
            assert await ask(a, line, alice) == [f"{name} is for admins only."]
        assert host.plugs["b"].open_state is immp.OpenState.active


async def test_changes_from_chat_survive_a_restart_without_write_back(caplog):
    store = immp.MemoryStore()  # one store, two lifetimes of the same config (no -w)

    def start():
        host = make_host(ADMINS)
        host.store = store
        return host

    host = start()
    admin, _ = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!disable b", admin) == ["Disabled plug b."]
        assert await ask(a, "!channel-add side a side-room", admin)
    host = start()
    caplog.clear()
    async with running(host):
        assert host.plugs["b"].open_state is immp.OpenState.disabled
        # Not what the file says: the log says why.
        assert (
            "plug b disabled, as a command left it (the config file says it is enabled); a "
            "command or an edit of the file changes it"
        ) in caplog.text
        assert host.channels["side"] == immp.Channel(host.plugs["a"], "side-room")
        admin, _ = people(host)
        assert await ask(host.plugs["a"], "!enable b", admin) == ["Enabled plug b: active."]
    host = start()
    async with running(host):
        assert host.plugs["b"].open_state is immp.OpenState.active
    # The config file changed since (b now disabled there): the file wins, the record goes.
    host = make_host(ADMINS, plugs={"a": {"path": "demo", "config": {"interval": None}},
                                    "b": {"path": "demo", "enabled": False}})  # fmt: skip
    host.store = store
    async with running(host):
        assert host.plugs["b"].open_state is immp.OpenState.disabled
        assert "b" not in await host.hooks["commands"].state.get("switched")


async def test_a_change_after_a_sighup_reload_is_kept_against_the_reloaded_file(tmp_path):
    # A change from chat is kept against what the config said when it was made: after a SIGHUP
    # reload that is the file as reloaded, not as IMMP started with it.
    from immp._config.load import load_file
    from immp._runner import ConfigFile

    store = immp.MemoryStore()
    path = tmp_path / "bridge.json"

    def config(b_enabled: bool) -> dict:
        return {
            "plugs": {
                "a": {"path": "demo", "config": {"interval": None}},
                "b": {"path": "demo", "enabled": b_enabled, "config": {"interval": None}},
            },
            "hooks": {"commands": {"path": "commands", "config": ADMINS}},
        }

    path.write_text(json.dumps(config(False)))
    data = load_file(path)
    host = immp.build_host(data, plugins=plugins())
    host.store = store
    admin, _ = people(host)
    async with running(host):
        file = ConfigFile(str(path), data, host, plugins(), write=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(file.serve)
            path.write_text(json.dumps(config(True)))  # the admin enables b in the file...
            await file.reload_logged()  # ...and sends SIGHUP
            assert host.plugs["b"].open_state is immp.OpenState.active
            await trio.testing.wait_all_tasks_blocked()
            # ...then switches it off from chat, without -w: kept in the store.
            assert await ask(host.plugs["a"], "!disable b", admin) == ["Disabled plug b."]
            nursery.cancel_scope.cancel()
    # A restart from the same (reloaded) file: the change from chat is applied again.
    host = immp.build_host(load_file(path), plugins=plugins())
    host.store = store
    admin, _ = people(host)
    async with running(host):
        assert host.plugs["b"].open_state is immp.OpenState.disabled
        # The file now changes b itself (disabled there too) and is reloaded: the file wins,
        # the record made against the old file goes, and a new change is kept against this one.
        data = load_file(path)
        file = ConfigFile(str(path), data, host, plugins(), write=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(file.serve)
            path.write_text(json.dumps(config(False)))
            await file.reload_logged()
            await trio.testing.wait_all_tasks_blocked()
            assert "b" not in await host.hooks["commands"].state.get("switched")
            assert await ask(host.plugs["a"], "!enable b", admin) == ["Enabled plug b: active."]
            nursery.cancel_scope.cancel()
    host = immp.build_host(load_file(path), plugins=plugins())
    host.store = store
    async with running(host):
        assert host.plugs["b"].open_state is immp.OpenState.active
