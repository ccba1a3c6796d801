"""Fixtures for the IRC plug tests: a real ngircd, a host running the plug, a recording hook."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import AsyncIterator

import pytest
import trustme

import immp
from immp.testing import Recorder, running
from immp_irc import IRCPlug
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
