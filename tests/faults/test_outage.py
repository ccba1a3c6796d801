"""An IRC server killed and restarted while a sync bridge carries messages both ways."""

from __future__ import annotations

import trio

import immp
from immp.testing import running
from tests.irc.conftest import plug_config
from tests.ngircd import RawClient, parse_privmsg

from .helpers import catch_logs, demo_texts

ALICE = "alice"


def bridge_config(port: int) -> dict:
    return {
        "plugs": {
            "irc": {"path": "irc", "config": plug_config(port, **{
                "send-delay": 0.01, "reconnect-delay": 5, "reconnect-max": 5})},
            "demo": {"path": "demo", "config": {"interval": None, "channel": "room",
                                                "echo": True}},
        },
        "channels": {
            "irc-room": {"plug": "irc", "source": "#bridge"},
            "demo-room": {"plug": "demo", "source": "room"},
        },
        "hooks": {"sync": {"path": "sync", "config": {
            "channels": {"main": ["irc-room", "demo-room"]}, "send-timeout": 30}}},
    }  # fmt: skip


def texts_from_demo(lines: list[str]) -> list[str]:
    """The demo side's messages as relayed to IRC (``<demo> text``), text only."""
    out = []
    for line in lines:
        text = parse_privmsg(line)[2]
        if text.startswith("<"):
            out.append(text.partition("> ")[2])
    return out


async def test_outage_loses_nothing_and_duplicates_nothing_sent_meanwhile(server):
    host = immp.build_host(bridge_config(server.port))
    demo, irc = host.plugs["demo"], host.plugs["irc"]
    async with running(host):
        async with RawClient.connected(server.port, ALICE) as alice:
            await alice.join("#bridge")
            await alice.until_in_channel("bot", "#bridge")  # it may have joined first
            # Before: both directions, interleaved.
            for n in range(10):
                await alice.privmsg("#bridge", f"irc-before-{n}")
                await demo.receive(f"demo-before-{n}")
            seen = texts_from_demo(await alice.collect("PRIVMSG", 10))
            assert seen == [f"demo-before-{n}" for n in range(10)]
            with trio.fail_after(10):
                while len([t for t in demo_texts(demo) if t.startswith("irc-before")]) < 10:
                    await trio.sleep(0.02)
        # The outage: the server is gone (killed, as in a crash); the demo side keeps talking
        # and the bot fails to reconnect. The server comes back just after a failed attempt, so
        # that alice (who must see the backlog) is in the channel before the bot's next one
        # (at least 2.5 s later: a loaded machine took more than 1.5 s to restart
        # the server and join alice, and the bot then joined first).
        logs, undo = catch_logs()
        try:
            await server.stop(kill=True)
            for n in range(40):
                await demo.receive(f"outage-{n}")
                if n % 10 == 0:
                    await trio.sleep(0.05)
            with trio.fail_after(15):
                while "refused" not in logs.text():
                    await trio.sleep(0.02)
        finally:
            undo()
        assert not irc.connection.ready
        await server.start()
        async with RawClient.connected(server.port, ALICE) as alice:
            await alice.join("#bridge")
            await alice.expect(":bot!", "JOIN", "#bridge", timeout=20)
            # After: the IRC side talks while the backlog is still being flushed.
            for n in range(10):
                await alice.privmsg("#bridge", f"irc-after-{n}")
            relayed: list[str] = []
            with trio.fail_after(30):
                while "outage-39" not in relayed:
                    line = await alice.expect("PRIVMSG #bridge", timeout=30)
                    relayed += texts_from_demo([line])
            relayed += texts_from_demo([ln for ln in await alice.quiet(0.5) if "PRIVMSG" in ln])
            with trio.fail_after(10):
                while len([t for t in demo_texts(demo) if t.startswith("irc-after")]) < 10:
                    await trio.sleep(0.02)
        assert irc.connection.registrations == 2
    outage = [t for t in relayed if t.startswith("outage-")]
    assert outage == [f"outage-{n}" for n in range(40)]  # all, in order, exactly once
    from_irc = [t for t in demo_texts(demo) if t.startswith("irc-")]
    assert from_irc == [f"irc-before-{n}" for n in range(10)] + [
        f"irc-after-{n}" for n in range(10)
    ]
