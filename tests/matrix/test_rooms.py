"""Rooms and users on a real Synapse: aliases, invites, queries, login failures."""

from __future__ import annotations

import logging

import pytest
import trio

import immp
from immp.testing import running
from immp_matrix.plug import MatrixPlug
from tests.matrix.conftest import Recorder, matrix_host, plug_config

pytestmark = pytest.mark.matrix


async def test_joins_by_alias_and_channel_under_alias(synapse, alice, bot):
    alias_name = synapse.unique("lobby")
    room = await alice.create_room(alias=alias_name, name="The lobby")
    alias = f"#{alias_name}:localhost"
    async with matrix_host(plug_config(synapse, bot), [alias]) as (_, plug, rec):
        await alice.send(room, "via alias")
        sent = await rec.wait_for(lambda m: str(m.text) == "via alias")
        assert sent.channel == immp.Channel(plug, alias)
        [receipt] = await plug.put(immp.Channel(plug, alias), immp.Message("back"))
        channel = immp.Channel(plug, alias)
        assert await plug.channel_title(channel) == "The lobby"
        assert await plug.channel_link(channel) == f"https://matrix.to/#/{alias}"
        members = {user.id for user in await plug.channel_members(channel)}
        assert members == {alice.user_id, bot.user_id}
        assert channel in await plug.public_channels()
        assert await plug.channel_is_private(channel) is False
    assert await alice.texts(room, bot.user_id) == ["back"]
    assert receipt.channel == immp.Channel(plug, alias)


async def test_auto_join_invites_without_history(synapse, alice, bot):
    async with matrix_host(plug_config(synapse, bot, **{"auto-join": True})) as (_, plug, rec):
        room = await alice.create_room()
        await alice.send(room, "before the invite")
        await alice.call("POST", f"/rooms/{room}/invite", {"user_id": bot.user_id})
        with trio.fail_after(20):
            while room not in await plug.client.joined_rooms():
                await trio.sleep(0.1)
        await alice.send(room, "after the join")
        await rec.wait_for(lambda m: str(m.text) == "after the join")
        assert "before the invite" not in [str(m.text) for m in rec.seen]


async def test_invites_ignored_without_auto_join(synapse, alice, bot):
    async with matrix_host(plug_config(synapse, bot)) as (_, plug, _rec):
        room = await alice.create_room(invite=[bot.user_id])
        marker_room = await alice.create_room(invite=[bot.user_id])
        await bot.join(marker_room)
        await alice.send(marker_room, "marker")
        await _rec.wait_for(lambda m: str(m.text) == "marker")
        assert room not in await plug.client.joined_rooms()


async def test_user_from_id(synapse, alice, bot):
    await alice.call("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "Alice A"})
    await alice.call(
        "PUT", f"/profile/{alice.user_id}/avatar_url", {"avatar_url": "mxc://localhost/face"}
    )
    async with matrix_host(plug_config(synapse, bot)) as (_, plug, _rec):
        user = await plug.user_from_id(alice.user_id)
        assert user.real_name == "Alice A" and user.id == alice.user_id
        assert user.avatar == f"{synapse.url}/_matrix/client/v1/media/download/localhost/face"
        assert user.link == f"https://matrix.to/#/{alice.user_id}"
        assert await plug.user_from_id("@nobody:localhost") is None
        assert await plug.user_is_system(await plug.user_from_id(bot.user_id))


async def test_direct_chat_is_private(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id], public=False, is_direct=True)
    await bot.join(room)
    await bot.call("PUT", f"/user/{bot.user_id}/account_data/m.direct", {alice.user_id: [room]})
    async with matrix_host(plug_config(synapse, bot), [room]) as (_, plug, _rec):
        assert await plug.channel_is_private(immp.Channel(plug, room)) is True


async def test_token_login(synapse, alice, bot):
    config = plug_config(synapse, bot)
    del config["password"]
    config["token"] = bot.token
    room = await alice.create_room(invite=[bot.user_id])
    async with matrix_host(config, [room]) as (_, plug, rec):
        assert plug.device_id
        await alice.send(room, "with a token")
        await rec.wait_for(lambda m: str(m.text) == "with a token")


async def test_bad_password_fails_plug_only(synapse, bot, caplog):
    host = immp.Host()
    plug = host.add_plug(MatrixPlug("matrix", plug_config(synapse, bot, password="wrong!pw"), host))
    host.add_hook(Recorder("recorder", None, host))
    with caplog.at_level(logging.INFO):
        async with running(host):
            with trio.fail_after(20):
                while plug.open_state is not immp.OpenState.failed:
                    await trio.sleep(0.05)
    text = caplog.text
    assert "cannot log in as" in text and "M_FORBIDDEN" in text
    assert "wrong!pw" not in text


def test_exactly_one_secret():
    with pytest.raises(immp.ConfigError, match="exactly one"):
        MatrixPlug("m", {"homeserver": "http://x", "user": "@a:x"}, immp.Host())
    with pytest.raises(immp.ConfigError, match="exactly one"):
        MatrixPlug(
            "m",
            {"homeserver": "http://x", "user": "@a:x", "password": "p", "token": "t"},
            immp.Host(),
        )


async def test_channel_added_joins_and_removed_leaves(synapse, alice, bot):
    room = await alice.create_room(invite=[bot.user_id])
    await alice.send(room, "history before the join")
    async with matrix_host(plug_config(synapse, bot)) as (_, plug, rec):
        channel = immp.Channel(plug, room)
        await plug.on_channel_added(channel)
        assert room in await plug.client.joined_rooms()
        await alice.send(room, "after the join")
        await rec.wait_for(lambda m: str(m.text) == "after the join")
        assert "history before the join" not in [str(m.text) for m in rec.seen]
        await plug.on_channel_removed(channel)
        assert room not in await plug.client.joined_rooms()
