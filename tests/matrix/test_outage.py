"""The homeserver going away and coming back, through a TCP proxy in front of the real Synapse."""

from __future__ import annotations

import logging

import pytest
import trio

import immp
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
            nursery.start_soon(self._pipe, client, upstream)
            nursery.start_soon(self._pipe, upstream, client)

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
