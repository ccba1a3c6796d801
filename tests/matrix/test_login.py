"""
The access token kept across restarts, and queries made before the login: a start on a store
that holds the last password login's token does not log in again (the homeserver rate-limits
logins); a token the homeserver refuses is one INFO line and a password login; a homeserver
away at start keeps the token. A token refused while the plug runs is one WARNING line and a
password login, and the bridge goes on where it was; without a password, the plug fails in one
line. A query made while the plug still logs in waits for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging

import httpx
import pytest
import trio

import immp
import immp_matrix.plug
from immp.testing import Recorder, running
from immp_matrix.api import Client
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


@contextlib.asynccontextmanager
async def serving(synapse):
    """A :class:`CountingProxy` to Synapse, serving, and the nursery it serves in (to serve
    again after a cut); cut at the end."""
    proxy = CountingProxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy, nursery
        proxy.cut()


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


async def next_start(synapse, alice, bot, room, proxy, tmp_path, text: str):
    """Start again after :func:`first_start`, check that it bridges both ways; the plug and the
    access token it stored."""
    host, demo, plug, recorder = build(synapse, bot, room, proxy, tmp_path)
    async with running(host):
        with trio.fail_after(20):
            await plug.synced.wait()
        assert plug.connected
        await bridges_both_ways(alice, bot, room, demo, recorder, 2, text)
        stored = await plug.state.get(TOKEN_KEY)
    return plug, stored


async def log_out(synapse, token: str) -> None:
    """Revoke ``token`` (``POST /logout`` with it; its device goes with it), as an admin would."""
    async with httpx.AsyncClient(base_url=synapse.url) as http:
        reply = await http.post(
            "/_matrix/client/v3/logout", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 200, reply.text


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
    with caplog.at_level(logging.DEBUG):
        async with serving(synapse) as (proxy, _):
            first = await first_start(synapse, alice, bot, room, proxy, tmp_path)
            plug, again = await next_start(synapse, alice, bot, room, proxy, tmp_path, "again")
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
    async with serving(synapse) as (proxy, _):
        token = (await first_start(synapse, alice, bot, room, proxy, tmp_path)).get("token")
        assert token, "no access token in the store"
        await log_out(synapse, token)
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            plug, stored = await next_start(synapse, alice, bot, room, proxy, tmp_path,
                                            "after logout")  # fmt: skip
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
    async with serving(synapse) as (proxy, nursery):
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


async def test_a_token_revoked_while_running_is_replaced_and_nothing_is_lost(
    synapse, alice, bot, tmp_path, caplog
):
    # An admin logs the bot's device out while the bridge runs: the next sync or send is
    # answered 401 M_UNKNOWN_TOKEN. The plug logs in again with the password (one WARNING
    # line, one more /login), stores the new token, and goes on: the sync from its `since` (what
    # alice posted meanwhile comes through) and the refused send in its place, once. Before,
    # the 401 failed the plug: "Failed to run plug matrix: MatrixError: GET .../sync: 401".
    room = await bridged_room(alice, bot)
    async with serving(synapse) as (proxy, _):
        host, demo, plug, recorder = build(synapse, bot, room, proxy, tmp_path)
        with caplog.at_level(logging.DEBUG):
            async with running(host):
                with trio.fail_after(20):
                    await plug.synced.wait()
                await bridges_both_ways(alice, bot, room, demo, recorder, 1, "before")
                old = (await plug.state.get(TOKEN_KEY))["token"]
                assert plug.client.token == old
                caplog.clear()
                await log_out(synapse, old)
                # The sync or the send first (a race): either is refused, and goes again.
                await alice.send(room, "from matrix 1")
                await demo.receive("to matrix 1")
                await demo.receive("to matrix 2")
                await alice.send(room, "from matrix 2")
                texts = await wait_texts(alice, room, bot, 3)
                await recorder.wait_for(lambda m: str(m.text) == "from matrix 2", timeout=20)
                await trio.sleep(1)  # nothing more (a duplicate) comes after
                assert plug.connected and plug.open_state is immp.OpenState.active
                stored = await plug.state.get(TOKEN_KEY)
                await bridges_both_ways(alice, bot, room, demo, recorder, 4, "after")
    assert [t.rsplit(" ", 3)[-3:] for t in texts] == [
        ["to", "matrix", "before"],
        ["to", "matrix", "1"],
        ["to", "matrix", "2"],
    ], texts
    hall = immp.Channel(demo, "hall")
    from_matrix = [str(msg.text) for channel, msg in demo.puts if channel == hall]
    assert from_matrix == [
        "from matrix before",
        "from matrix 1",
        "from matrix 2",
        "from matrix after",
    ], from_matrix
    assert proxy.logins == 2
    assert stored["token"] not in (None, old) and stored["device"] == plug.device_id
    assert plug.client.token == stored["token"]
    warnings = immp_lines(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Access token refused (401 M_UNKNOWN_TOKEN"), warnings
    assert warnings[0].endswith(f"): logged in again with the password (device {plug.device_id})")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert old not in caplog.text and stored["token"] not in caplog.text


async def test_a_token_config_revoked_while_running_fails_the_plug_in_one_line(
    synapse, alice, bot, caplog
):
    # The config gives a `token` and no password: once the homeserver refuses it, there is
    # nothing to log in with. The plug fails (the host and /health show it) with one line that
    # says what to do, no traceback. Before, the line was the sync's bare MatrixError.
    room = await bridged_room(alice, bot)
    async with httpx.AsyncClient(base_url=synapse.url) as http:
        body = {"type": "m.login.password", "password": bot.password,
                "identifier": {"type": "m.id.user", "user": bot.user_id}}  # fmt: skip
        reply = await http.post("/_matrix/client/v3/login", json=body)
        assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    host, demo, plug = bridge(synapse, bot, room, synapse.url, password=None, token=token)
    with caplog.at_level(logging.INFO):
        async with running(host):
            with trio.fail_after(20):
                await plug.synced.wait()
            await demo.receive("before")
            await wait_texts(alice, room, bot, 1)
            await log_out(synapse, token)
            with trio.fail_after(20):
                while plug.open_state is not immp.OpenState.failed:
                    await trio.sleep(0.05)
            state = host.stats()["plugs"]["matrix"]["state"]
    assert state == "failed"
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        "Failed to run plug matrix: PlugError: matrix: the access token was refused "
        "(401 M_UNKNOWN_TOKEN): set a new `token` or a `password`"
    ], [r.getMessage() for r in failed]
    assert not [r for r in caplog.records if r.exc_info]
    assert token not in caplog.text


class FakeHomeserver:
    """
    Just enough of a homeserver for the plug to log in, sync and send, in memory
    (``httpx.MockTransport``), for what a real one does at a moment no test can choose: the
    token is checked as a request comes, and a ``/sync`` with a ``since`` then waits out its
    ``timeout`` (a long poll). The first ``good_logins`` logins' tokens work (until revoked),
    later ones are refused at once.
    """

    user = "@bot:hs.test"

    def __init__(self, good_logins: int = 2):
        self.good_logins = good_logins
        self.password = "secret"  # what a login must give
        self.tokens: set[str] = set()  # the valid ones
        self.logins = 0
        self.login_tokens: list[str] = []  # the token each login came with ("": none)
        self.polls = 0  # long polls under way
        self.sends: list[tuple[str, str]] = []  # (path, token) of each send, answered or not
        self.events = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if "/send/" in path:
            self.sends.append((path, token))
        if path.endswith("/login"):
            self.login_tokens.append(token)
            if json.loads(request.content)["password"] != self.password:
                refusal = {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}
                return httpx.Response(403, json=refusal)
            self.logins += 1
            token = f"token-{self.logins}"
            if self.logins <= self.good_logins:
                self.tokens.add(token)
            answer = {"access_token": token, "device_id": "DEV", "user_id": self.user}
            return httpx.Response(200, json=answer)
        if token not in self.tokens:
            refusal = {"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token", "soft_logout": True}
            return httpx.Response(401, json=refusal)
        if path.endswith("/account/whoami"):
            return httpx.Response(200, json={"user_id": self.user, "device_id": "DEV"})
        if path.endswith("/filter"):
            return httpx.Response(200, json={"filter_id": "1"})
        if path.endswith("/sync"):
            if request.url.params.get("since"):
                self.polls += 1
                try:
                    await trio.sleep(int(request.url.params["timeout"]) / 1000)
                finally:
                    self.polls -= 1
            return httpx.Response(200, json={"next_batch": "s1"})
        if "/send/" in path:
            self.events += 1
            return httpx.Response(200, json={"event_id": f"$event{self.events}"})
        return httpx.Response(404, json={"errcode": "M_UNRECOGNIZED"})


@pytest.fixture
def fake(monkeypatch) -> FakeHomeserver:
    """A :class:`FakeHomeserver` that the Matrix plugs started in the test talk to."""
    server = FakeHomeserver()
    transport = httpx.MockTransport(server.handle)
    monkeypatch.setattr(immp_matrix.plug, "Client", functools.partial(Client, transport=transport))
    return server


async def long_polling(fake: FakeHomeserver, plug) -> None:
    """Wait until the plug has synced once and is long-polling the next sync."""
    with trio.fail_after(5):
        await plug.synced.wait()
        while not fake.polls:
            await trio.sleep(0.01)


def fake_host(fake: FakeHomeserver, **changes):
    host = immp.Host()
    config = {"homeserver": "http://hs.test", "user": fake.user, "password": "secret",
              "sync-timeout": 30, "retry-max": 0.5, "request-timeout": 2, **changes}  # fmt: skip
    plug = host.add_plug(immp_matrix.plug.MatrixPlug("matrix", config, host))
    return host, plug


async def test_a_send_refused_for_its_token_goes_again_once_with_the_new_one(fake, caplog):
    # The token is revoked while a sync long-polls with it: the sends are the first requests
    # refused. Two at once, to two rooms: one login, and each send made once more, with the
    # same transaction ID (the same path) and the new token, so each lands once.
    host, plug = fake_host(fake)
    rooms = [immp.Channel(plug, "!one:hs.test"), immp.Channel(plug, "!two:hs.test")]
    receipts = {}

    async def put(channel):
        receipts[channel.source] = await plug.put(channel, immp.Message("hello"))

    with caplog.at_level(logging.INFO):
        async with running(host):
            await long_polling(fake, plug)
            fake.tokens.clear()  # token-1 logged out
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    for channel in rooms:
                        nursery.start_soon(put, channel)
            assert fake.polls == 1  # the sync still waits: it made no request since
            stored = await plug.state.get(TOKEN_KEY)
            assert plug.open_state is immp.OpenState.active
    assert fake.logins == 2 and fake.login_tokens == ["", ""]  # never the refused token
    assert stored["token"] == plug.client.token == "token-2" and stored["device"] == "DEV"
    for channel in rooms:
        sends = [(path, token) for path, token in fake.sends if f"/{channel.source}/" in path]
        assert [token for _path, token in sends] == ["token-1", "token-2"], fake.sends
        assert sends[0][0] == sends[1][0], sends  # the same transaction ID
        assert len(receipts[channel.source]) == 1
    assert fake.events == 2
    warnings = immp_lines(caplog, logging.WARNING)
    assert warnings == [
        "Access token refused (401 M_UNKNOWN_TOKEN, soft logout): logged in again with the "
        "password (device DEV)"
    ], warnings
    assert "token-" not in caplog.text


async def test_a_new_login_whose_token_is_refused_at_once_fails_the_plug(fake, caplog):
    # The homeserver refuses the token of the login that replaced a refused one too: the plug
    # fails in one line rather than log in over and over.
    fake.good_logins = 1
    host, plug = fake_host(fake, **{"sync-timeout": 0.1})
    with caplog.at_level(logging.INFO):
        async with running(host):
            with trio.fail_after(5):
                await plug.synced.wait()
            fake.tokens.clear()
            with trio.fail_after(5):
                while plug.open_state is not immp.OpenState.failed:
                    await trio.sleep(0.01)
            await trio.sleep(0.5)
    assert fake.logins == 2
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == [
        "Failed to run plug matrix: PlugError: matrix: the access token of a new login was "
        "refused at once (401 M_UNKNOWN_TOKEN, soft logout)"
    ], failed
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_send_refused_for_a_token_config_fails_the_send_and_the_plug(fake, caplog):
    # No password to log in with: the send refused says why, and the plug fails at once (not
    # when the sync long-polling meanwhile comes back), in one line.
    fake.tokens.add("config-token")
    host, plug = fake_host(fake, password=None, token="config-token")
    with caplog.at_level(logging.INFO):
        async with running(host):
            await long_polling(fake, plug)
            fake.tokens.clear()
            with trio.fail_after(5), pytest.raises(immp.PlugError) as refused:
                await plug.put(immp.Channel(plug, "!one:hs.test"), immp.Message("hello"))
            with trio.fail_after(1):
                while plug.open_state is not immp.OpenState.failed:
                    await trio.sleep(0.01)
    line = (
        "matrix: the access token was refused (401 M_UNKNOWN_TOKEN, soft logout): set a new "
        "`token` or a `password`"
    )
    assert str(refused.value) == line
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == [f"Failed to run plug matrix: PlugError: {line}"], failed
    assert not [r for r in caplog.records if r.exc_info] and fake.logins == 0
    assert "config-token" not in caplog.text


async def test_a_refused_login_after_a_refused_token_fails_the_plug(fake, caplog):
    # The password was changed (and the other devices logged out): the login that would
    # replace the refused token is refused too. One line says both.
    host, plug = fake_host(fake, **{"sync-timeout": 0.1})
    with caplog.at_level(logging.INFO):
        async with running(host):
            with trio.fail_after(5):
                await plug.synced.wait()
            fake.tokens.clear()
            fake.password = "changed"
            with trio.fail_after(5):
                while plug.open_state is not immp.OpenState.failed:
                    await trio.sleep(0.01)
    assert fake.logins == 1 and len(fake.login_tokens) == 2
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == [
        "Failed to run plug matrix: PlugError: matrix: the access token was refused "
        "(401 M_UNKNOWN_TOKEN, soft logout), and logging in again too: 403 M_FORBIDDEN Invalid "
        "username or password"
    ], failed
    assert not [r for r in caplog.records if r.exc_info] and "secret" not in caplog.text
