"""The forward hook: one-way copies from channels and groups, optionally only some authors."""

from __future__ import annotations

import pytest

import immp
from immp.testing import running
from immp_sync import ForwardHook

from .helpers import make_host, settle, texts


def add_forward(host, **config) -> ForwardHook:
    return host.add_hook(ForwardHook("forward", config, host))


async def test_forwards_one_way():
    host = make_host("a", "b", "c")
    add_forward(host, channels={"#a": ["#b", "#c"]})
    async with running(host):
        await host.plugs["a"].receive("news")
        await host.plugs["b"].receive("reply stays here")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["c"].wait_puts(1)
        await settle()
    assert texts(host.plugs["b"]) == texts(host.plugs["c"]) == ["news"]
    assert texts(host.plugs["a"]) == []


async def test_forwards_from_every_channel_of_a_group():
    host = make_host("a", "b", "log", other=("a", "other"))
    host.add_group(immp.Group("everything", {"anywhere": ["a", "b"]}, host))
    add_forward(
        host, groups={"everything": ["#log"]}, **{"name-format": "{{ label }}: {{ user.name }}"}
    )
    async with running(host):
        await host.plugs["a"].receive("one")
        await host.plugs["a"].receive("two", channel="other")
        await host.plugs["b"].receive("three")
        await host.plugs["log"].receive("not from the group")
        await host.plugs["log"].wait_puts(3)
        await settle()
    puts = [msg for _, msg in host.plugs["log"].puts]
    # Order is promised per source channel, not across plugs: compare who said what.
    assert {str(m.text): m.user.name for m in puts} == {
        "one": "#a: a",
        "two": "other: a",
        "three": "#b: b",
    }
    assert len(puts) == 3


async def test_only_listed_users_are_forwarded():
    host = make_host("a", "b")
    add_forward(host, channels={"#a": ["#b"]}, users=["boss"])
    boss = immp.User("boss", host.plugs["a"], username="boss")
    intern = immp.User("intern", host.plugs["a"], username="intern")
    async with running(host):
        await host.plugs["a"].receive("noise", user=intern)
        await host.plugs["a"].receive("orders", user=boss)
        await host.plugs["b"].wait_puts(1)
        await settle()
    assert texts(host.plugs["b"]) == ["orders"]


async def test_forward_edits_and_forward_into_a_bridge_is_not_looped():
    from immp_sync import SyncHook

    host = make_host("a", "b", "c")
    add_forward(host, channels={"#a": ["#b"]})
    host.add_hook(SyncHook("sync", {"channels": {"main": ["#b", "#c"]}}, host))
    async with running(host):
        sent = await host.plugs["a"].receive("draft")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["a"].edit_message(sent.id, "final")
        await host.plugs["b"].wait_puts(2)
        await host.plugs["b"].receive("chat in the bridge")
        await host.plugs["c"].wait_puts(1)
        await settle()
    _first, edit = (msg for _, msg in host.plugs["b"].puts)
    assert str(edit.text) == "final" and edit.edited
    # The forwarded copy is not synced on (a copy is never copied again); chat still is.
    assert texts(host.plugs["c"]) == ["chat in the bridge"]
    assert texts(host.plugs["a"]) == []


def test_forward_config_names_must_exist():
    schema = ForwardHook.schema
    refs = {"channel": {"#a", "#b"}, "group": {"g"}}
    schema.validate({"channels": {"#a": ["#b"]}, "groups": {"g": ["#a"]}}, "config", refs)
    with pytest.raises(immp.ConfigError, match="no channel named '#zzz'"):
        schema.validate({"channels": {"#a": ["#zzz"]}}, "config", refs)
    with pytest.raises(immp.ConfigError, match="no group named 'nope'"):
        schema.validate({"groups": {"nope": ["#a"]}}, "config", refs)


async def test_forwarding_goes_on_after_the_hook_is_restarted():
    host = make_host("a", "b")
    add_forward(host, channels={"#a": ["#b"]})
    async with running(host):
        await host.plugs["a"].receive("before")
        await host.plugs["b"].wait_puts(1)
        assert await host.restart("forward")
        await host.plugs["a"].receive("after")
        await host.plugs["b"].wait_puts(2)
    assert texts(host.plugs["b"]) == ["before", "after"]
