"""The commands hook through a real host with demo plugs: finding, parsing and refusing commands."""

from __future__ import annotations

import logging
import time

import pytest
import trio

import immp
from immp.testing import running

from .helpers import RelayHook, ToolHook, VirtualPlug, plugins, said


def make_host(commands: dict | None = None, **sections) -> immp.Host:
    config = {
        "plugs": {
            "a": {"path": "demo", "config": {"interval": None}},
            "b": {"path": "demo", "config": {"interval": None}},
        },
        "hooks": {
            "commands": {"path": "commands", "config": commands or {}},
            "tools": {"path": f"{ToolHook.__module__}.ToolHook"},
        },
        **sections,
    }
    return immp.build_host(config, plugins=plugins())


def people(host):
    a = host.plugs["a"]
    return (immp.User(id="admin-1", plug=a, username="root"),
            immp.User(id="u-2", plug=a, username="alice"))  # fmt: skip


ADMINS = {"admins": {"a": ["admin-1"]}}


async def ask(plug, text, user, channel="room", expect=1) -> list[str]:
    """Type ``text`` as ``user`` and return the ``expect`` answers."""
    before = plug.put_count
    await plug.receive(text, user=user, channel=channel)
    await plug.wait_puts(before + expect)
    return said(plug, len(plug.puts) - (plug.put_count - before))


async def silent(plug, text, user, channel="room") -> None:
    """Type ``text``, then ``!ping``: the only answer must be pong (``text`` got none)."""
    before = plug.put_count
    await plug.receive(text, user=user, channel=channel)
    await plug.receive("!ping", user=user, channel=channel)
    await plug.wait_puts(before + 1)
    assert said(plug, len(plug.puts) - (plug.put_count - before)) == ["pong"]


# -- prefixes and which messages count ---------------------------------------------------------


async def test_every_prefix_matches_case_insensitively():
    host = make_host({"prefix": ["!", "immp "]})
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!ping", alice) == ["pong"]
        assert await ask(a, "IMMP ping", alice) == ["pong"]
        assert await ask(a, "Immp   PING", alice) == ["pong"]
        await silent(a, "immpping", alice)
        await silent(a, "?ping", alice)
        await silent(a, "ping", alice)
        await silent(a, "!", alice)


async def test_a_single_string_prefix_is_accepted():
    host = make_host({"prefix": "bot, "})
    _, alice = people(host)
    async with running(host):
        assert await ask(host.plugs["a"], "bot, ping", alice) == ["pong"]


async def test_empty_prefix_is_a_config_error():
    with pytest.raises(immp.ConfigError, match=r"hooks.commands.config.prefix"):
        make_host({"prefix": ["!", " "]})


async def test_unknown_and_inapplicable_commands_are_silent():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        await silent(a, "!nosuch thing", alice)
        await silent(a, "!hidden", alice)
    assert ("hidden", ()) not in host.hooks["tools"].calls


async def test_messages_not_from_people_run_nothing():
    host = make_host()
    async with running(host):
        a = host.plugs["a"]
        tools = host.hooks["tools"]
        await a.receive("!ping")  # the demo plug's own (system) user
        await a.receive("!ping", user=immp.User(username="ghost", suggested=True))
        await a.receive("!ping", user=immp.User(id="x", plug=host.plugs["b"], username="x"))
        await a.receive("!ping", user=None)
        await a.receive("!ping", user=people(host)[1])
        await a.wait_puts(1)
        assert said(a) == ["pong"]
        assert tools.calls == [("ping", ())]


async def test_edits_do_not_run_a_command_again():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        sent = await a.receive("!say one", user=alice, channel="room")
        await a.wait_puts(1)
        await a.edit_message(sent.id, "!say two")
        await silent(a, "!nosuch", alice)
    assert host.hooks["tools"].calls == [("say", ("one", None)), ("ping", ())]


# -- parsers -----------------------------------------------------------------------------------


async def test_spaces_parser_with_optional_and_rest():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        await ask(a, "!say  one   two three four", alice)
        await ask(a, "!say one", alice)
    assert host.hooks["tools"].calls == [("say", ("one", "two", "three", "four")),
                                         ("say", ("one", None))]  # fmt: skip


async def test_shlex_parser_keeps_quoted_words_together():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        await ask(host.plugs["a"], "!quote \"two words\" 'and more'", alice)
    assert host.hooks["tools"].calls == [("quote", ("two words", "and more"))]


async def test_unbalanced_quotes_answer_with_the_usage_line():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        [answer] = await ask(host.plugs["a"], '!quote "never closed', alice)
    assert answer == "No closing quotation; usage: !quote <a> [b]"
    assert host.hooks["tools"].calls == []


async def test_none_parser_passes_the_rest_as_rich_text_with_formatting():
    host = make_host()
    _, alice = people(host)
    text = immp.RichText(["!raw  plain ", immp.Segment("bold", bold=True), " end  "])
    async with running(host):
        await ask(host.plugs["a"], text, alice)
    [(_, (arg,))] = host.hooks["tools"].calls
    assert isinstance(arg, immp.RichText)
    assert str(arg) == "plain bold end"
    assert [seg.bold for seg in arg.normalise()] == [False, True, False]


async def test_hybrid_parser_splits_words_then_keeps_the_rest():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        [answer] = await ask(host.plugs["a"], "!hyb bob hello   there  world", alice)
        await ask(host.plugs["a"], "!hyb bob", alice)
    assert answer == "bob: hello   there  world"
    calls = host.hooks["tools"].calls
    assert str(calls[0][1][1]) == "hello   there  world"
    assert calls[1] == ("hyb", ("bob", None))


async def test_missing_and_extra_arguments_answer_with_the_usage_line():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!quote", alice) == ["missing <a>; usage: !quote <a> [b]"]
        assert await ask(a, "!ping now", alice) == ["too many arguments; usage: !ping"]
        assert await ask(a, "!say", alice) == ["missing <first>; usage: !say <first> [second] "
                                               "[more...]"]  # fmt: skip
    assert host.hooks["tools"].calls == []


async def test_a_100kb_command_line_is_refused_cheaply():
    host = make_host()
    _, alice = people(host)
    huge = "!say " + "x " * 50_000
    async with running(host):
        a = host.plugs["a"]
        started = time.perf_counter()
        [answer] = await ask(a, huge, alice)
        await silent(a, "!" + "y" * 100_000, alice)  # no command has that name
        await silent(a, "chatter " * 12_500, alice)  # not a command at all
        assert time.perf_counter() - started < 2
    assert answer == "!say: command too long (at most 4000 characters)."
    assert host.hooks["tools"].calls == [("ping", ()), ("ping", ())]


async def test_max_length_is_configurable():
    host = make_host({"max-length": 10})
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!say 12345", alice) == ["say ('12345', None)"]
        assert await ask(a, "!say 123456", alice) == [
            "!say: command too long (at most 10 characters)."
        ]


# -- scopes ------------------------------------------------------------------------------------


async def test_private_and_shared_scopes():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!secret", alice, channel="@alice") == ["psst"]
        await silent(a, "!secret", alice, channel="room")
        assert await ask(a, "!room", alice, channel="room") == ["everyone"]
        await silent(a, "!room", alice, channel="@alice")


# -- permissions -------------------------------------------------------------------------------


async def test_admin_commands_are_refused_in_one_line_for_others():
    host = make_host(ADMINS)
    admin, alice = people(host)
    a, b = host.plugs["a"], host.plugs["b"]
    impostor = immp.User(id="u-3", plug=a, username="root")  # the admin's name, another ID
    elsewhere = immp.User(id="admin-1", plug=b, username="root")  # the admin's ID, other plug
    async with running(host):
        assert await ask(a, "!shut", alice) == ["!shut is for admins only."]
        assert await ask(a, "!shut", impostor) == ["!shut is for admins only."]
        assert await ask(b, "!shut", elsewhere) == ["!shut is for admins only."]
        assert await ask(a, "!disable b", alice) == ["!disable is for admins only."]
        assert host.plugs["b"].open_state is immp.OpenState.active
        assert await ask(a, "!shut", admin) == ["shut done"]
    assert host.hooks["tools"].calls == [("shut", ())]


async def test_admin_ids_may_be_numbers_in_config():
    host = make_host({"admins": {"a": [42]}})
    a = host.plugs["a"]
    async with running(host):
        assert await ask(a, "!shut", immp.User(id="42", plug=a)) == ["shut done"]


async def test_admins_must_name_a_known_plug():
    with pytest.raises(immp.ConfigError, match=r"hooks.commands.config.admins.nope: no plug"):
        make_host({"admins": {"nope": ["x"]}})


# -- help --------------------------------------------------------------------------------------


async def test_help_lists_what_the_asking_user_can_run_here():
    host = make_host(ADMINS)
    admin, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        [for_alice] = await ask(a, "!help", alice)
        [for_admin] = await ask(a, "!help", admin)
        [in_private] = await ask(a, "!help", alice, channel="@alice")
    assert "Global commands:" in for_alice
    assert "  !ping - Answer pong." in for_alice.splitlines()
    assert "  !say <first> [second] [more...] - Repeat words." in for_alice.splitlines()
    assert "Commands in this channel:\n  !room - Shared channels only." in for_alice
    for hidden in ("!shut", "!plugs", "!disable", "!channel-add", "!hidden", "!secret"):
        assert hidden not in for_alice
    for shown in ("!shut", "!plugs", "!hooks", "!enable <name>", "!disable <name>",
                  "!restart <name>", "!channel-add <name> <plug> <source>",
                  "!channel-remove <name>"):  # fmt: skip
        assert shown in for_admin
    assert "Private commands:\n  !secret - Private only." in in_private
    assert "!room" not in in_private
    assert for_alice.splitlines()[-1] == "Send !help NAME for details of one."


async def test_help_name_gives_usage_and_text_but_hides_admin_commands():
    host = make_host(ADMINS)
    admin, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!help say", alice) == [
            "!say <first> [second] [more...]\nRepeat words.\n\nSplit on white space."
        ]
        assert await ask(a, "!help !PING", alice) == ["!ping\nAnswer pong."]
        assert await ask(a, "!help shut", alice) == ["No command 'shut' here."]
        assert await ask(a, "!help nosuch", alice) == ["No command 'nosuch' here."]
        assert await ask(a, "!help shut", admin) == ["!shut\nAdmins only."]
        assert await ask(a, "!help secret", alice) == ["No command 'secret' here."]


async def test_help_name_strips_the_longest_prefix():
    host = make_host({"prefix": ["!", "!!"]})
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!help !!ping", alice) == ["!ping\nAnswer pong."]
        assert await ask(a, "!!help !ping", alice) == ["!ping\nAnswer pong."]


# -- mapping and sets --------------------------------------------------------------------------


async def test_mapping_offers_hooks_and_sets_per_group():
    host = make_host(
        {"mapping": {
            "main": {"groups": ["main"], "hooks": ["tools"]},
            "rest": {"sets": ["basic"]},
        }, "sets": {"basic": {"tools": ["ping", "nosuch"]}}},
        channels={"room": {"plug": "a", "source": "room"}},
        groups={"main": {"channels": ["room"]}},
    )  # fmt: skip
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        assert await ask(a, "!say hi", alice, channel="room") == ["say ('hi', None)"]
        await silent(a, "!say hi", alice, channel="other")
        [help_other] = await ask(a, "!help", alice, channel="other")
        await silent(a, "!plugs", alice, channel="other")  # not mapped, not even refused
    assert "!ping" in help_other and "!help" in help_other and "!say" not in help_other


async def test_mapping_must_name_known_sets_groups_and_hooks():
    with pytest.raises(immp.ConfigError, match=r"mapping.x.sets\[0\]: .*no set named 'gone'"):
        make_host({"mapping": {"x": {"sets": ["gone"]}}})
    with pytest.raises(immp.ConfigError, match=r"mapping.x.groups\[0\]: no group named"):
        make_host({"mapping": {"x": {"groups": ["gone"]}}})
    with pytest.raises(immp.ConfigError, match=r"sets.s.gone: no hook named"):
        make_host({"sets": {"s": {"gone": ["ping"]}}})


async def test_commands_of_a_disabled_hook_are_gone():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        await host.stop("tools", disable=True)
        before = a.put_count
        await a.receive("!ping", user=alice, channel="room")
        await a.receive("!help", user=alice, channel="room")
        await a.wait_puts(before + 1)
        assert "!ping" not in said(a)[-1] and "!help" in said(a)[-1]


# -- failures ----------------------------------------------------------------------------------


async def test_a_failing_command_is_only_logged_by_default(caplog):
    host = make_host()
    _, alice = people(host)
    with caplog.at_level(logging.ERROR):
        async with running(host):
            await silent(host.plugs["a"], "!boom", alice)
    assert ("boom", ()) in host.hooks["tools"].calls
    assert any(
        "Command boom (hook tools) failed: ValueError" in r.getMessage() for r in caplog.records
    )


async def test_a_failing_command_is_logged_in_one_line_as_it_is_answered(caplog):
    host = make_host()
    _, alice = people(host)
    with caplog.at_level(logging.ERROR):
        async with running(host):
            await silent(host.plugs["a"], "!boom", alice)
    messages = [r.getMessage() for r in caplog.records if "Command boom" in r.getMessage()]
    assert messages == ["Command boom (hook tools) failed: ValueError: kaput at line two"]


async def test_a_failing_command_answers_in_one_line_with_return_errors(caplog):
    host = make_host({"return-errors": True})
    _, alice = people(host)
    with caplog.at_level(logging.ERROR):
        async with running(host):
            answers = await ask(host.plugs["a"], "!boom", alice)
    assert answers == ["!boom failed: ValueError: kaput at line two"]
    assert any("Command boom" in r.getMessage() for r in caplog.records)


# -- echoes and bridges ------------------------------------------------------------------------


async def test_a_command_in_a_synced_channel_runs_once():
    host = make_host()
    _, alice = people(host)
    a, b = host.plugs["a"], host.plugs["b"]
    host.add_hook(RelayHook("relay", host, [immp.Channel(a, "room"), immp.Channel(b, "room")]))
    tools = host.hooks["tools"]
    async with running(host):
        await a.receive("!ping", user=alice, channel="room")
        # b gets the copy of "!ping", then the copy of "pong"; a gets "pong".
        await b.wait_puts(2)
        await a.wait_puts(1)
        await silent(a, "!nosuch", alice)
        await b.wait_puts(5)
        await trio.sleep(0.2)  # anything the copies would wrongly set off has happened by now
    assert tools.calls == [("ping", ()), ("ping", ())]
    assert said(b) == ["!ping", "pong", "!nosuch", "!ping", "pong"]
    assert said(a) == ["pong", "pong"]


async def test_sync_aware_commands_run_once_on_the_bridge_plug():
    host = make_host()
    _, alice = people(host)
    a, b = host.plugs["a"], host.plugs["b"]
    rooms = [immp.Channel(a, "room"), immp.Channel(b, "room")]
    bridge = host.add_plug(VirtualPlug("bridge", {}, host, targets=rooms))
    host.add_hook(RelayHook("relay", host, rooms, bridge=bridge))
    tools = host.hooks["tools"]
    async with running(host):
        await a.receive("!whole", user=alice, channel="room")
        await a.wait_puts(1)
        await b.wait_puts(2)  # the relayed "!whole", then the bridge's answer
        await a.receive("!ping", user=alice, channel="room")
        await a.wait_puts(2)
    assert [c[0] for c in tools.calls] == ["whole", "ping"]
    assert said(a) == ["whole from bridge", "pong"]
    assert said(b)[:2] == ["!whole", "whole from bridge"]


async def test_sync_aware_commands_run_on_real_channels_without_a_bridge_plug():
    host = make_host()
    _, alice = people(host)
    async with running(host):
        assert await ask(host.plugs["a"], "!whole", alice) == ["whole from a"]


async def test_answers_are_never_taken_as_commands():
    host = make_host({"return-errors": True})
    _, alice = people(host)
    async with running(host):
        a = host.plugs["a"]
        # The answer starts with the prefix; its echo must not run anything.
        assert await ask(a, "!say !ping", alice) == ["say ('!ping', None)"]
        assert await ask(a, "!raw !ping", alice) == ["!ping"]
        await silent(a, "!nosuch", alice)
    assert [c[0] for c in host.hooks["tools"].calls] == ["say", "raw", "ping"]
