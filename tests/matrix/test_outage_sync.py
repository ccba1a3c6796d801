"""A bridge to Matrix across an outage longer than the sync hook's send-timeout."""

from __future__ import annotations

import logging

import pytest
import trio

import immp
from immp_demo.plug import DemoPlug
from immp_sync import SyncHook
from tests.matrix.conftest import matrix_host, plug_config
from tests.matrix.test_outage import Proxy

pytestmark = pytest.mark.matrix


async def test_copies_wait_out_an_outage_longer_than_send_timeout_in_order(synapse, alice, bot,
                                                                          caplog):  # fmt: skip
    # The homeserver is away for 3x send-timeout. The copy in flight waits for it (the plug says
    # it is disconnected), and so do the ones after it: all arrive once and in order, none is
    # cut off ("timed out", then lost or, journaled, sent after the later ones at a restart).
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    proxy = Proxy(synapse.port)
    host = immp.Host()
    demo = host.add_plug(DemoPlug("demo", {"interval": None, "channel": "hall"}, host))
    host.add_channel("hall", immp.Channel(demo, "hall"))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        config = plug_config(synapse, bot, homeserver=f"http://127.0.0.1:{proxy.port}",
                             **{"request-timeout": 3, "sync-timeout": 1})  # fmt: skip
        with caplog.at_level(logging.INFO):
            async with matrix_host(config, [room], host) as (_, plug, _rec):
                sync = SyncHook("sync", {"channels": {"b": ["hall", "room0"]},
                                         "send-timeout": 2}, host)  # fmt: skip
                host.add_hook(sync)
                with trio.fail_after(10):
                    while sync.open_state is not immp.OpenState.active:
                        await trio.sleep(0.05)
                await demo.receive("before")
                with trio.fail_after(20):
                    while not await alice.texts(room, bot.user_id):
                        await trio.sleep(0.1)
                proxy.cut()
                for n in range(5):
                    await demo.receive(f"down {n}")
                with trio.fail_after(20):
                    while plug.connected:
                        await trio.sleep(0.05)
                await trio.sleep(6)  # three send-timeouts
                await nursery.start(proxy.serve)
                with trio.fail_after(60):
                    while len(await alice.texts(room, bot.user_id)) < 6:
                        await trio.sleep(0.2)
                await trio.sleep(1)
                texts = await alice.texts(room, bot.user_id)
        proxy.cut()
    wanted = ["before", *(f"down {n}" for n in range(5))]
    assert len(texts) == 6 and all(t.endswith(w) for t, w in zip(texts, wanted, strict=True)), texts
    assert "timed out" not in caplog.text
