"""Channels added and removed while running, by the real commands, over two real ngircd."""

from __future__ import annotations

import logging

import pytest
import trio

import immp
from immp.testing import running
from tests.faults.helpers import catch_logs
from tests.ngircd import NgircdServer, RawClient, parse_privmsg

from .conftest import irc_host, plug_config


def bridge_config(port1: int, port2: int, admin: str) -> dict:
    return {
        "plugs": {"net1": {"path": "irc", "config": plug_config(port1)},
                  "net2": {"path": "irc", "config": plug_config(port2)}},
        "channels": {"a": {"plug": "net1", "source": "#main"},
                     "b": {"plug": "net2", "source": "#main"}},
        "hooks": {"commands": {"path": "commands", "config": {"admins": {"net1": [admin]}}},
                  "sync": {"path": "sync", "config": {"channels": {"main": ["a", "b"]}}}},
    }  # fmt: skip


async def _command(alice: RawClient, text: str, answer: str) -> None:
    await alice.privmsg("#main", text)
    line = await alice.expect(":bot!", "PRIVMSG #main", answer, timeout=20)
    assert "admins only" not in line


async def test_a_channel_added_by_command_is_joined_and_bridged_and_parted_when_removed(
    ngircd_available, tmp_path
):
    catcher, undo = catch_logs()
    try:
        async with (
            NgircdServer.running(tmp_path / "one") as one,
            NgircdServer.running(tmp_path / "two") as two,
            RawClient.connected(one.port, "alice") as alice,
            RawClient.connected(two.port, "bob") as bob,
        ):
            await alice.send("WHOIS alice")
            words = (await alice.expect(" 311 ", " alice ")).split(" ")
            admin = f"{words[3]}!{words[4]}@{words[5]}"
            await alice.join("#main")
            await bob.join("#extra")
            host = immp.build_host(bridge_config(one.port, two.port, admin))
            async with running(host):
                await alice.expect(":bot!", "JOIN", "#main", timeout=20)
                await _command(alice, "!channel-add extra net2 #extra", "extra")
                # Joined at once, not at the next restart.
                await bob.expect(":bot!", "JOIN", "#extra", timeout=20)
                await _command(alice, "!sync-add main extra", "extra")
                await alice.privmsg("#main", "hello extra")
                line = await bob.expect(":bot!", "PRIVMSG #extra", "hello extra", timeout=20)
                assert parse_privmsg(line)[2] == "<alice> hello extra"
                # And the other way.
                await bob.privmsg("#extra", "hello main")
                await alice.expect(":bot!", "PRIVMSG #main", "<bob> hello main", timeout=20)
                await _command(alice, "!sync-remove main extra", "extra")
                await _command(alice, "!channel-remove extra", "extra")
                await bob.expect(":bot!", "PART", "#extra", timeout=20)
                assert "extra" not in host.channels
    finally:
        undo()
    problems = [r.getMessage() for r in catcher.records if r.levelno >= logging.WARNING
                and r.name.startswith("immp_irc")]  # fmt: skip
    assert not any("401" in p or "Cannot send" in p for p in problems), problems


async def test_a_channel_added_while_disconnected_is_joined_on_registration(server):
    async with irc_host(plug_config(server.port), channels=("#test",)) as (host, plug, _):
        with trio.fail_after(20):
            while not plug.connection.state.has_channel("#test"):
                await trio.sleep(0.02)
        await server.stop()
        with trio.fail_after(20):
            while plug.connection.ready:
                await trio.sleep(0.02)
        host.add_channel("late", immp.Channel(plug, "#late"))
        await server.start()
        with trio.fail_after(30):
            while not plug.connection.state.has_channel("#late"):
                await trio.sleep(0.02)
        assert plug.connection.state.has_channel("#test")


async def test_a_prefix_this_server_does_not_take_is_a_warning_once(server, caplog):
    # ngircd's CHANTYPES are "#&+": "!safe" would be a channel elsewhere, a nick here.
    caplog.set_level(logging.WARNING, logger="immp_irc")
    async with irc_host(plug_config(server.port), channels=("#test", "!safe")) as (_, plug, _):
        with trio.fail_after(20):
            while not plug.connection.state.has_channel("#test"):
                await trio.sleep(0.02)
        assert "!" not in (plug.connection.state.isupport.chantypes or [])
        assert await plug.channel_is_private(immp.Channel(plug, "!safe"))
    warnings = [r.getMessage() for r in caplog.records if "is not a channel" in r.getMessage()]
    assert warnings == ["Channel chan1: '!safe' is not a channel on this server (its prefixes "
                        "are #&+), so it is a private chat with the nick '!safe'"]  # fmt: skip


REFUSED = ("channels.{name}.source: '#e1,0' is not an IRC channel name or nick (it has a comma; "
           "no commas, spaces or control characters); not joining it")  # fmt: skip


def _joined(plug) -> list[str]:
    return sorted(channel.name for channel in plug.connection.state.channels.values())


async def test_a_channel_added_by_command_with_a_comma_in_its_source_is_refused(
    ngircd_available, tmp_path
):
    # "JOIN #e1,0" would join #e1, and then "0": part every channel (ngircd does that). The
    # command checks the source as the config file's channels are checked: nothing is added.
    async with (
        NgircdServer.running(tmp_path / "one") as one,
        NgircdServer.running(tmp_path / "two") as two,
        RawClient.connected(one.port, "alice") as alice,
        RawClient.connected(two.port, "bob") as bob,
    ):
        await alice.send("WHOIS alice")
        words = (await alice.expect(" 311 ", " alice ")).split(" ")
        admin = f"{words[3]}!{words[4]}@{words[5]}"
        await alice.join("#main")
        await bob.join("#e1")
        host = immp.build_host(bridge_config(one.port, two.port, admin))
        net2 = host.plugs["net2"]
        async with running(host):
            await alice.expect(":bot!", "JOIN", "#main", timeout=20)
            with trio.fail_after(20):
                while _joined(net2) != ["#main"]:
                    await trio.sleep(0.02)
            await _command(alice, "!channel-add evil net2 #e1,0",
                           "Not added: channels.evil.source: ")  # fmt: skip
            assert not any(" JOIN " in line for line in await bob.quiet(1))
            assert _joined(net2) == ["#main"]  # still there: nothing was parted
            assert "evil" not in host.channels


async def test_a_named_source_that_is_no_irc_name_is_never_joined_nor_sent_to(server, caplog):
    caplog.set_level(logging.WARNING, logger="immp_irc")
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#e1")
        channels = ("#test", "#e1,0", "friend")  # a nick (a private chat) stays legal
        async with irc_host(plug_config(server.port), channels=channels) as (host, plug, _):
            with trio.fail_after(20):
                while not plug.connection.state.has_channel("#test"):
                    await trio.sleep(0.02)
            assert not any(" JOIN " in line for line in await alice.quiet(1))
            assert _joined(plug) == ["#test"]
            with pytest.raises(immp.PlugError, match=r"'#e1,0' is not an IRC channel or nick "
                               r"\(it has a comma\)"):  # fmt: skip
                await plug.put(host.channels["chan1"], immp.Message("to two channels"))
            assert await plug.channel_is_private(host.channels["chan2"])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [REFUSED.format(name="chan1")]
