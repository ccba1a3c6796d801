"""
Admin commands over IRC (ngircd, no services): the admin is ``nick!user@host``, so whoever takes
the admin's nick after she leaves is refused, and so is a plain user; nothing changes.
"""

from __future__ import annotations

import immp
from immp.testing import running
from tests.irc.conftest import plug_config
from tests.ngircd import RawClient, parse_privmsg

REFUSED = "is for admins only"


def config(port: int, admin_id: str) -> dict:
    return {
        "plugs": {"irc": {"path": "irc", "config": plug_config(port)},
                  "timer": {"path": "demo", "config": {"interval": None}}},
        "channels": {"room": {"plug": "irc", "source": "#room"}},
        "hooks": {"commands": {"path": "commands", "config": {"admins": {"irc": [admin_id]}}}},
    }  # fmt: skip


async def whois(client: RawClient, nick: str) -> str:
    """``nick!user@host`` as the server knows it (RPL_WHOISUSER)."""
    await client.send(f"WHOIS {nick}")
    words = (await client.expect(" 311 ", f" {nick} ")).split(" ")
    return f"{words[3]}!{words[4]}@{words[5]}"


async def leave(client: RawClient) -> None:
    """QUIT and wait until the server closed the connection (so the nick is free again)."""
    await client.send("QUIT :bye")
    await client.quiet(5)  # returns when the server closes the connection


async def command(client: RawClient, text: str) -> list[str]:
    """Type ``text`` in #room; the bot's answers (texts) within a moment."""
    await client.privmsg("#room", text)
    first = parse_privmsg(await client.expect(":bot!", "PRIVMSG #room"))[2]
    rest = [parse_privmsg(ln)[2] for ln in await client.quiet(0.5) if ":bot!" in ln]
    return [first, *rest]


def states(host: immp.Host) -> dict[str, immp.OpenState]:
    return {name: item.open_state for name, item in {**host.plugs, **host.hooks}.items()}


async def test_taking_the_admins_nick_takes_no_admin_rights(server):
    async with RawClient.connected(server.port, "alice") as alice:
        admin_id = await whois(alice, "alice")
        assert admin_id.startswith("alice!") and "alice@" in admin_id  # username "alice"
        await alice.join("#room")
        host = immp.build_host(config(server.port, admin_id))
        async with running(host):
            await alice.expect(":bot!", "JOIN", "#room", timeout=20)
            before = states(host)
            answer = await command(alice, "!plugs")
            assert "Plugs" in answer[0] and REFUSED not in " ".join(answer), answer
            await leave(alice)

            # Someone else takes the nick "alice", with another user name.
            async with RawClient.connected(server.port, "alice", username="mallory") as mallory:
                assert "mallory@" in await whois(mallory, "alice")
                await mallory.join("#room")
                for line in ("!plugs", "!disable timer", "!disable irc"):
                    answer = await command(mallory, line)
                    assert len(answer) == 1 and REFUSED in answer[0], (line, answer)
                assert states(host) == before
                await leave(mallory)

            # A plain user is refused too.
            async with RawClient.connected(server.port, "bob") as bob:
                await bob.join("#room")
                for line in ("!plugs", "!disable timer"):
                    answer = await command(bob, line)
                    assert len(answer) == 1 and REFUSED in answer[0], (line, answer)
                assert states(host) == before

            # The real alice is back (same nick, user and host): still the admin, nothing changed.
            async with RawClient.connected(server.port, "alice") as again:
                assert await whois(again, "alice") == admin_id
                await again.join("#room")
                answer = await command(again, "!plugs")
                assert "Plugs" in answer[0], answer
                listing = " ".join(answer)
                assert "timer" in listing and "disabled" not in listing, answer
            assert states(host) == before
            assert host.plugs["timer"].open_state is immp.OpenState.active
