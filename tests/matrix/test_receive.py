"""Receiving from a real Synapse: text, HTML, replies, edits, redactions, members, titles, media."""

from __future__ import annotations

import pytest

import immp
from tests.matrix.conftest import matrix_host, plug_config

pytestmark = pytest.mark.matrix


async def test_text_notice_emote(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id], name="Lobby")
    await bot.join(room)
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, rec):
        await alice.send(room, "hello")
        await alice.send(room, {"msgtype": "m.notice", "body": "a notice"})
        await alice.send(room, {"msgtype": "m.emote", "body": "waves"})
        hello = await rec.wait_for(lambda m: str(m.text) == "hello")
        assert hello.user.id == alice.user_id
        assert hello.channel == immp.Channel(plug, room)
        assert not hello.action
        await rec.wait_for(lambda m: str(m.text) == "a notice")
        emote = await rec.wait_for(lambda m: str(m.text) == "waves")
        assert emote.action


async def test_first_start_does_not_replay_history(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    await alice.send(room, "old news")
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, _plug, rec):
        await alice.send(room, "fresh")
        await rec.wait_for(lambda m: str(m.text) == "fresh")
        assert "old news" not in [str(m.text) for m in rec.seen]


async def test_html_to_rich_text(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    html = (
        "<strong>bold</strong> <em>it</em> <u>under</u> <del>gone</del> <code>x=1</code> "
        f'<a href="https://example.org/">site</a> <a href="https://matrix.to/#/{bot.user_id}">'
        "Bot</a><pre><code>line1\nline2</code></pre>"
    )
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, rec):
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": "plain version",
                "format": "org.matrix.custom.html",
                "formatted_body": html,
            },
        )
        sent = await rec.wait_for(lambda m: m.text and "bold" in str(m.text))
    segs = {seg.text: seg for seg in sent.text}
    assert segs["bold"].bold and segs["it"].italic and segs["under"].underline
    assert segs["gone"].strike and segs["x=1"].code
    assert segs["site"].link == "https://example.org/"
    assert segs["Bot"].mention is not None and segs["Bot"].mention.id == bot.user_id
    assert segs["Bot"].mention.plug is plug
    assert segs["line1\nline2"].pre


async def test_reply_fallback_stripped_and_mapped(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, rec):
        first = await alice.send(room, "question?")
        await rec.wait_for(lambda m: m.id == first)
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": f"> <{alice.user_id}> question?\n\nanswer!",
                "format": "org.matrix.custom.html",
                "formatted_body": f'<mx-reply><blockquote><a href="x">In reply to</a> '
                f"{alice.user_id}<br>question?</blockquote></mx-reply>answer!",
                "m.relates_to": {"m.in_reply_to": {"event_id": first}},
            },
        )
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": f"> <{alice.user_id}> question?\n\nplain answer",
                "m.relates_to": {"m.in_reply_to": {"event_id": first}},
            },
        )
        html_reply = await rec.wait_for(lambda m: str(m.text) == "answer!")
        plain_reply = await rec.wait_for(lambda m: str(m.text) == "plain answer")
    for reply in (html_reply, plain_reply):
        assert isinstance(reply.reply_to, immp.SentMessage)
        assert reply.reply_to.id == first and reply.reply_to.channel == immp.Channel(plug, room)
        assert str(reply.reply_to.text) == "question?"


async def test_edit_and_redaction(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, _plug, rec):
        original = await alice.send(room, "teh typo")
        await rec.wait_for(lambda m: m.id == original)
        await alice.send(
            room,
            {
                "msgtype": "m.text",
                "body": "* the typo",
                "m.new_content": {"msgtype": "m.text", "body": "the typo"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        edit = await rec.wait_for(lambda m: m.edited)
        assert edit.id == original and str(edit.text) == "the typo" and edit.revision > 0
        await alice.redact(room, original)
        gone = await rec.wait_for(lambda m: m.deleted)
        assert gone.id == original


async def test_members_names_and_title(synapse, alice, bob, bot):
    room = await alice.create_room(invite=[bot.user_id, bob.user_id])
    await bot.join(room)
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, rec):
        await bob.join(room)
        joined = await rec.wait_for(lambda m: m.joined)
        assert joined.joined[0].id == bob.user_id
        await bob.state(
            room, "m.room.member", {"membership": "join", "displayname": "Bobby"}, key=bob.user_id
        )
        renamed = await rec.wait_for(lambda m: m.text and "known as" in str(m.text))
        assert str(renamed.text) == "is now known as Bobby" and renamed.action
        await bob.send(room, "hi as Bobby")
        hi = await rec.wait_for(lambda m: str(m.text) == "hi as Bobby")
        assert hi.user.real_name == "Bobby"
        await alice.state(room, "m.room.name", {"name": "New title"})
        titled = await rec.wait_for(lambda m: m.title is not None)
        assert titled.title == "New title"
        assert await plug.channel_title(immp.Channel(plug, room)) == "New title"
        await bob.call("POST", f"/rooms/{room}/leave", {})
        left = await rec.wait_for(lambda m: m.left)
        assert left.left[0].id == bob.user_id and left.left[0].real_name == "Bobby"


async def test_media_becomes_attachment_fetchable_with_auth(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    upload = await alice.http.post(
        "/_matrix/media/v3/upload",
        content=png,
        params={"filename": "cat.png"},
        headers={"Content-Type": "image/png"},
    )
    mxc = upload.json()["content_uri"]
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, rec):
        await alice.send(room, {"msgtype": "m.image", "body": "cat.png", "url": mxc})
        sent = await rec.wait_for(lambda m: m.attachments)
        data, mime = await plug.client.download(mxc, 1 << 20)
    [file] = sent.attachments
    assert file.type is immp.FileType.image and file.title == "cat.png"
    assert "/_matrix/client/v1/media/download/" in file.source
    assert data == png and mime == "image/png"


async def test_media_url_for_other_networks(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    config = plug_config(synapse, bot, **{"media-url": "https://media.example.org/m/"})
    async with matrix_host(config, [room]) as (_, _plug, rec):
        await alice.send(
            room, {"msgtype": "m.file", "body": "notes.txt", "url": "mxc://localhost/AbC123"}
        )
        sent = await rec.wait_for(lambda m: m.attachments)
    [file] = sent.attachments
    assert file.source == "https://media.example.org/m/localhost/AbC123"
    assert file.type is immp.FileType.unknown and file.title == "notes.txt"


async def test_limited_timeline_is_filled(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    store = immp.MemoryStore()
    config = plug_config(synapse, bot, **{"timeline-limit": 3})
    async with matrix_host(config, [room], host=immp.Host(store=store)) as (_, _plug, rec):
        await alice.send(room, "before the gap")
        await rec.wait_for(lambda m: str(m.text) == "before the gap")
    # While the plug is off, more than a timeline's worth arrives.
    for index in range(12):
        await alice.send(room, f"gap {index}")
    async with matrix_host(config, [room], host=immp.Host(store=store)) as (_, _plug, rec):
        await rec.wait_for(lambda m: str(m.text) == "gap 11")
        texts = [str(m.text) for m in rec.seen if m.text]
    assert texts == [f"gap {index}" for index in range(12)]


async def test_restart_resumes_without_loss_or_replay(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    store = immp.MemoryStore()
    config = plug_config(synapse, bot)
    async with matrix_host(config, [room], host=immp.Host(store=store)) as (_, plug, rec):
        await alice.send(room, "one")
        await rec.wait_for(lambda m: str(m.text) == "one")
        device = plug.device_id
    await alice.send(room, "two (while down)")
    async with matrix_host(config, [room], host=immp.Host(store=store)) as (_, plug, rec):
        await alice.send(room, "three")
        await rec.wait_for(lambda m: str(m.text) == "three")
        assert plug.device_id == device
        assert [str(m.text) for m in rec.seen if m.text] == ["two (while down)", "three"]


async def test_encrypted_room_logged_once(synapse, alice, bot, caplog):
    room = await alice.create_room(
        invite=[bot.user_id],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    await bot.join(room)
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, _plug, rec):
        for _ in range(2):
            await alice.send(
                room,
                {
                    "algorithm": "m.megolm.v1.aes-sha2",
                    "ciphertext": "xx",
                    "sender_key": "k",
                    "session_id": "s",
                    "device_id": "D",
                },
                type="m.room.encrypted",
            )
        await alice.send(room, {"msgtype": "m.text", "body": "clear"})
        await rec.wait_for(lambda m: str(m.text) == "clear")
    lines = [r for r in caplog.records if "encrypted" in r.getMessage()]
    assert len(lines) == 1 and room in lines[0].getMessage()
