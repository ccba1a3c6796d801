"""Registration, joins and everything the plug receives, against a real ngircd."""

from __future__ import annotations

import contextlib

import pytest

import immp
from tests.ngircd import NgircdServer, RawClient

from .conftest import irc_host, plug_config


async def test_registers_and_joins_configured_channels_of_every_prefix(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        await alice.join("&local")
        await alice.send("MODE #test +k sesame")
        config = plug_config(server.port, **{"channel-keys": {"#test": "sesame"}})
        async with irc_host(config, channels=("#test", "&local", "someone")) as (_, plug, _):
            await alice.expect(":bot!", "JOIN", "#test")
            await alice.expect(":bot!", "JOIN", "&local")
            members = await plug.channel_members(immp.Channel(plug, "#test"))
            assert {user.username for user in members} >= {"alice", "bot"}
            assert await plug.channel_is_private(immp.Channel(plug, "someone"))
            assert not await plug.channel_is_private(immp.Channel(plug, "&local"))
            # alice created the channel, so she is its operator.
            admins = await plug.channel_admins(immp.Channel(plug, "#test"))
            assert [user.username for user in admins] == ["alice"]
            assert admins[0].id == "alice!~alice@127.0.0.1"


async def test_nick_in_use_takes_an_alternative_within_nicklen(server):
    # ngircd's NICKLEN is 9: the alternative must still fit.
    async with RawClient.connected(server.port, "immpbot12") as squatter:
        await squatter.join("#test")
        config = plug_config(server.port, user={"nick": "immpbot12"})
        async with irc_host(config) as (_, plug, _):
            line = await squatter.expect("JOIN", "#test", ":immpbot1_!")
            assert line.startswith(":immpbot1_!")
            assert await plug.user_is_system(await plug.user_from_username("immpbot1_"))


class LongNickServer(NgircdServer):
    """ngircd with a longer NICKLEN (``MaxNickLength``) than its default 9."""

    max_nick_length = 16

    def _write_config(self, *args) -> None:
        super()._write_config(*args)
        text = self.config_path.read_text()
        self.config_path.write_text(text.replace(
            "[Limits]\n", f"[Limits]\nMaxNickLength = {self.max_nick_length}\n", 1))  # fmt: skip


@pytest.mark.parametrize(("nicklen", "nick", "expected"), [
    (16, "immp-bridge", "immp-bridge_"),  # registration comes before NICKLEN: no cut to 9
    (16, "immp-bridge-abcd", "immp-bridge-abc_"),  # refused as too long (432): cut to fit
    (9, "immp-bridge", "immp-bri_"),  # the nick itself too long: the alternative fits
])  # fmt: skip
async def test_alternative_nick_keeps_as_much_as_the_servers_nicklen_allows(
    ngircd_available, tmp_path, nicklen, nick, expected
):
    server_class = LongNickServer if nicklen > 9 else NgircdServer
    async with server_class.running(tmp_path) as server:
        async with contextlib.AsyncExitStack() as stack:
            if len(nick) <= nicklen:  # held by someone else; otherwise the server refuses it
                await stack.enter_async_context(RawClient.connected(server.port, nick))
            alice = await stack.enter_async_context(RawClient.connected(server.port, "alice"))
            await alice.join("#test")
            async with irc_host(plug_config(server.port, user={"nick": nick})) as (_, plug, _):
                line = await alice.expect("JOIN", "#test", f":{expected}!")
                assert line.startswith(f":{expected}!")
                assert plug.connection.state.isupport.nicklen == nicklen
                assert await plug.user_is_system(await plug.user_from_username(expected))


async def test_perform_and_invites(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        await alice.join("#secret")
        await alice.send("MODE #secret +i")
        config = plug_config(server.port, perform=["PRIVMSG alice :performed\r\nQUIT :injected"],
                             **{"accept-invites": True})  # fmt: skip
        async with irc_host(config) as _:
            # The perform line ran, its line break turned into a space (so no QUIT).
            line = await alice.expect(":bot!", "PRIVMSG alice :")
            assert line.endswith("PRIVMSG alice :performed QUIT :injected")
            await alice.expect(":bot!", "JOIN", "#test")
            await alice.send("INVITE bot #secret")
            await alice.expect(":bot!", "JOIN", "#secret")


async def test_messages_actions_notices_and_private_messages(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (_, plug, rec):
            await alice.expect(":bot!", "JOIN", "#test")
            await alice.privmsg(
                "#test",
                "hello \x02bold\x02 \x0304,02red\x03 \x1ditalic\x1d "
                "\x1funder\x1f \x1estrike\x1e \x11mono\x11 \x16rev\x0f end",
            )
            await alice.send("NOTICE #test :a notice")
            await alice.privmsg("#test", "\x01ACTION waves\x01")
            await alice.privmsg("bot", "psst")
            await alice.privmsg("#test", "\x01CLIENTINFO\x01")
            await alice.privmsg("#test", "last")
            await rec.wait_for(lambda s: str(s.text) == "last")

            first = await rec.wait_for(lambda s: str(s.text).startswith("hello"))
            assert str(first.text) == "hello bold red italic under strike mono rev end"
            formats = {seg.text: seg for seg in first.text.normalise()}
            assert formats["bold"].bold and formats["italic"].italic
            assert formats["under"].underline and formats["strike"].strike
            assert formats["mono"].code and not formats[" red "].bold
            assert all(ord(ch) >= 32 for ch in str(first.text))
            assert first.user.id == "alice!~alice@127.0.0.1"
            assert first.user.username == "alice"
            assert first.channel == immp.Channel(plug, "#test")

            await rec.wait_for(lambda s: str(s.text) == "a notice")
            action = await rec.wait_for(lambda s: s.action)
            assert str(action.text) == "waves"
            private = await rec.wait_for(lambda s: str(s.text) == "psst")
            assert private.channel == immp.Channel(plug, "alice")
            assert await private.channel.is_private()
            assert not any("CLIENTINFO" in text for text in rec.texts())


async def test_ctcp_version_and_ping_are_answered(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)):
            await alice.expect(":bot!", "JOIN", "#test")
            await alice.privmsg("bot", "\x01VERSION\x01")
            assert "IMMP" in await alice.expect("NOTICE alice :\x01VERSION ")
            await alice.privmsg("bot", "\x01PING 12345\x01")
            await alice.expect("NOTICE alice :\x01PING 12345\x01")


async def test_joins_parts_kicks_quits_nicks_and_topics(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (_, plug, rec):
            await alice.expect(":bot!", "JOIN", "#test")
            async with RawClient.connected(server.port, "carol") as carol:
                await carol.join("#test")
                joined = await rec.wait_for(lambda s: bool(s.joined))
                assert joined.joined[0].id == "carol!~carol@127.0.0.1"
                await carol.send("NICK caroline")
                renamed = await rec.wait_for(lambda s: "known as caroline" in str(s.text or ""))
                assert renamed.user.id == "carol!~carol@127.0.0.1"
                await carol.send("PART #test :bye")
                left = await rec.wait_for(lambda s: bool(s.left))
                assert left.left[0].id == "caroline!~carol@127.0.0.1"
                await carol.join("#test")
                await alice.send("KICK #test caroline :out")
                kicked = await rec.wait_for(lambda s: bool(s.left) and s.user is not None)
                assert kicked.left[0].username == "caroline"
                assert kicked.user.username == "alice"
                await carol.join("#test")
                await carol.send("QUIT :gone")
                quit_ = await rec.wait_for(lambda s: bool(s.left) and s.raw.command == "QUIT")
                assert quit_.left[0].username == "caroline"
                assert quit_.channel == immp.Channel(plug, "#test")
            await alice.send("TOPIC #test :new topic")
            topic = await rec.wait_for(lambda s: s.title is not None)
            assert topic.title == "new topic"
            assert topic.user.username == "alice"
            assert await plug.channel_title(immp.Channel(plug, "#test")) == "new topic"


async def test_bot_rejoins_after_a_kick(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)):
            await alice.expect(":bot!", "JOIN", "#test")
            await alice.send("KICK #test bot :go away")
            await alice.expect(":bot!", "JOIN", "#test")
