"""Channels added and removed while running, by the real commands, over two real ngircd."""

from __future__ import annotations

import logging

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
