"""A recording hook and a host of demo plugs, for the demo plug tests."""

from __future__ import annotations

import trio

import immp
from immp_demo import DemoPlug


class Recorder(immp.Hook):
    """Records every message the host delivers as (sent, source); ``wait_for(n)`` waits."""

    def __init__(self, host, name="recorder"):
        super().__init__(name, {}, host)
        self.seen: list[tuple[immp.SentMessage, immp.Message]] = []
        self._changed = trio.Event()

    async def on_receive(self, sent, source, primary):
        self.seen.append((sent, source))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int) -> list[immp.SentMessage]:
        """Wait until ``count`` messages were seen; return every message seen."""
        with trio.fail_after(10):
            while len(self.seen) < count:
                await self._changed.wait()
        return self.messages

    @property
    def messages(self) -> list[immp.SentMessage]:
        return [sent for sent, _ in self.seen]

    @property
    def texts(self) -> list[str]:
        return [str(sent.text) for sent, _ in self.seen]


def demo_host(**config) -> tuple[immp.Host, DemoPlug, Recorder]:
    """A host with one demo plug ``demo`` (timer off unless ``interval`` given) and a recorder."""
    host = immp.Host()
    plug = host.add_plug(DemoPlug("demo", {"interval": None, **config}, host))
    recorder = host.add_hook(Recorder(host))
    return host, plug, recorder
