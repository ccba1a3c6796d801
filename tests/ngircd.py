"""
A real IRC server for tests and benchmarks: ngircd on a free loopback port, plus a tiny raw IRC
client on trio.

::

    async with NgircdServer.running(tmp_path) as server:
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.send("PRIVMSG #test :hello")
            line = await alice.expect("PRIVMSG")

The server is started in the foreground (``-n``) with a config written into a temporary
directory: no PAM, no ident and no DNS lookups, penalties (ngircd's flood throttling) off unless
asked for, optional TLS with a certificate from ``trustme``. :meth:`NgircdServer.restart` stops
it and starts the same config again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import trio

NGIRCD = shutil.which("ngircd") or ("/usr/sbin/ngircd" if os.path.exists("/usr/sbin/ngircd")
                                    else None)  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_listening(process: trio.Process, port: int, log_path: Path) -> None:
    """Wait until a server ``process`` accepts connections on ``port``; fail if it exits."""
    while True:
        if process.poll() is not None:
            tail = log_path.read_text()[-2000:]  # noqa: ASYNC240 (once, on the way to failing)
            raise RuntimeError(f"{process.args[0]} exited: {tail}")
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.05)
            continue
        await stream.aclose()
        return


class NgircdServer:
    """
    One ngircd process. ``penalties`` keeps ngircd's own flood throttling (one command per
    second or so after a burst); ``tls`` (a ``trustme.CA``) adds a TLS port, :attr:`tls_port`,
    whose certificate is issued for ``localhost`` and ``127.0.0.1``.
    """

    def __init__(self, directory: Path, *, name: str = "irc.test", penalties: bool = False,
                 tls=None, password: str | None = None, ping_timeout: int = 120):  # fmt: skip
        if NGIRCD is None:
            raise RuntimeError("ngircd is not installed")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.ca = tls
        self.process: trio.Process | None = None
        self.config_path = self.directory / "ngircd.conf"
        self.log_path = self.directory / "ngircd.log"
        self._write_config(penalties, password, ping_timeout)

    def _write_config(self, penalties: bool, password: str | None, ping_timeout: int) -> None:
        motd = self.directory / "motd"
        motd.write_text("test server\n")
        glob = [
            f"Name = {self.name}",
            "Info = IMMP test server",
            f"Ports = {self.port}",
            "Listen = 127.0.0.1",
            f"MotdFile = {motd}",
        ]
        if password:
            glob.append(f"Password = {password}")
        limits = [
            "MaxConnectionsIP = 0",
            "MaxJoins = 0",
            f"PingTimeout = {ping_timeout}",
            "PongTimeout = 20",
        ]
        if not penalties:
            limits.append("MaxPenaltyTime = 0")
        options = ["PAM = no", "Ident = no", "DNS = no", "AllowRemoteOper = no"]
        text = ["[Global]", *glob, "", "[Limits]", *limits, "", "[Options]", *options, ""]
        if self.ca is not None:
            cert = self.ca.issue_cert("localhost", "127.0.0.1")
            cert_file = self.directory / "server.pem"
            key_file = self.directory / "server.key"
            cert.cert_chain_pems[0].write_to_path(str(cert_file))
            for extra in cert.cert_chain_pems[1:]:
                extra.write_to_path(str(cert_file), append=True)
            cert.private_key_pem.write_to_path(str(key_file))
            text += ["[SSL]", f"CertFile = {cert_file}", f"KeyFile = {key_file}",
                     f"Ports = {self.tls_port}", ""]  # fmt: skip
        self.config_path.write_text("\n".join(text))

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, directory: Path, **options) -> AsyncIterator[NgircdServer]:
        """Start a server for the duration of the block."""
        server = cls(directory, **options)
        await server.start()
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                await server.stop()

    async def start(self, timeout: float = 10.0) -> None:
        """Start ngircd and wait until it accepts connections."""
        log = self.log_path.open("ab")  # a local file, handed to the process
        self.process = await trio.lowlevel.open_process(
            [NGIRCD, "-n", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)  # fmt: skip
        log.close()
        with trio.fail_after(timeout):
            for port in filter(None, (self.port, self.tls_port)):
                await wait_listening(self.process, port, self.log_path)

    async def stop(self, *, kill: bool = False) -> None:
        """Stop ngircd (SIGTERM, or SIGKILL with ``kill``) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        with trio.move_on_after(5):
            await process.wait()
            return
        process.kill()
        await process.wait()

    async def restart(self, *, kill: bool = True) -> None:
        """Stop the server (killed by default, as a crash) and start it again on the same port."""
        await self.stop(kill=kill)
        await self.start()

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class RawClient:
    """
    A minimal IRC client for tests: raw lines in, raw lines out. It registers with ``username``
    (the ``user`` of ``nick!user@host``; the nick unless given).
    """

    def __init__(self, stream: trio.abc.Stream, nick: str, username: str | None = None):
        self.stream = stream
        self.nick = nick
        self.username = username or nick
        self.lines: list[str] = []
        self._buffer = b""
        self._unread = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, port: int, nick: str, *, register: bool = True,
                        host: str = "127.0.0.1",
                        username: str | None = None) -> AsyncIterator[RawClient]:  # fmt: skip
        """Connect (and register) for the duration of the block."""
        stream = await trio.open_tcp_stream(host, port)
        client = cls(stream, nick, username)
        try:
            if register:
                await client.register()
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def send(self, *lines: str | bytes) -> None:
        """Send raw lines (CR LF is added)."""
        data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\r\n" for ln in lines)
        await self.stream.send_all(data)

    async def _read_line(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\n")
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        parts = line.split(" ")
        if parts[0] == "PING":
            await self.send("PONG " + " ".join(parts[1:]))
        self.lines.append(line)
        return line

    async def expect(self, *needles: str, timeout: float = 10.0) -> str:
        """The next unread line containing every needle (lines skipped on the way stay read)."""
        with trio.fail_after(timeout):
            while True:
                while self._unread < len(self.lines):
                    line = self.lines[self._unread]
                    self._unread += 1
                    if all(n in line for n in needles):
                        return line
                await self._read_line()

    async def collect(self, command: str, count: int, timeout: float = 30.0) -> list[str]:
        """The next ``count`` lines with this command (e.g. ``PRIVMSG``), in order."""
        out = []
        while len(out) < count:
            line = await self.expect(f" {command} ", timeout=timeout)
            out.append(line)
        return out

    async def quiet(self, seconds: float = 0.3) -> list[str]:
        """
        Read whatever arrives within ``seconds`` (less if the server closes the connection);
        returns the unread lines, those read before the close included.
        """
        with trio.move_on_after(seconds):
            try:
                while True:
                    await self._read_line()
            except EOFError:
                pass
        out = self.lines[self._unread :]
        self._unread = len(self.lines)
        return out

    async def register(self) -> None:
        await self.send(f"NICK {self.nick}", f"USER {self.username} 0 * :{self.nick}")
        await self.expect(" 001 ")
        with trio.fail_after(10):  # end of MOTD (376) or no MOTD (422)
            while True:
                line = await self.expect(" ")
                if " 376 " in line or " 422 " in line:
                    return

    async def join(self, channel: str) -> None:
        await self.send(f"JOIN {channel}")
        await self.expect(" 366 ", channel)

    async def until_in_channel(self, nick: str, channel: str) -> None:
        """Ask ``NAMES`` until ``nick`` is in ``channel`` (it may join before or after us)."""
        with trio.fail_after(20):
            while True:
                await self.send(f"NAMES {channel}")
                names = (await self.expect(" 353 ", channel)).rpartition(":")[2].split()
                if nick in (name.lstrip("@+~&%") for name in names):
                    return
                await self.expect(" 366 ", channel)
                await trio.sleep(0.1)

    async def privmsg(self, target: str, text: str) -> None:
        await self.send(f"PRIVMSG {target} :{text}")


def parse_privmsg(line: str) -> tuple[str, str, str]:
    """``(source nick, target, text)`` of a raw PRIVMSG/NOTICE line (tags dropped)."""
    if line.startswith("@"):
        line = line.partition(" ")[2]
    prefix, _command, rest = line.split(" ", 2)
    target, _, text = rest.partition(" :")
    return prefix.lstrip(":").partition("!")[0], target, text
