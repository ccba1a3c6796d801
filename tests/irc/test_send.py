"""Everything the plug sends: names, actions, formatting, splitting, injection, echoes."""

from __future__ import annotations

import logging

import trio

import immp
from tests.ngircd import RawClient, parse_privmsg

from .conftest import irc_host, plug_config

DAVE = immp.User(id="d1", username="dave")


async def test_authored_actions_and_ctcp_actions(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            await chan.send(immp.Message("hello there", user=DAVE))
            await chan.send(immp.Message("waves", user=DAVE, action=True))
            await chan.send(immp.Message("dances", action=True))
            await chan.send(immp.Message("plain"))
            texts = [parse_privmsg(line)[2] for line in await alice.collect("PRIVMSG", 4)]
            assert texts == ["<dave> hello there", "* dave waves", "\x01ACTION dances\x01",
                             "plain"]  # fmt: skip


async def test_rich_text_becomes_irc_formatting(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            text = immp.RichText([
                immp.Segment("b", bold=True), immp.Segment(" "),
                immp.Segment("i", italic=True), immp.Segment(" "),
                immp.Segment("u", underline=True), immp.Segment(" "),
                immp.Segment("s", strike=True), immp.Segment(" "),
                immp.Segment("c", code=True), immp.Segment(" "),
                immp.Segment("site", link="https://example.org/"), immp.Segment(" "),
                immp.Segment("https://example.org/", link="https://example.org/"),
            ])  # fmt: skip
            await host.channels["chan0"].send(immp.Message(text))
            line = parse_privmsg(await alice.expect("PRIVMSG"))[2]
            assert line == ("\x02b\x02 \x1di\x1d \x1fu\x1f \x1es\x1e \x11c\x11 "
                            "site (https://example.org/) https://example.org/")  # fmt: skip


async def test_multiline_replies_edits_attachments_and_colours(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        config = plug_config(server.port, **{"colour-nicks": True})
        async with irc_host(config) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            await chan.send(immp.Message("one\ntwo", user=DAVE))
            original = immp.Message("the question was long enough to be cut short here", user=DAVE)
            await chan.send(immp.Message("answer", user=DAVE, reply_to=original))
            await chan.send(immp.Message("fixed", user=DAVE, edited=True))
            await chan.send(
                immp.Message(
                    user=DAVE,
                    attachments=[
                        immp.File("cat.png", immp.FileType.image, "https://example.org/cat.png")
                    ],
                )
            )
            texts = [parse_privmsg(line)[2] for line in await alice.collect("PRIVMSG", 5)]
            name = texts[0].split(" ")[0]
            # The name is coloured, the same colour every time.
            assert name.startswith("<\x03") and name.endswith("dave\x03>")
            assert texts[:2] == [f"{name} one", f"{name} two"]
            assert texts[2].startswith(f'{name} [re dave: "the question was long')
            assert texts[2].endswith('…"] answer')
            assert texts[3] == f"{name} fixed (edited)"
            assert texts[4] == f"{name} [image: cat.png] https://example.org/cat.png"


async def test_lines_of_only_control_characters_are_not_sent(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            assert await chan.send(immp.Message("\x03\x02\x0f\x01")) == []
            assert await chan.send(immp.Message("\x02 \x1d", user=DAVE)) == []
            await chan.send(immp.Message("one\n\x03\x16\ntwo"))
            # Neither an empty line nor a bare "<dave> " went out.
            texts = [parse_privmsg(line)[2] for line in await alice.collect("PRIVMSG", 2)]
            assert texts == ["one", "two"]
            assert not [line for line in await alice.quiet() if " PRIVMSG " in line]


async def test_long_multibyte_message_is_split_within_512_bytes(server):
    words = [("żółw" if n % 3 else "日本語テキスト") + str(n) for n in range(300)]
    original = " ".join(words)
    assert len(original) > 2000
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            await host.channels["chan0"].send(immp.Message(original, user=DAVE))
            await host.channels["chan0"].send(immp.Message("end"))
            lines = []
            while not lines or not lines[-1].endswith(":end"):
                lines.append(await alice.expect("PRIVMSG #test"))
            lines.pop()
            assert len(lines) > 4
            for line in lines:
                # As relayed, with the server's prefix and CR LF: within the limit.
                assert line.startswith(":bot!~bot@127.0.0.1 PRIVMSG #test :")
                assert len(line.encode("utf-8")) + 2 <= 512
            # Lines are filled up to the limit, not cut short.
            assert all(len(line.encode("utf-8")) + 2 > 480 for line in lines[:-1])
            pieces = [parse_privmsg(line)[2] for line in lines]
            assert all(piece.startswith("<dave> ") for piece in pieces)
            # Broken only at spaces: every word arrives whole, in order.
            assert " ".join(piece.removeprefix("<dave> ") for piece in pieces) == original


async def test_no_injection_through_text_names_titles_or_urls(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, rec):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            evil = immp.User(id="e", username="ev\r\nJOIN #evil\r\n")
            await chan.send(immp.Message("hi\rQUIT :a\x00b\r\nPART #test", user=evil))
            await chan.send(immp.Message("\x01VERSION\x01"))
            await chan.send(immp.Message("x\x01ACTION y\x01", action=True))
            await chan.send(immp.Message(title="t\rJOIN #evil2", user=evil))
            await chan.send(
                immp.Message(attachments=[immp.File("f\r\nQUIT", source="http://x/\r\nQUIT :bye")])
            )
            await chan.send(immp.Message("done"))
            lines = []
            while not lines or not lines[-1].endswith(":done"):
                lines.append(await alice.expect(":bot!"))
            commands = {line.split(" ")[1] for line in lines}
            assert commands == {"PRIVMSG"}  # no JOIN, PART or QUIT ever happened
            texts = [parse_privmsg(line)[2] for line in lines]
            assert texts[0] == "<ev JOIN #evil> hi QUIT :ab"
            assert texts[1] == "<ev JOIN #evil> PART #test"
            assert texts[2] == "VERSION"  # not a CTCP request
            assert texts[3] == "\x01ACTION xACTION y\x01"  # one action, no nested CTCP
            assert all("\x00" not in text for text in texts)
            await alice.send("NAMES #test")
            assert "bot" in await alice.expect(" 353 ", "#test")
            assert not [s for s, _, _ in rec.seen if s.raw is not None and s.left]


async def test_sent_messages_are_recognised_as_echoes(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, rec):
            await alice.expect(":bot!", "JOIN", "#test")
            msg = immp.Message("one\ntwo", user=DAVE)
            receipts = await host.channels["chan0"].send(msg)
            assert len(receipts) == 2
            await alice.collect("PRIVMSG", 2)
            await rec.wait_for(lambda s: s.id == receipts[1].id)
            echoes = [(sent, source, primary) for sent, source, primary in rec.seen
                      if sent.id in {r.id for r in receipts}]  # fmt: skip
            assert [sent.id for sent, _, _ in echoes] == [r.id for r in receipts]
            assert all(source is msg for _, source, _ in echoes)
            assert [primary for _, _, primary in echoes] == [True, False]
            assert all(sent.channel == host.channels["chan0"] for sent, _, _ in echoes)


async def test_the_echo_of_an_action_without_author_reads_as_the_action(server):
    # ngircd has no echo-message: the plug shows hooks its own line itself.
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, rec):
            await alice.expect(":bot!", "JOIN", "#test")
            [receipt] = await host.channels["chan0"].send(immp.Message("dances", action=True))
            await alice.expect("PRIVMSG #test")
            echo = await rec.wait_for(lambda s: s.id == receipt.id)
            assert echo.action and str(echo.text) == "dances"


async def test_sending_to_a_new_channel_or_a_nick(server):
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        await alice.join("#other")
        async with irc_host(plug_config(server.port)) as (_, plug, _):
            await alice.expect(":bot!", "JOIN", "#test")
            await immp.Channel(plug, "#other").send(immp.Message("over here"))
            await alice.expect(":bot!", "JOIN", "#other")
            assert (await alice.expect("PRIVMSG #other")).endswith(":over here")
            await immp.Channel(plug, "alice").send(immp.Message("just you"))
            assert (await alice.expect("PRIVMSG alice")).endswith(":just you")


async def test_a_moderated_channel_refusing_every_line_is_said_once_with_a_count(
    server, caplog, monkeypatch
):
    # alice opens #test (ngircd makes her its operator) and moderates it: the bot, not voiced,
    # gets 404 for every line. One warning, then one per REFUSALS_REPEAT with the count.
    monkeypatch.setattr("immp_irc.plug.REFUSALS_REPEAT", 1.0)
    caplog.set_level(logging.WARNING, logger="immp_irc")

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if "Cannot send to" in r.getMessage()]

    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        await alice.send("MODE #test +m")
        await alice.expect("MODE", "+m")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            for n in range(5):
                await chan.send(immp.Message(f"m{n}", user=DAVE))
            with trio.fail_after(10):
                while not refusals():
                    await trio.sleep(0.05)
            await trio.sleep(1.2)  # the other four refused meanwhile, and the repeat is due
            assert [line for line in await alice.quiet(0.1) if "PRIVMSG" in line] == []
            assert refusals() == ["Cannot send to #test: Cannot send to channel"]
            await chan.send(immp.Message("m5", user=DAVE))
            with trio.fail_after(10):
                while len(refusals()) < 2:
                    await trio.sleep(0.05)
            assert refusals()[1] == (
                "Cannot send to #test: Cannot send to channel (4 more lines refused since it "
                "was said)"
            )
