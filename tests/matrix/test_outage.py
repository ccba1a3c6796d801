"""The homeserver going away and coming back, through a TCP proxy in front of the real Synapse."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time

import pytest
import trio
import yaml

import immp
from tests.faults.helpers import ImmpProcess
from tests.matrix.conftest import matrix_host, plug_config
from tests.ngircd import free_port

pytestmark = pytest.mark.matrix


class Proxy:
    """Forwards 127.0.0.1:port to the homeserver until cut; :meth:`cut` drops every link."""

    def __init__(self, target: int):
        self.target = target
        self.port = free_port()
        self.scope: trio.CancelScope | None = None

    async def _pipe(self, source, sink):
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _handle(self, client):
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._upstream, client, upstream)
            nursery.start_soon(self._pipe, upstream, client)

    async def _upstream(self, client, upstream):
        """What the client sends, on to the homeserver (a subclass may look at it)."""
        await self._pipe(client, upstream)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as self.scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                task_status.started()

    def cut(self):
        self.scope.cancel()


async def test_outage_holds_sends_and_loses_nothing(synapse, alice, bot, caplog):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    proxy = Proxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        config = plug_config(
            synapse,
            bot,
            homeserver=f"http://127.0.0.1:{proxy.port}",
            **{"request-timeout": 3, "sync-timeout": 1},
        )
        with caplog.at_level(logging.INFO):
            async with matrix_host(config, [room]) as (_, plug, rec):
                await alice.send(room, "before")
                await rec.wait_for(lambda m: str(m.text) == "before")
                proxy.cut()
                await alice.send(room, "during")
                async with trio.open_nursery() as sending:
                    sending.start_soon(
                        plug.put, immp.Channel(plug, room), immp.Message("sent while down")
                    )
                    with trio.fail_after(20):
                        while plug.connected:
                            await trio.sleep(0.05)
                    assert plug.disconnect_reason
                    await trio.sleep(1)
                    assert "sent while down" not in await alice.texts(room)
                    await nursery.start(proxy.serve)
                await rec.wait_for(lambda m: str(m.text) == "during", timeout=30)
                assert plug.client.reachable and plug.connected
        proxy.cut()
    assert (await alice.texts(room, bot.user_id)) == ["sent while down"]
    assert [str(m.text) for m in rec.seen if m.text] == ["before", "during"]
    assert "Homeserver unreachable" in caplog.text and "reachable again" in caplog.text


async def test_unreachable_at_start_is_said_once(synapse, bot, caplog):
    # Nothing listens on the proxy's port for the first seconds: the login is retried (about
    # ten times at retry-max 0.3), and the log says so once, without the cause repeated.
    proxy = Proxy(synapse.port)
    config = plug_config(
        synapse,
        bot,
        homeserver=f"http://127.0.0.1:{proxy.port}",
        **{"retry-max": 0.3, "request-timeout": 3, "sync-timeout": 1},
    )

    async def serve_later(nursery):
        await trio.sleep(3)
        await nursery.start(proxy.serve)

    with caplog.at_level(logging.DEBUG):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_later, nursery)
            async with matrix_host(config) as (_, plug, _rec):
                assert plug.connected and plug.disconnect_reason is None
            proxy.cut()
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 5 and all(r.levelno == logging.DEBUG for r in retries)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("immp")
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("Homeserver unreachable, retrying: ConnectError: ")
    assert warnings[0].count("ConnectError") == 1, warnings[0]
    assert "Homeserver reachable again" in caplog.text


def test_sigterm_while_the_homeserver_is_unreachable_at_start(tmp_path, immp_exe, clean_env):
    # The real immp process; nothing listens on the homeserver's port, so the login is retried
    # in the background (the plug opened at once). SIGTERM meanwhile stops it at once (the
    # process used to stop only when the open had timed out).
    file = tmp_path / "immp.yaml"
    plug = {"homeserver": f"http://127.0.0.1:{free_port()}", "user": "@bot:localhost",
            "password": "secret", "retry-max": 0.5}  # fmt: skip
    file.write_text(yaml.safe_dump({
        "host": {"open-timeout": 30},
        "plugs": {"matrix": {"path": "matrix", "config": plug}},
        "channels": {"room": {"plug": "matrix", "source": "!room:localhost"}},
        "logging": {"version": 1,
                    "formatters": {"f": {"format": "%(levelname)s %(name)s: %(message)s"}},
                    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "f",
                                         "stream": "ext://sys.stderr"}},
                    "root": {"level": "INFO", "handlers": ["err"]}},
    }))  # fmt: skip
    proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
    try:
        proc.wait_for("Homeserver unreachable, retrying")
        time.sleep(0.5)  # a retry or two in
        proc.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.proc.wait(15)
        took = time.monotonic() - sent
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
        status = proc.finish()
    err = proc.stderr()
    assert status == 0, err[-3000:]
    assert took < 2, (took, err[-3000:])
    assert "Got SIGTERM: shutting down" in err
    assert "Opened plug matrix" in err and "Failed to open" not in err
    assert "timed out" not in err and "Traceback" not in err
    assert err.rstrip().endswith("Stopped"), err[-3000:]


async def test_disconnected_as_soon_as_a_send_fails(synapse, alice, bot):
    # Cutting the proxy breaks the long poll and the send at once: the plug says it is
    # disconnected then (what the sync hook's send-timeout relies on), not after
    # request-timeout (30 s), and connected again as soon as a request goes through.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    proxy = Proxy(synapse.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        config = plug_config(
            synapse,
            bot,
            homeserver=f"http://127.0.0.1:{proxy.port}",
            **{"request-timeout": 30, "sync-timeout": 30, "retry-max": 1},
        )
        changes = []

        class Observer:
            def plug_connection_changed(self, plug, connected, reason):
                changes.append((connected, reason))

        async with matrix_host(config, [room]) as (host, plug, _rec):
            host.add_observer(Observer())
            proxy.cut()
            async with trio.open_nursery() as sending:
                sending.start_soon(plug.put, immp.Channel(plug, room), immp.Message("later"))
                with trio.fail_after(2):
                    while plug.connected:
                        await trio.sleep(0.01)
                assert plug.disconnect_reason and "Error" in plug.disconnect_reason
                await nursery.start(proxy.serve)
                with trio.fail_after(10):
                    while not plug.connected:
                        await trio.sleep(0.05)
        proxy.cut()
    # (Down, maybe told again with another reason while down, then back.)
    ups_and_downs = [c for i, (c, _) in enumerate(changes) if i == 0 or c != changes[i - 1][0]]
    assert ups_and_downs[:2] == [False, True]
    assert "later" in await alice.texts(room, bot.user_id)
