"""
Message IDs are the network's own where the server sends ``msgid`` (a real InspIRCd with its
IRCv3 modules): what the plug receives, and what it sends (the receipt and the echo), so that a
copy map kept across restarts holds IDs that mean something after them. Without msgid (ngircd)
the IDs are the plug's own and unique per run.
"""

from __future__ import annotations

import immp
from tests.ngircd import RawClient, parse_privmsg

from .conftest import irc_host, plug_config
from .inspircd import IRCV3_MODULES, inspircd


def _msgid(line: str) -> str:
    tags = dict(tag.partition("=")[::2] for tag in line.partition(" ")[0][1:].split(";"))
    return tags["msgid"]


async def _tagged_client(port: int, nick: str):
    """A raw client that sees message tags and its own lines echoed (to learn their msgid)."""
    cm = RawClient.connected(port, nick, register=False)
    client = await cm.__aenter__()
    await client.send("CAP REQ :message-tags echo-message")
    await client.expect("CAP", "ACK")
    await client.send("CAP END")
    await client.register()
    return cm, client


async def test_received_and_sent_messages_carry_the_servers_msgid(tmp_path):
    async with inspircd(tmp_path / "inspircd", modules=IRCV3_MODULES) as port:
        cm, alice = await _tagged_client(port, "alice")
        try:
            await alice.join("#test")
            async with irc_host(plug_config(port)) as (host, plug, recorder):
                await alice.expect(":bot!", "JOIN", "#test", timeout=20)
                caps = plug.connection.state.agreed_caps
                assert {"message-tags", "echo-message"} <= set(caps)

                # Received: the ID is the msgid every client of the network sees.
                await alice.privmsg("#test", "from alice")
                echo = await alice.expect(":alice!", "PRIVMSG #test", "from alice")
                sent = await recorder.wait_for(lambda s: str(s.text) == "from alice")
                assert sent.id == _msgid(echo)

                # Sent: the receipt, and the echo hooks see, are the server's msgid too.
                receipts = await host.channels["chan0"].send(immp.Message("from the bridge"))
                line = await alice.expect(":bot!", "PRIVMSG #test", "from the bridge")
                assert parse_privmsg(line)[2] == "from the bridge"
                assert [r.id for r in receipts] == [_msgid(line)]
                own = await recorder.wait_for(lambda s: str(s.text) == "from the bridge")
                assert own.id == _msgid(line)

                # Every line of a multi-line message, each with its own msgid.
                receipts = await host.channels["chan0"].send(immp.Message("one\ntwo"))
                lines = [await alice.expect(":bot!", "PRIVMSG #test", text)
                         for text in ("one", "two")]  # fmt: skip
                assert [r.id for r in receipts] == [_msgid(ln) for ln in lines]
        finally:
            await cm.__aexit__(None, None, None)


async def test_without_msgid_ids_are_the_plugs_own_and_differ_per_run(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        ids = []
        for run in range(2):
            async with irc_host(plug_config(server.port)) as (_, _, recorder):
                await alice.expect(":bot!", "JOIN", "#test", timeout=20)
                await alice.privmsg("#test", f"run {run}")
                sent = await recorder.wait_for(lambda s, run=run: str(s.text) == f"run {run}")
                ids.append(sent.id)
        # Unique across runs (never a reused counter), but nothing on IRC can name them later.
        assert ids[0] != ids[1]
        assert ids[0].split("-")[0] != ids[1].split("-")[0]
