"""Fixtures for the IRC plug tests: a real ngircd, a host running the plug, a recording hook."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trustme

import immp
from immp_irc import IRCPlug
from tests.conftest import running
from tests.ngircd import NGIRCD, NgircdServer


@pytest.fixture
def ngircd_available() -> None:
    """Skip without ngircd, except under CI, where a missing server is a failure."""
    if NGIRCD is None:
        if os.environ.get("CI"):
            pytest.fail("ngircd is not installed, and CI is set: install it (apt-get install "
                        "ngircd)")  # fmt: skip
        pytest.skip("ngircd is not installed")


@pytest.fixture
async def server(ngircd_available, tmp_path) -> AsyncIterator[NgircdServer]:
    """A plain ngircd without penalties."""
    async with NgircdServer.running(tmp_path / "ngircd") as srv:
        yield srv


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


class Recorder(immp.Hook):
    """Records every received message as ``(sent, source, primary)``."""

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        self.seen: list[tuple[immp.SentMessage, immp.Message, bool]] = []
        self._changed = trio.Event()

    async def on_receive(self, sent, source, primary):
        self.seen.append((sent, source, primary))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, check: Callable[[immp.SentMessage], bool],
                       timeout: float = 10.0) -> immp.SentMessage:  # fmt: skip
        """The first recorded message (old or new) for which ``check`` is true."""
        with trio.fail_after(timeout):
            while True:
                for sent, _, _ in self.seen:
                    if check(sent):
                        return sent
                await self._changed.wait()

    def texts(self) -> list[str]:
        return [str(sent.text) for sent, _, _ in self.seen if sent.text]


def plug_config(port: int, **changes) -> dict:
    """A plug config for a local server, fast enough for tests; ``changes`` merge in."""
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "user": {"nick": "bot", "real-name": "IMMP test bot"},
        "send-delay": 0.005,
        "reconnect-delay": 0.5,
        "reconnect-max": 2,
        "rejoin-delay": 0.1,
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = copy.deepcopy(value)
    return config


@contextlib.asynccontextmanager
async def irc_host(
    config: dict, channels=("#test",)
) -> AsyncIterator[tuple[immp.Host, IRCPlug, Recorder]]:
    """A running host with one IRC plug (named ``irc``), named channels and a recorder."""
    host = immp.Host()
    plug = host.add_plug(IRCPlug("irc", config, host))
    for index, source in enumerate(channels):
        host.add_channel(f"chan{index}", immp.Channel(plug, source))
    recorder = host.add_hook(Recorder("recorder", None, host))
    async with running(host):
        yield host, plug, recorder
