"""The sync hook's virtual plug and its commands."""

from __future__ import annotations

import pytest

import immp
from immp.testing import Recorder, running
from immp_sync import SyncHook, SyncPlug

from .helpers import make_host, settle, texts


def bridged_host(**config):
    host = make_host("a", "b", "c", spare=("c", "spare"))
    hook = host.add_hook(SyncHook("sync", {"channels": {"main": ["#a", "#b"]}, **config}, host))
    return host, hook


async def test_virtual_plug_sees_the_whole_bridge_as_one_channel():
    host, _hook = bridged_host(plug="bridge", titles={"main": "Main room"})
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        plug = host.plugs["bridge"]
        assert isinstance(plug, SyncPlug) and plug.virtual
        await host.plugs["a"].receive("from a")
        await host.plugs["b"].receive("from b")
        await host.plugs["a"].wait_puts(1)
        await host.plugs["b"].wait_puts(1)
        await settle()
        seen = recorder.in_channel(immp.Channel(plug, "main"))
        # Two networks: each message once, in no promised order between them.
        assert sorted(str(m.text) for m in seen) == ["from a", "from b"]
        assert await seen[0].channel.title() == "Main room"
        assert [c.source for c in await plug.public_channels()] == ["main"]
        members = await plug.channel_members(immp.Channel(plug, "main"))
        assert {u.name for u in members} == {"a", "b", "you"}


async def test_the_virtual_plug_keeps_the_real_author_whatever_the_name_options():
    # Hooks on the bridge plug (commands and their permissions) need the real author; the name
    # options are for the copies shown on other networks.
    host, _hook = bridged_host(plug="bridge", **{"name-format": "{{ user.name }} (via)"})
    recorder = host.add_hook(Recorder(host=host))
    alice = immp.User("alice", host.plugs["a"], username="alice")
    async with running(host):
        await host.plugs["a"].receive("hello", user=alice)
        await host.plugs["b"].wait_puts(1)
        await settle()
        [on_bridge] = recorder.in_channel(immp.Channel(host.plugs["bridge"], "main"))
    assert on_bridge.user == alice and not on_bridge.user.suggested
    assert on_bridge.user.name == "alice"
    assert host.plugs["b"].puts[0][1].user.name == "alice (via)"


async def test_the_virtual_plug_closes_and_opens_with_its_hook():
    host, _hook = bridged_host(plug="bridge")
    async with running(host):
        bridge = host.plugs["bridge"]
        await host.stop("sync", disable=True)
        assert bridge.open_state is not immp.OpenState.active
        # Nothing sent into a bridge whose hook is off is taken and lost.
        with pytest.raises(immp.PlugError):
            await immp.Channel(bridge, "main").send(immp.Message("anyone?"))
        assert await host.start("sync")
        assert bridge.open_state is immp.OpenState.active
        await immp.Channel(bridge, "main").send(immp.Message("back"))
        await host.plugs["a"].wait_puts(1)
    assert texts(host.plugs["a"]) == ["back"]


async def test_sending_into_the_virtual_channel_reaches_every_channel():
    host, _hook = bridged_host(plug="bridge")
    async with running(host):
        channel = immp.Channel(host.plugs["bridge"], "main")
        receipts = await channel.send(immp.Message("announcement"))
        await host.plugs["a"].wait_puts(1)
        await host.plugs["b"].wait_puts(1)
        # An edit and a deletion through the virtual plug reach the copies too.
        await host.plugs["bridge"].edit(receipts[0], immp.Message("announcement!"))
        await host.plugs["a"].wait_puts(2)
        await host.plugs["bridge"].delete(receipts[0])
        await host.plugs["b"].wait_puts(3)
        await settle()
    for name in "ab":
        first, edit, delete = (msg for _, msg in host.plugs[name].puts)
        assert str(first.text) == "announcement"
        assert edit.edited and str(edit.text) == "announcement!"
        assert delete.deleted
    assert texts(host.plugs["c"]) == []


async def test_reply_from_the_virtual_channel_points_at_each_copy():
    class Answer(immp.Hook):
        async def on_receive(self, sent, source, primary):
            if sent.channel.plug.name == "bridge" and str(sent.text) == "ping?":
                await sent.channel.send(immp.Message("pong", reply_to=sent))

    host, _hook = bridged_host(plug="bridge")
    host.add_hook(Answer("answer", {}, host))
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        ping = await host.plugs["a"].receive("ping?")
        await host.plugs["a"].wait_puts(1)
        await host.plugs["b"].wait_puts(2)
        await settle()
    copy_on_b = recorder.in_channel(host.channels["#b"])[0]
    on_a = host.plugs["a"].puts[0][1]
    on_b = host.plugs["b"].puts[1][1]
    assert str(on_a.text) == str(on_b.text) == "pong"
    assert on_a.reply_to.id == ping.id
    assert on_b.reply_to.id == copy_on_b.id


async def test_sync_list_and_members():
    host, hook = bridged_host()
    commands = immp.commands_of(hook)
    async with running(host):
        msg = await host.plugs["a"].receive("!sync-list")
        assert await commands["sync-list"].applicable(msg)
        await commands["sync-list"](msg)
        await commands["sync-members"](msg)
        outside = await host.plugs["c"].receive("!sync-list")
        assert not await commands["sync-list"].applicable(outside)
        await host.plugs["b"].wait_puts(3)
    listing, members = texts(host.plugs["a"])
    assert listing.splitlines() == [
        "Channels in bridge main:",
        "- #a (room) on a (Demo)",
        "- #b (room) on b (Demo)",
    ]
    assert members.splitlines() == ["Members of bridge main:", "- #a: a, you", "- #b: b, you"]
    # The answers are in the bridge, so the other side sees them too.
    assert texts(host.plugs["b"]) == ["!sync-list", listing, members]


async def test_sync_add_and_remove_change_the_config_and_the_bridge():
    host, hook = bridged_host()
    commands = immp.commands_of(hook)
    assert commands["sync-add"].spec.role is immp.CommandRole.admin
    assert commands["sync-remove"].spec.role is immp.CommandRole.admin
    changes = []
    host.on_config_change(changes.append)
    async with running(host):
        msg = await host.plugs["a"].receive("!sync-add main #c")
        await settle()
        await commands["sync-add"](msg, "main", "#c")
        assert hook.config["channels"] == {"main": ["#a", "#b", "#c"]}
        assert changes == [hook]
        await host.plugs["a"].receive("three of us")
        await settle()
        await commands["sync-add"](msg, "main", "#nowhere")
        await commands["sync-remove"](msg, "main", "#b")
        assert hook.config["channels"] == {"main": ["#a", "#c"]}
        await host.plugs["a"].receive("just us")
        await settle()
        await commands["sync-remove"](msg, "main", "#a")
        await commands["sync-remove"](msg, "main", "#c")
        assert hook.config["channels"] == {}
        await settle()
    assert changes == [hook] * 4
    assert [t for t in texts(host.plugs["c"]) if "us" in t] == ["three of us", "just us"]
    assert "just us" not in texts(host.plugs["b"])
    replies = texts(host.plugs["a"])
    assert replies[0] == "Added #c to bridge main."
    assert "No channel named #nowhere." in replies
    assert "Removed #b from bridge main." in replies


async def test_written_back_config_holds_the_new_bridge():
    host, hook = bridged_host(plug="bridge")
    async with running(host):
        msg = await host.plugs["a"].receive("!sync-add other #c")
        await immp.commands_of(hook)["sync-add"](msg, "other", "spare")
        dumped = immp.dump_config(host)
    assert dumped["hooks"]["sync"]["config"]["channels"] == {
        "main": ["#a", "#b"],
        "other": ["spare"],
    }
    assert "bridge" not in dumped["plugs"]
