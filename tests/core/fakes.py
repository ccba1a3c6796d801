"""Small plugs and hooks written for the core tests."""

from __future__ import annotations

import itertools

import trio

import immp
from immp.testing import Recorder


class FakePlug(immp.Plug):
    """A plug whose 'network' is a list: put() records, echoes optionally, can fail or hang."""

    network_name = "Fake"
    schema = {
        immp.Optional("echo", False): bool,
        immp.Optional("fail-open", False): bool,
        immp.Optional("hang-open", False): bool,
        immp.Optional("split", 1): int,
    }

    def __init__(self, name, config=None, host=None):
        super().__init__(name, config, host)
        self.sent: list[tuple[immp.Channel, immp.Message]] = []
        self.ids = itertools.count(1)
        self.events: list[str] = []
        self.hang_put = False
        self.fail_put = False

    async def open(self):
        self.events.append("open")
        if self.config["fail-open"]:
            raise ConnectionError("network unreachable")
        if self.config["hang-open"]:
            await trio.sleep_forever()

    async def close(self):
        self.events.append("close")

    async def inject(self, text, source="room", user=None, **kw) -> immp.SentMessage:
        sent = immp.SentMessage(
            f"in{next(self.ids)}",
            immp.Channel(self, source),
            text=text,
            user=user or immp.User("u1", self, username="user"),
            **kw,
        )
        await self.queue(sent)
        return sent

    async def put(self, channel, msg):
        if self.hang_put:
            await trio.sleep_forever()
        if self.fail_put:
            raise ConnectionError("send failed")
        self.sent.append((channel, msg))
        receipts = []
        for _part in range(self.config["split"]):
            sent = immp.SentMessage(f"out{next(self.ids)}", channel, text=msg.text, user=msg.user)
            if self.config["echo"]:
                await self.queue(sent)
            receipts.append(sent.receipt)
        return receipts

    async def channel_is_private(self, channel):
        return channel.source.startswith("@")


class RecordingHook(Recorder):
    """
    :class:`immp.testing.Recorder` that also logs each message as ``(hook name, text, is echo,
    primary)`` into :attr:`log`, a list that several hooks may share (to see in which order
    they ran), after sleeping ``delay`` seconds (a slow hook).
    """

    def __init__(self, name, config=None, host=None, priority=None, log=None, delay=0.0):
        super().__init__(name, config, host, priority=priority)
        self.log: list = log if log is not None else []
        self.delay = delay

    async def on_receive(self, sent, source, primary):
        if self.delay:
            await trio.sleep(self.delay)
        self.log.append((self.name, str(sent.text), sent is not source, primary))
        await super().on_receive(sent, source, primary)
