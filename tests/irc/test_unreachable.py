"""
A bridge between two real ngircd, one stopped and started again: the other side is told once
that the network is unreachable, and once that it is back (the sync hook's notify-unreachable).
"""

from __future__ import annotations

import logging

import trio

import immp
from immp.testing import running
from tests.ngircd import NgircdServer, RawClient, parse_privmsg

from .conftest import plug_config

DOWN = "network net2 is unreachable; messages to it are held"
BACK = "network net2 is back"


def bridge_config(port1: int, port2: int, **sync) -> dict:
    return {
        "plugs": {"net1": {"path": "irc", "config": plug_config(port1)},
                  "net2": {"path": "irc", "config": plug_config(port2)}},
        "channels": {"a": {"plug": "net1", "source": "#main"},
                     "b": {"plug": "net2", "source": "#main"}},
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"main": ["a", "b"]},
                                                      **sync}}},
    }  # fmt: skip


def _bot_texts(lines: list[str]) -> list[str]:
    return [parse_privmsg(ln)[2] for ln in lines if ln.startswith(":bot!") and " PRIVMSG " in ln]


async def _until(check, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


async def test_the_other_side_is_told_once_when_a_network_goes_and_once_when_back(
    ngircd_available, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="immp_irc")
    async with (
        NgircdServer.running(tmp_path / "one") as one,
        NgircdServer.running(tmp_path / "two") as two,
        RawClient.connected(one.port, "alice") as alice,
    ):
        await alice.join("#main")
        host = immp.build_host(bridge_config(one.port, two.port))
        net2 = host.plugs["net2"]
        async with running(host):
            await alice.expect(":bot!", "JOIN", "#main", timeout=20)
            await _until(lambda: net2.connection.ready)
            await two.stop()
            line = await alice.expect(":bot!", "PRIVMSG #main", timeout=20)
            assert parse_privmsg(line)[2] == DOWN
            assert not net2.connected
            # Several failed attempts later (reconnect-max is 2 s here): still only once.
            during = await alice.quiet(5)
            assert _bot_texts(during) == []
            attempts = [r for r in caplog.records if r.name.endswith(".net2")
                        and r.getMessage().startswith("Could not connect")]  # fmt: skip
            assert len(attempts) >= 2
            await alice.privmsg("#main", "said while net2 was away")
            await two.start()
            line = await alice.expect(":bot!", "PRIVMSG #main", timeout=20)
            assert parse_privmsg(line)[2] == BACK
            assert net2.connected
            async with RawClient.connected(two.port, "bob") as bob:
                await bob.join("#main")
                await _until(lambda: net2.connection.state.has_channel("#main"))
                await bob.privmsg("#main", "hello from two")
                await alice.expect(":bot!", "PRIVMSG #main", "<bob> hello from two")
                # The notices are for the other side only: never copied to net2.
                assert not any(DOWN in ln or BACK in ln for ln in bob.lines)
                # And told once: nothing more on net1.
                assert _bot_texts(await alice.quiet(1)) == []


async def test_no_notice_when_notify_unreachable_is_off(ngircd_available, tmp_path):
    async with (
        NgircdServer.running(tmp_path / "one") as one,
        NgircdServer.running(tmp_path / "two") as two,
        RawClient.connected(one.port, "alice") as alice,
    ):
        await alice.join("#main")
        config = bridge_config(one.port, two.port, **{"notify-unreachable": False})
        host = immp.build_host(config)
        net2 = host.plugs["net2"]
        async with running(host):
            await alice.expect(":bot!", "JOIN", "#main", timeout=20)
            await _until(lambda: net2.connection.ready)
            await two.stop()
            await _until(lambda: not net2.connected)
            assert _bot_texts(await alice.quiet(3)) == []
            await two.start()
            await _until(lambda: net2.connected)
            assert _bot_texts(await alice.quiet(2)) == []
