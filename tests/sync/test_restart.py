"""Copies to a plug that restarts while messages stream wait for it: none lost, none reordered."""

from __future__ import annotations

import logging

import pytest
import trio

import immp
from immp.testing import running
from immp_demo.plug import DemoPlug
from immp_sync import SyncHook

from .helpers import make_host, settle, texts


async def _stream(plug: DemoPlug, count: int, gap: float) -> None:
    """Post ``message 0`` to ``message {count - 1}`` on ``plug``, ``gap`` seconds apart."""
    for i in range(count):
        await plug.receive(f"message {i}")
        await trio.sleep(gap)


class SlowOpenPlug(DemoPlug):
    """A demo network that takes a moment to connect, as a real one does."""

    async def open(self):
        await trio.sleep(0.2)
        await super().open()


class SlowClosePlug(SlowOpenPlug):
    """A network that takes a moment to disconnect, and sends nothing once it started to."""

    closing = False

    async def open(self):
        self.closing = False
        await super().open()

    async def close(self):
        self.closing = True
        await trio.sleep(0.2)
        await super().close()

    async def put(self, channel, msg):
        if self.closing:
            raise immp.PlugError("b: disconnecting")
        return await super().put(channel, msg)


@pytest.mark.parametrize("cls", [SlowOpenPlug, SlowClosePlug], ids=["slow-open", "slow-close"])
async def test_copies_wait_for_a_plug_restarting_and_keep_their_order(caplog, cls):
    # `!restart b` while messages stream: the copies for b wait for its new connection.
    host = make_host("a", "b", classes={"b": cls})
    host.add_hook(SyncHook("sync", {"channels": {"main": ["#a", "#b"]}}, host))
    caplog.set_level(logging.INFO)
    async with running(host):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stream, host.plugs["a"], 40, 0.01)
            await trio.sleep(0.1)
            assert await host.restart("b")
        await host.plugs["b"].wait_puts(40)
        await settle()
    assert texts(host.plugs["b"]) == [f"message {i}" for i in range(40)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_messages_received_while_the_sync_hook_restarts_are_bridged_in_order():
    # `!restart sync`: what arrives while the hook is closed and opens again waits for it.
    host = make_host("a", "b")
    host.add_hook(SyncHook("sync", {"channels": {"main": ["#a", "#b"]}}, host))
    async with running(host):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stream, host.plugs["a"], 60, 0.002)
            for _ in range(3):
                await trio.sleep(0.03)
                assert await host.restart("sync")
        with trio.move_on_after(3):
            await host.plugs["b"].wait_puts(60)
        await settle()
    assert texts(host.plugs["b"]) == [f"message {i}" for i in range(60)]
