"""Building hosts of demo plugs bridged by sync and forward hooks, for the sync tests."""

from __future__ import annotations

import trio
import trio.testing

import immp
from immp_demo.plug import DemoPlug


class NoEditPlug(DemoPlug):
    """A demo network that can neither edit nor delete."""

    can_edit = False
    can_delete = False

    async def edit(self, receipt, msg):
        raise immp.PlugError("cannot edit")

    async def delete(self, receipt):
        raise immp.PlugError("cannot delete")


class BrokenPlug(DemoPlug):
    """
    A demo network whose sends fail (``mode = "raise"``, with ``reason``), never return
    (``"hang"``) or work (``"ok"``).
    """

    mode = "raise"
    reason = "the network is down"

    async def put(self, channel, msg):
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "ok":
            return await super().put(channel, msg)
        raise immp.PlugError(self.reason)


def make_host(*plugs: str, cls=DemoPlug, classes=None, **more_channels) -> immp.Host:
    """
    A host with one demo plug per name (no timer) and a channel ``#name`` on each plug
    (source ``room``); ``classes`` picks another plug class by name. Extra channels:
    ``name=(plug, source)``.
    """
    host = immp.Host()
    for name in plugs:
        plug_cls = (classes or {}).get(name, cls)
        plug = host.add_plug(
            plug_cls(name, {"interval": None, "channel": "room", "history": 5000}, host)
        )
        host.add_channel(f"#{name}", immp.Channel(plug, "room"))
    for name, (plug, source) in more_channels.items():
        host.add_channel(name, immp.Channel(host.plugs[plug], source))
    return host


def texts(plug: DemoPlug, channel: str = "room") -> list[str]:
    """The text of every message sent to ``plug`` in ``channel``, in order."""
    return [str(msg.text) for ch, msg in plug.puts if ch.source == channel and msg.text is not None]


async def settle() -> None:
    """Wait until every task is blocked: whatever was going to be sent has been."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
