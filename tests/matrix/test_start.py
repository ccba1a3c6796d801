"""
The homeserver away, hanging or refusing at the moment the plug starts, and the plug restarted
while it sends: open() neither fails nor waits for the homeserver (only a refused login fails
it); sends made meanwhile wait for the login and then arrive in order; a put cut off by a
restart is a PlugError of one line, and the host sends it again once the plug is back.
"""

from __future__ import annotations

import logging

import pytest
import trio

import immp
from immp.testing import running
from immp_demo.plug import DemoPlug
from immp_matrix.plug import MatrixPlug
from immp_sync import SyncHook
from tests.matrix.conftest import plug_config
from tests.matrix.test_outage import Proxy

pytestmark = pytest.mark.matrix


class Hanging(Proxy):
    """Accepts connections on ``port`` and never answers, until :meth:`stop`."""

    def __init__(self, port: int):
        super().__init__(target=0)
        self.port = port

    async def _handle(self, client):
        async with client:
            await trio.sleep_forever()

    def stop(self):
        self.cut()


def bridge(synapse, bot, room: str, homeserver: str, *, host_options=None, **changes):
    """A host bridging a demo channel ``hall`` and the Matrix ``room`` with the sync hook."""
    host = immp.Host(**(host_options or {}))
    demo = host.add_plug(DemoPlug("demo", {"interval": None, "channel": "hall"}, host))
    host.add_channel("hall", immp.Channel(demo, "hall"))
    config = plug_config(synapse, bot, homeserver=homeserver,
                         **{"retry-max": 0.5, "request-timeout": 2, "sync-timeout": 1,
                            **changes})  # fmt: skip
    plug = host.add_plug(MatrixPlug("matrix", config, host))
    host.add_channel("room", immp.Channel(plug, room))
    host.add_hook(SyncHook("sync", {"channels": {"b": ["hall", "room"]}, "send-timeout": 2},
                           host))  # fmt: skip
    return host, demo, plug


async def bridged_room(alice, bot) -> str:
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    return room


async def wait_texts(alice, room, bot, count: int, timeout: float = 60) -> list[str]:
    with trio.fail_after(timeout):
        while len(await alice.texts(room, bot.user_id)) < count:
            await trio.sleep(0.2)
    await trio.sleep(1)  # nothing more (a duplicate) comes after
    return await alice.texts(room, bot.user_id)


async def settled(alice, room, bot, quiet: float = 2.0, timeout: float = 60) -> list[str]:
    """The room's texts from the bot once no more came for ``quiet`` seconds."""
    with trio.fail_after(timeout):
        texts = await alice.texts(room, bot.user_id)
        while True:
            await trio.sleep(quiet)
            now = await alice.texts(room, bot.user_id)
            if now == texts:
                return now
            texts = now


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_homeserver_down_at_start_sends_wait_for_it_in_order(synapse, alice, bot, caplog):
    # Nothing listens where the homeserver should be for twice the open-timeout: the plug opens
    # all the same, says it is disconnected and why, and the copies made meanwhile (more than
    # send-timeout ago) go out once it is up, in order. Before, the open timed out and the plug
    # failed: every copy "plug matrix is failed: not sent", and nothing came back by itself.
    room = await bridged_room(alice, bot)
    proxy = Proxy(synapse.port)
    host, demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}",
                              host_options={"open_timeout": 2})  # fmt: skip
    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            async with running(host, timeout=5):
                assert plug.open_state is immp.OpenState.active
                stats = host.stats()["plugs"]["matrix"]
                assert stats["connected"] is False
                assert "ConnectError" in plug.disconnect_reason
                for n in range(5):
                    await demo.receive(f"early {n}")
                await trio.sleep(4)  # twice the open-timeout, twice the send-timeout
                assert not plug.connected and plug.open_state is immp.OpenState.active
                await nursery.start(proxy.serve)
                texts = await wait_texts(alice, room, bot, 5)
                assert plug.connected and host.stats()["plugs"]["matrix"]["connected"]
                await demo.receive("later")
                texts = await wait_texts(alice, room, bot, 6)
            proxy.cut()
    wanted = [*(f"early {n}" for n in range(5)), "later"]
    assert len(texts) == 6 and all(t.endswith(w) for t, w in zip(texts, wanted, strict=True)), texts
    assert "Failed to open" not in caplog.text and "not sent" not in caplog.text
    assert "timed out" not in caplog.text and not errors(caplog)
    assert "Homeserver unreachable, retrying: ConnectError" in caplog.text
    assert "Connected: logged in and synced" in caplog.text


async def test_homeserver_hanging_at_start_does_not_hold_up_the_open(synapse, alice, bot, caplog):
    # The homeserver accepts connections and never answers: open() returns within OPEN_WAIT (or
    # half the open-timeout), the plug says it is disconnected, and the login goes on in the
    # background until the homeserver answers.
    room = await bridged_room(alice, bot)
    proxy = Proxy(synapse.port)
    hanging = Hanging(proxy.port)
    host, demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}",
                              host_options={"open_timeout": 3})  # fmt: skip
    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            await nursery.start(hanging.serve)
            started = trio.current_time()
            async with running(host, timeout=5):
                assert trio.current_time() - started < 2.5
                assert plug.open_state is immp.OpenState.active
                assert not plug.connected and plug.disconnect_reason
                await demo.receive("while hanging")
                await trio.sleep(4)  # past the open-timeout and a request-timeout
                assert not plug.connected
                hanging.stop()
                await nursery.start(proxy.serve)
                texts = await wait_texts(alice, room, bot, 1)
                assert plug.connected
            proxy.cut()
    assert len(texts) == 1 and texts[0].endswith("while hanging"), texts
    assert "Failed to open" not in caplog.text and not errors(caplog)


async def test_wrong_password_still_fails_the_open_at_once_in_one_line(synapse, bot, caplog):
    room = "!nowhere:localhost"
    host, _demo, plug = bridge(synapse, bot, room, synapse.url, password="wrong")
    started = trio.current_time()
    with caplog.at_level(logging.DEBUG):
        async with running(host, timeout=10):
            took = trio.current_time() - started
            assert plug.open_state is immp.OpenState.failed
    assert took < 3, took
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    line = failed[0].getMessage()
    assert line.startswith("Failed to open plug matrix: ") and "403 M_FORBIDDEN" in line, line
    assert "\n" not in line and failed[0].exc_info is None and "wrong" not in line


async def test_wrong_password_once_the_homeserver_is_up_fails_in_one_line(synapse, bot, caplog):
    # The homeserver comes up only after the open-timeout, and refuses the password: the plug
    # fails then, with the refusal (before, the open timed out, and said nothing of it).
    proxy = Proxy(synapse.port)
    host, _demo, plug = bridge(synapse, bot, "!nowhere:localhost",
                               f"http://127.0.0.1:{proxy.port}", password="wrong",
                               host_options={"open_timeout": 2})  # fmt: skip
    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            async with running(host, timeout=5):
                await trio.sleep(3)
                assert plug.open_state is immp.OpenState.active and not plug.connected
                await nursery.start(proxy.serve)
                with trio.fail_after(10):
                    while plug.open_state is not immp.OpenState.failed:
                        await trio.sleep(0.05)
            proxy.cut()
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    line = failed[0].getMessage()
    assert line.startswith("Failed to run plug matrix: ") and "403 M_FORBIDDEN" in line, line
    assert "timed out" not in caplog.text and "wrong" not in line


N = 30


async def _burst_with_a_restart(host, demo, plug) -> None:
    """Once synced, post ``burst 0`` to ``burst {N - 1}``; restart the plug a third of the way."""
    with trio.fail_after(20):
        await plug.synced.wait()
    for n in range(N):
        await demo.receive(f"burst {n}")
        if n == N // 3:
            await trio.sleep(0.3)  # copies under way, waiting out the rate limit
            assert await host.restart("matrix")


async def test_restart_during_a_burst_loses_nothing_with_the_journal(
    synapse, alice, bot, tmp_path, caplog
):
    # The bot is rate-limited (10/s): the burst's sends wait out 429s when the plug restarts
    # (!restart matrix). A send under way is let finish or cut off as a PlugError, never a
    # RuntimeError ("the client has been closed") with a traceback; what was not delivered
    # stays in the journal, and the next start delivers it: every message once.
    room = await bridged_room(alice, bot)

    def build():
        store = immp.SQLiteStore(tmp_path / "bridge.db", namespace="bridge")
        options = {"store": store, "journal": True, "close_timeout": 5}
        return bridge(synapse, bot, room, synapse.url, host_options=options)

    host, demo, plug = build()
    with caplog.at_level(logging.INFO):
        async with running(host):
            await _burst_with_a_restart(host, demo, plug)
            await settled(alice, room, bot)
        first = await alice.texts(room, bot.user_id)
        again, _demo, plug = build()
        async with running(again):
            texts = await wait_texts(alice, room, bot, N)
    traced = [r.getMessage() for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]
    assert not traced, traced
    assert "RuntimeError" not in caplog.text and "Traceback" not in caplog.text
    bodies = [t.rsplit(" ", 1)[-1] for t in texts if "burst" in t]
    assert sorted(bodies, key=int) == [str(n) for n in range(N)], (first, texts)
    assert len(bodies) == N


async def test_restart_during_a_burst_sends_everything_in_order_on_the_new_login(
    synapse, alice, bot, caplog
):
    # The same restart without the journal: the copies made while the plug closes and logs in
    # again wait for it, and a send its close cut off is sent again in its place: every message
    # once and in order, in this run, and no send failed.
    room = await bridged_room(alice, bot)
    host, demo, plug = bridge(synapse, bot, room, synapse.url,
                              host_options={"close_timeout": 1})  # fmt: skip
    with caplog.at_level(logging.INFO):
        async with running(host):
            await _burst_with_a_restart(host, demo, plug)
            texts = await wait_texts(alice, room, bot, N)
    assert [t.rsplit(" ", 1)[-1] for t in texts] == [str(n) for n in range(N)], texts
    assert "failed" not in caplog.text.lower() and not errors(caplog), errors(caplog)


async def test_sends_made_before_the_login_leave_in_order_and_are_cancellable(synapse, alice, bot):
    # Concurrent puts while the homeserver is down at start: each waits for the login, they
    # leave in the order they came, and one cancelled meanwhile is never sent.
    room = await bridged_room(alice, bot)
    proxy = Proxy(synapse.port)
    host, _demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}")
    channel = immp.Channel(plug, room)
    async with trio.open_nursery() as nursery:
        async with running(host, timeout=5):
            assert not plug.connected
            async with trio.open_nursery() as sending:
                for n in range(6):
                    sending.start_soon(plug.put, channel, immp.Message(f"put {n}"))
                    await trio.sleep(0.01)  # the order they come in
                    if n == 2:
                        with trio.move_on_after(0.2):
                            await plug.put(channel, immp.Message("given up"))
                await trio.sleep(1)
                assert not await alice.texts(room, bot.user_id)
                await nursery.start(proxy.serve)
            texts = await wait_texts(alice, room, bot, 6)
        proxy.cut()
    assert texts == [f"put {n}" for n in range(6)], texts


async def test_a_restart_cuts_off_a_send_waiting_for_the_homeserver(synapse, alice, bot, caplog):
    # The homeserver goes away with a send under way; the plug restarts meanwhile. Closing does
    # not wait close-timeout for a homeserver that is away: the send ends at once as a
    # PlugError that says so (never "the client has been closed"), and the plug comes back.
    room = await bridged_room(alice, bot)
    proxy = Proxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        host, _demo, plug = bridge(synapse, bot, room, f"http://127.0.0.1:{proxy.port}")
        channel = immp.Channel(plug, room)
        async with running(host):
            with trio.fail_after(20):
                await plug.synced.wait()
            proxy.cut()
            failures = []

            async def send():
                try:
                    await plug.put(channel, immp.Message("cut off"))
                except immp.PlugError as exc:
                    failures.append(str(exc))

            async with trio.open_nursery() as sending:
                sending.start_soon(send)
                with trio.fail_after(10):
                    while plug.connected:
                        await trio.sleep(0.05)
                started = trio.current_time()
                with caplog.at_level(logging.INFO):
                    restarting = trio.Event()

                    async def restart():
                        await host.restart("matrix")
                        restarting.set()

                    sending.start_soon(restart)
                    with trio.fail_after(5):
                        while not failures:
                            await trio.sleep(0.05)
                    took = trio.current_time() - started
                    await nursery.start(proxy.serve)
                    with trio.fail_after(20):
                        await restarting.wait()
                        while not plug.connected:
                            await trio.sleep(0.05)
            await plug.put(channel, immp.Message("after"))
        proxy.cut()
    assert took < 2, took
    assert failures == [f"matrix: closed before the send to {room} was done"], failures
    assert "Closing plug matrix timed out" not in caplog.text
    assert "RuntimeError" not in caplog.text and "Traceback" not in caplog.text
    assert "after" in await alice.texts(room, bot.user_id)


async def test_a_send_the_room_refuses_for_good_is_not_sent_again_at_the_next_start(
    synapse, alice, bot, tmp_path, caplog
):
    # The room's power levels let only its creator post: the homeserver answers the bot's send
    # with 403 M_FORBIDDEN. Under the journal that copy is given up (refused), not kept for the
    # next start, where it would only be refused again.
    room = await bridged_room(alice, bot)
    levels = await alice.call("GET", f"/rooms/{room}/state/m.room.power_levels")
    await alice.state(room, "m.room.power_levels", {**levels, "events_default": 50})

    def build():
        store = immp.SQLiteStore(tmp_path / "bridge.db", namespace="bridge")
        return bridge(synapse, bot, room, synapse.url,
                      host_options={"store": store, "journal": True})  # fmt: skip

    host, demo, plug = build()
    with caplog.at_level(logging.INFO):
        async with running(host):
            with trio.fail_after(20):
                await plug.synced.wait()
            await demo.receive("not allowed")
            with trio.fail_after(20):
                while not host.journal.stats()["refused"]:
                    await trio.sleep(0.1)
        assert host.journal.summary() == "every journaled message was delivered"
        refusals = [r.getMessage() for r in caplog.records if "M_FORBIDDEN" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].startswith(
            "Sending to room failed: SendRefused: "
        ), refusals
        caplog.clear()
        again, _demo, plug = build()
        async with running(again):
            with trio.fail_after(20):
                await plug.synced.wait()
            await trio.sleep(1)
    assert again.journal.stats()["replayed"] == 0
    assert not [r for r in caplog.records if "M_FORBIDDEN" in r.getMessage()]
    assert await alice.texts(room, bot.user_id) == []
