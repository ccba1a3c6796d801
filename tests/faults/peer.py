"""
A scripted IRC server on loopback for one client: it registers the client with canned lines,
then sends whatever a test wants, and records every line the client writes (as bytes).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial

import trio


class ScriptedServer:
    """Accepts one connection at a time; :attr:`received` holds every raw line written to us."""

    def __init__(self):
        self.port = 0
        self.received: list[bytes] = []
        self.stream: trio.SocketStream | None = None
        self._connected = trio.Event()
        self._changed = trio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[ScriptedServer]:
        server = cls()
        async with trio.open_nursery() as nursery:
            serve = partial(trio.serve_tcp, server._handle, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            server.port = listeners[0].socket.getsockname()[1]
            yield server
            nursery.cancel_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._connected.set()
        buffer = b""
        try:
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.received.append(line)
                    await self._answer(line.rstrip(b"\r"))
                self._changed.set()
                self._changed = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _answer(self, line: bytes) -> None:
        if line.startswith(b"NICK "):
            nick = line.split(b" ")[1]
            await self.send(b":irc.peer 001 " + nick + b" :Welcome",
                            b":irc.peer 005 " + nick + b" CHANTYPES=# NICKLEN=30 :are supported",
                            b":irc.peer 376 " + nick + b" :End of MOTD")  # fmt: skip
        elif line.startswith(b"PING "):
            await self.send(b":irc.peer PONG irc.peer " + line[5:])
        elif line.startswith(b"QUIT"):
            await self.send(b"ERROR :Closing link")
            await self.stream.aclose()
        elif line.startswith(b"JOIN "):
            channel = line.split(b" ")[1]
            await self.send(b":bot!bot@peer JOIN " + channel)

    async def send(self, *lines: bytes) -> None:
        await self.stream.send_all(b"".join(line + b"\r\n" for line in lines))

    async def wait_for(self, needle: bytes, timeout: float = 10.0) -> bytes:
        """The first received line containing ``needle`` (old or new)."""
        with trio.fail_after(timeout):
            while True:
                for line in self.received:
                    if needle in line:
                        return line
                await self._changed.wait()

    async def connected(self, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            await self._connected.wait()
