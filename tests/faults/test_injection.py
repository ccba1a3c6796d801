"""
Injection: hostile text, names, titles and link URLs sent from a demo plug across a sync bridge
into IRC on ngircd never make an extra IRC command or a CTCP request (seen by a raw client).
"""

from __future__ import annotations

import immp
from immp.testing import running
from tests.irc.conftest import plug_config
from tests.ngircd import RawClient

NASTY = [
    "a\r\nQUIT :injected",
    "b\nPRIVMSG alice :injected",
    "c\rKICK #bridge alice :injected",
    "d\x00PRIVMSG alice :nul",
    "\x01VERSION\x01",
    "\x01PING 123\x01",
    "\x01ACTION pretends\x01",
    "\x02\x03\x034,5\x0f\x16\x1d\x1f\x1e\x11",
    "e\r\n\x01DCC SEND x 1 2 3\x01",
]


async def test_nothing_injected_reaches_irc_as_a_command_or_ctcp(server):
    config = {
        "plugs": {
            "irc": {"path": "irc", "config": plug_config(server.port)},
            "demo": {"path": "demo", "config": {"interval": None, "channel": "room"}},
        },
        "channels": {"irc-room": {"plug": "irc", "source": "#bridge"},
                     "demo-room": {"plug": "demo", "source": "room"}},
        "hooks": {"sync": {"path": "sync", "config": {
            "channels": {"main": ["irc-room", "demo-room"]}}}},
    }  # fmt: skip
    host = immp.build_host(config)
    demo = host.plugs["demo"]
    async with running(host):
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#bridge")
            await alice.until_in_channel("bot", "#bridge")  # it may have joined first
            sent = 0
            for nasty in NASTY:
                user = immp.User(id=f"u{sent}", username=nasty, real_name=nasty, plug=demo)
                rich = immp.RichText([immp.Segment(nasty), immp.Segment(nasty, link=nasty)])
                await demo.receive(rich, user=user)
                await demo.receive(nasty, user=user, action=True)
                await demo.receive(None, user=user, title=nasty)
                await demo.receive(nasty, user=None, action=True)  # a CTCP ACTION of its own
                await demo.receive(nasty, user=user, attachments=[
                    immp.File(title=nasty, source=nasty)])  # fmt: skip
                sent += 5
            await demo.receive("the end")
            await alice.expect("PRIVMSG #bridge", "the end", timeout=20)
            lines = alice.lines
    for line in lines:
        if line.startswith(":bot!"):
            _, command, rest = line.split(" ", 2)
            assert command in ("PRIVMSG", "JOIN", "MODE"), line
            target, _, text = rest.partition(" :")
            assert target.lstrip(":") == "#bridge", line
            assert "\x00" not in text
            if "\x01" in text:  # only a whole CTCP ACTION, with no marker inside
                assert text.startswith("\x01ACTION ") and text.endswith("\x01"), line
                assert "\x01" not in text[1:-1], line
    # Nobody was kicked, nobody got a private message, the bot never quit.
    commands = [(ln.split(" ")[1:3]) for ln in lines if ln.startswith(":")]
    assert not any(cmd in ("KICK", "QUIT") for cmd, *_ in commands)
    assert not any(cmd in ("PRIVMSG", "NOTICE") and rest == ["alice"] for cmd, *rest in commands)
