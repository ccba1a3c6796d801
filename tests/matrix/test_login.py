"""
The access token kept across restarts, and queries made before the login: a start on a store
that holds the last password login's token does not log in again (the homeserver rate-limits
logins); a token the homeserver refuses is one INFO line and a password login; a homeserver
away at start keeps the token. A query made while the plug still logs in waits for it.
"""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

import immp
from immp.testing import Recorder, running
from tests.matrix.test_outage import Proxy
from tests.matrix.test_start import bridge, bridged_room, wait_texts

pytestmark = pytest.mark.matrix

LOGIN = b"POST /_matrix/client/v3/login "
TOKEN_KEY = "access-token"  # where the plug keeps it in its store (see the README)


class CountingProxy(Proxy):
    """A :class:`Proxy` that counts the password logins (``POST .../login``) through it."""

    def __init__(self, target: int):
        super().__init__(target)
        self.logins = 0

    async def _upstream(self, client, upstream):
        tail = b""  # shorter than LOGIN: a request line split between two reads counts once
        try:
            while data := await client.receive_some(65536):
                seen = tail + data
                self.logins += seen.count(LOGIN)
                tail = seen[-(len(LOGIN) - 1) :]
                await upstream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def build(synapse, bot, room, proxy, tmp_path, **host_options):
    """A bridge to ``room`` through ``proxy``, on the store in ``tmp_path``, and a recorder."""
    store = immp.SQLiteStore(tmp_path / "bridge.db", namespace="bridge")
    host, demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}",
                              host_options={"store": store, **host_options})  # fmt: skip
    recorder = host.add_hook(Recorder("recorder", None, host))
    return host, demo, plug, recorder


async def first_start(synapse, alice, bot, room, proxy, tmp_path) -> dict:
    """Start and stop once (a password login); what the plug stored of its access token."""
    host, demo, plug, _recorder = build(synapse, bot, room, proxy, tmp_path)
    async with running(host):
        with trio.fail_after(20):
            await plug.synced.wait()
        await demo.receive("first start")
        await wait_texts(alice, room, bot, 1)
        stored = await plug.state.get(TOKEN_KEY) or {}
    assert proxy.logins == 1
    return stored


async def bridges_both_ways(alice, bot, room, demo, recorder, count: int, text: str) -> None:
    await demo.receive(f"to matrix {text}")
    texts = await wait_texts(alice, room, bot, count)
    assert texts[-1].endswith(f"to matrix {text}"), texts
    await alice.send(room, f"from matrix {text}")
    await recorder.wait_for(lambda m: str(m.text) == f"from matrix {text}", timeout=20)


def immp_lines(caplog, level=logging.INFO) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= level and r.name.startswith("immp")
    ]


async def test_a_restart_uses_the_stored_token_without_logging_in(
    synapse, alice, bot, tmp_path, caplog
):
    # The second start on the same store logs in with the token the first one stored: no
    # POST /login reaches the homeserver (before, every start was one, and a crash loop ran
    # into Synapse's login rate limit), and the bridge works both ways.
    room = await bridged_room(alice, bot)
    proxy = CountingProxy(synapse.port)
    with caplog.at_level(logging.DEBUG):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            first = await first_start(synapse, alice, bot, room, proxy, tmp_path)
            host, demo, plug, recorder = build(synapse, bot, room, proxy, tmp_path)
            async with running(host):
                with trio.fail_after(20):
                    await plug.synced.wait()
                assert plug.connected
                await bridges_both_ways(alice, bot, room, demo, recorder, 2, "again")
                again = await plug.state.get(TOKEN_KEY)
            proxy.cut()
    assert proxy.logins == 1
    assert first["user"] == bot.user_id and first["device"] == plug.device_id
    assert again == first
    logins = [line for line in immp_lines(caplog) if line.startswith("Logged in as")]
    assert logins == [
        f"Logged in as {bot.user_id} (device {plug.device_id})",
        f"Logged in as {bot.user_id} (device {plug.device_id}, stored access token)",
    ], logins
    assert first["token"] not in caplog.text
    assert not immp_lines(caplog, logging.WARNING)


async def test_a_revoked_stored_token_falls_back_to_the_password(
    synapse, alice, bot, tmp_path, caplog
):
    # The stored token was logged out (POST /logout with it): the next start says so in one
    # INFO line, logs in with the password, stores the new token and works.
    room = await bridged_room(alice, bot)
    proxy = CountingProxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        token = (await first_start(synapse, alice, bot, room, proxy, tmp_path)).get("token")
        assert token, "no access token in the store"
        async with httpx.AsyncClient(base_url=synapse.url) as http:
            reply = await http.post(
                "/_matrix/client/v3/logout", json={}, headers={"Authorization": f"Bearer {token}"}
            )
            assert reply.status_code == 200, reply.text
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            host, demo, plug, recorder = build(synapse, bot, room, proxy, tmp_path)
            async with running(host):
                with trio.fail_after(20):
                    await plug.synced.wait()
                assert plug.connected
                await bridges_both_ways(alice, bot, room, demo, recorder, 2, "after logout")
                stored = await plug.state.get(TOKEN_KEY)
        proxy.cut()
    assert proxy.logins == 2
    assert stored["token"] != token and stored["user"] == bot.user_id
    refused = [line for line in immp_lines(caplog) if "token" in line.lower()]
    assert len(refused) == 1, refused
    assert refused[0].startswith("Stored access token refused (401 M_UNKNOWN_TOKEN")
    assert refused[0].endswith("): logging in with the password")
    assert f"Logged in as {bot.user_id} (device {plug.device_id})" in immp_lines(caplog)
    assert token not in caplog.text and stored["token"] not in caplog.text
    assert not immp_lines(caplog, logging.WARNING)


async def test_homeserver_down_at_a_restart_keeps_the_stored_token(
    synapse, alice, bot, tmp_path, caplog
):
    # Nothing listens at the second start: the check of the stored token is retried like a
    # login, and once the homeserver is up the token is used, not thrown away for a new login.
    room = await bridged_room(alice, bot)
    proxy = CountingProxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        first = await first_start(synapse, alice, bot, room, proxy, tmp_path)
        proxy.cut()
        host, demo, plug, recorder = build(synapse, bot, room, proxy, tmp_path, open_timeout=2)
        with caplog.at_level(logging.INFO):
            async with running(host, timeout=5):
                assert not plug.connected and "ConnectError" in plug.disconnect_reason
                await trio.sleep(3)
                await nursery.start(proxy.serve)
                with trio.fail_after(20):
                    await plug.synced.wait()
                await bridges_both_ways(alice, bot, room, demo, recorder, 2, "after the outage")
                again = await plug.state.get(TOKEN_KEY)
        proxy.cut()
    assert proxy.logins == 1
    assert again == first and first["token"] not in caplog.text
    assert "Stored access token refused" not in caplog.text
    assert f"(device {plug.device_id}, stored access token)" in caplog.text


async def test_queries_made_before_the_login_answer_once_it_is_done(synapse, alice, bot, caplog):
    # The homeserver is down at start: a hook asking for the room's title, members and a
    # user's name meanwhile waits for the login and gets the right answers once the homeserver
    # is up. Before, the title failed (401 M_MISSING_TOKEN: the request went without a token)
    # and the members were "unknown".
    await alice.call("PUT", f"/profile/{alice.user_id}/displayname", {"displayname": "Alice A"})
    room = await alice.create_room(invite=[bot.user_id], name="The hall")
    await bot.join(room)
    proxy = Proxy(synapse.port)
    host, _demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}",
                               host_options={"open_timeout": 20})  # fmt: skip
    channel = immp.Channel(plug, room)
    answers = {}

    async def ask(name, query, *args):
        try:
            answers[name] = await query(*args)
        except Exception as exc:
            answers[name] = exc

    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            async with running(host, timeout=10):
                assert not plug.connected
                async with trio.open_nursery() as asking:
                    asking.start_soon(ask, "title", channel.title)
                    asking.start_soon(ask, "members", channel.members)
                    asking.start_soon(ask, "user", plug.user_from_id, alice.user_id)
                    asking.start_soon(ask, "private", channel.is_private)
                    asking.start_soon(ask, "rooms", plug.public_channels)
                    await trio.sleep(2)
                    assert not answers, answers  # waiting for the login
                    await nursery.start(proxy.serve)
                    with trio.fail_after(20):
                        while len(answers) < 5:
                            await trio.sleep(0.05)
                connected = plug.connected  # the answers came once logged in
            proxy.cut()
    assert answers["title"] == "The hall", answers
    assert {user.id for user in answers["members"]} == {alice.user_id, bot.user_id}, answers
    assert answers["user"].real_name == "Alice A" and answers["user"].id == alice.user_id
    assert answers["private"] is False and channel in answers["rooms"], answers
    assert connected
    assert not immp_lines(caplog, logging.ERROR)


async def test_queries_give_up_after_the_open_timeout_while_the_homeserver_is_down(
    synapse, alice, bot
):
    # The homeserver never comes up: a query waits for the login at most the host's
    # open-timeout, then answers "cannot tell" (None); a rename fails in one line. Before, each
    # waited (retrying) for as long as the homeserver was down.
    room = await bridged_room(alice, bot)
    proxy = Proxy(synapse.port)
    host, _demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}",
                               host_options={"open_timeout": 2})  # fmt: skip
    channel = immp.Channel(plug, room)
    async with running(host, timeout=5):
        started = trio.current_time()
        with trio.fail_after(4):
            assert await channel.title() is None
        assert trio.current_time() - started >= 1.5
        with trio.fail_after(4):
            assert await channel.members() is None
        with trio.fail_after(4):
            assert await plug.user_from_id(alice.user_id) is None
        with trio.fail_after(4), pytest.raises(immp.PlugError) as failed:
            await plug.channel_rename(channel, "New name")
        assert not plug.connected
    line = str(failed.value)
    assert line.startswith("matrix: not logged in (ConnectError") and "\n" not in line, line
    assert line.endswith(f"{room} not renamed"), line
