"""Fixtures for the Matrix plug tests: one real Synapse per session, users and rooms per test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trio

import immp
from immp.testing import running
from immp_matrix.plug import MatrixPlug
from tests.irc.conftest import ngircd_available  # noqa: F401  (fixture)
from tests.synapse import MatrixUser, SynapseServer, ensure_synapse


@pytest.fixture(scope="session")
def synapse(tmp_path_factory) -> Iterator[SynapseServer]:
    """The session's Synapse; its venv is created on first use. Skipped if that is impossible,
    except under CI, where it fails."""
    try:
        ensure_synapse()
        server = SynapseServer(tmp_path_factory.mktemp("synapse"))
        server.start()
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Synapse is not available, and CI is set: {exc}")
        pytest.skip(f"Synapse is not available: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def alice(synapse) -> AsyncIterator[MatrixUser]:
    user = await synapse.register("alice")
    yield user
    await user.aclose()


@pytest.fixture
async def bob(synapse) -> AsyncIterator[MatrixUser]:
    user = await synapse.register("bob")
    yield user
    await user.aclose()


class Recorder(immp.Hook):
    """Records every received message as ``(sent, source, primary)``."""

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        self.seen: list[immp.SentMessage] = []
        self._changed = trio.Event()

    async def on_receive(self, sent, source, primary):
        self.seen.append(sent)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, check: Callable[[immp.SentMessage], bool], timeout: float = 20.0
    ) -> immp.SentMessage:
        """The first recorded message (old or new) for which ``check`` is true."""
        with trio.fail_after(timeout):
            while True:
                for sent in self.seen:
                    if check(sent):
                        return sent
                await self._changed.wait()


def plug_config(synapse: SynapseServer, user: MatrixUser, **changes) -> dict:
    """A plug config for ``user`` on the test server, quick to notice news."""
    return {
        "homeserver": synapse.url,
        "user": user.user_id,
        "password": user.password,
        "sync-timeout": 5,
        "retry-max": 2,
        **changes,
    }


@contextlib.asynccontextmanager
async def matrix_host(
    config: dict, rooms=(), host: immp.Host | None = None
) -> AsyncIterator[tuple[immp.Host, MatrixPlug, Recorder]]:
    """A running host with one Matrix plug (``matrix``), a channel per room and a recorder."""
    host = host or immp.Host()
    plug = host.add_plug(MatrixPlug("matrix", config, host))
    for index, source in enumerate(rooms):
        host.add_channel(f"room{index}", immp.Channel(plug, source))
    recorder = host.add_hook(Recorder("recorder", None, host))
    async with running(host):
        with trio.fail_after(30):
            await plug.synced.wait()
        yield host, plug, recorder


@pytest.fixture
async def bot(synapse) -> AsyncIterator[MatrixUser]:
    """The bridge's own account (subject to the message rate limit)."""
    user = await synapse.register("bot", exempt=False)
    yield user
    await user.aclose()
