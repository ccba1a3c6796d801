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
