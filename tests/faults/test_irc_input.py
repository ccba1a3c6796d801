"""
Garbage from the network and from the bridge: property-based tests of the IRC plug's line
handling and formatting, against the real plug (a scripted peer on loopback plays the server).
"""

from __future__ import annotations

import contextlib
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import immp
from immp.testing import running
from immp_irc import IRCPlug
from immp_irc.formatting import from_irc, to_irc
from immp_irc.lines import LINE_LIMIT

from .helpers import catch_logs
from .peer import ScriptedServer

CONTROL = st.sampled_from(["\x00", "\x01", "\x02", "\x03", "\x034,5", "\x04", "\x0f", "\x16",
                           "\x1d", "\x1e", "\x1f", "\x11", "\r", "\n", "\r\n", "\t", "\x7f",
                           "\x01ACTION ", "\x01VERSION\x01"])  # fmt: skip
TEXT = st.lists(st.one_of(st.text(max_size=30), CONTROL), max_size=12).map("".join)
BYTES_TEXT = st.one_of(st.binary(max_size=40), TEXT.map(lambda t: t.encode("utf-8", "replace")))
COMMANDS = st.sampled_from([b"PING", b"PONG", b"PRIVMSG", b"NOTICE", b"JOIN", b"PART", b"KICK",
                            b"QUIT", b"NICK", b"TOPIC", b"INVITE", b"CAP", b"MODE", b"ERROR",
                            b"001", b"005", b"353", b"366", b"433", b"474", b"999", b"000",
                            b"12345", b"AUTHENTICATE", b"\xff\xfe"])  # fmt: skip


@st.composite
def raw_lines(draw) -> bytes:
    """One incoming line: well-formed-ish, pure garbage, or huge."""
    kind = draw(st.sampled_from(["command", "command", "garbage", "huge"]))
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    prefix = draw(st.sampled_from([b"", b":alice!a@h ", b":irc.peer ", b":", b"@tag=x;y :a!b@c "]))
    nick = draw(st.one_of(st.just(b"alice"), BYTES_TEXT, st.just(b"n" * 600)))
    if prefix == b":alice!a@h ":
        prefix = b":" + nick + b"!a@h "
    params = draw(st.lists(BYTES_TEXT, max_size=4))
    trailing = draw(st.one_of(BYTES_TEXT, st.just(b"\x01PING " + b"p" * 600 + b"\x01"),
                              st.just(b"\x01VERSION\x01"), st.just(b"x" * 10_000)))  # fmt: skip
    if kind == "huge":
        trailing = b"\x01PING " + draw(st.binary(min_size=1, max_size=20)) * 500 + b"\x01"
    return prefix + draw(COMMANDS) + b" " + b" ".join([*params, b"#room"]) + b" :" + trailing


def check_outgoing(lines: list[bytes]) -> None:
    for line in lines:
        assert line.endswith(b"\r"), line[:100]  # every line ended by CR LF
        body = line[:-1]
        assert len(body) + 2 <= LINE_LIMIT, (len(body), body[:100])
        assert b"\r" not in body and b"\n" not in body and b"\0" not in body, body[:100]


def plug_config(port: int) -> dict:
    return {"server": {"host": "127.0.0.1", "port": port}, "user": {"nick": "bot"},
            "send-delay": 0, "reconnect-delay": 0.1, "reconnect-max": 0.2,
            "ping-interval": 600}  # fmt: skip


def irc_host(port: int) -> tuple[immp.Host, IRCPlug]:
    host = immp.Host()
    plug = host.add_plug(IRCPlug("irc", plug_config(port), host))
    host.add_channel("room", immp.Channel(plug, "#room"))
    return host, plug


@contextlib.asynccontextmanager
async def plug_in_room():
    """
    A running host whose IRC plug is connected to a scripted server and in ``#room``; yields
    ``(server, host, logs)``, the logs caught from then until the block ends.
    """
    async with ScriptedServer.running() as server:
        host, _plug = irc_host(server.port)
        async with running(host):
            await server.connected()
            await server.wait_for(b"JOIN #room")
            logs, undo = catch_logs()
            try:
                yield server, host, logs
            finally:
                undo()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(raw_lines(), min_size=1, max_size=15))
async def test_the_plug_survives_any_incoming_lines(lines):
    async with plug_in_room() as (server, host, logs):
        await server.send(*(line.replace(b"\n", b" ") for line in lines))
        # The plug read everything once it answers a ping sent after it.
        await server.send(b"PING :after-the-garbage")
        await server.wait_for(b"PONG after-the-garbage")
        # It still works: a message goes out.
        await host.channels["room"].send(immp.Message("still here"))
        await server.wait_for(b"PRIVMSG #room :still here")
    assert "Disconnected" not in logs.text()  # never dropped the connection
    check_outgoing(server.received)


GARBAGE = [
    pytest.param(b"\xff\xfe\xfd not utf-8 at all \xc3\x28", id="invalid-utf8"),
    pytest.param(b":", id="lone-colon"),
    pytest.param(b"@only=tags", id="tags-only"),
    pytest.param(b":prefix.only", id="prefix-only"),
    pytest.param(b":irc.peer 999 bot :an unknown numeric", id="unknown-numeric"),
    pytest.param(b":irc.peer 42 :too few params", id="short-numeric"),
    pytest.param(b"PRIVMSG", id="no-params"),
    pytest.param(b":a!b@c PRIVMSG #room", id="privmsg-without-text"),
    pytest.param(b":a!b@c KICK", id="kick-without-params"),
    pytest.param(b"\x01\x02\x03\x1f\x16\x0f", id="lone-control-codes"),
    pytest.param(b":a!b@c PRIVMSG #room :" + b"y" * 10_000, id="10000-bytes"),
    pytest.param(b"z" * 20_000, id="over-the-incoming-limit"),
    pytest.param(b"\x00\x00\x00", id="nuls"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_a_garbage_line_is_survived_with_at_most_one_log_line(garbage):
    async with plug_in_room() as (server, _host, logs):
        await server.send(garbage)
        await server.send(b"PING :after-the-garbage")
        await server.wait_for(b"PONG after-the-garbage")
    assert "Disconnected" not in logs.text()
    warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 1, logs.lines(logging.WARNING)
    for line in logs.lines(logging.WARNING):
        assert "\n" not in line and len(line) < 600 and "Traceback" not in line
    check_outgoing(server.received)


RICH = st.lists(
    st.builds(immp.Segment, TEXT, bold=st.booleans(), italic=st.booleans(),
              underline=st.booleans(), strike=st.booleans(), code=st.booleans(),
              link=st.one_of(st.none(), TEXT)),
    max_size=6).map(immp.RichText)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    RICH,
    st.one_of(st.none(), TEXT),
    st.booleans(),
    st.one_of(st.none(), TEXT),
    st.sampled_from(["#room", "#a-very-long-channel-name-" + "x" * 150, "somebody"]),
)
def test_any_outgoing_message_makes_clean_lines_within_512_bytes(text, name, action, title,
                                                                 target):  # fmt: skip
    host = immp.Host()
    plug = IRCPlug("irc", plug_config(6667), host)
    user = immp.User(id="u", username=name, real_name=name) if name is not None else None
    attachment = immp.File(title=title, source=title) if title else None
    quoted = immp.Message(title, user=user) if title else None
    msg = immp.Message(text, user=user, action=action, title=title, reply_to=quoted,
                       attachments=[attachment] if attachment else [])  # fmt: skip
    for line, ctcp_action in plug._lines(target, msg):
        wire = f"\x01ACTION {line}\x01" if ctcp_action else line
        full = f":{plug._own_mask()} PRIVMSG {target} :{wire}\r\n".encode()
        assert len(full) <= LINE_LIMIT
        inner = wire.removeprefix("\x01ACTION ").removesuffix("\x01") if ctcp_action else wire
        assert not any(ch in inner for ch in "\r\n\0\x01"), inner


@settings(max_examples=500, deadline=None)
@given(st.one_of(TEXT, st.text(max_size=10_000), st.binary(max_size=300).map(
    lambda b: b.decode("utf-8", "replace"))))  # fmt: skip
def test_formatting_both_ways_never_crashes_nor_leaks_controls(text):
    rich = from_irc(text)
    back = to_irc(rich)
    assert not any(ch in back for ch in "\r\n\0\x01\x03\x04\x16")
    assert str(from_irc(back)) == str(rich).replace("\t", " ").replace("\r", " ").replace(
        "\n", " ")  # fmt: skip
