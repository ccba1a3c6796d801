"""
One IRC connection that stays up: connect (TCP or TLS), register, keep alive, and reconnect
with exponential backoff and jitter.

The parts, each in its own module: the outgoing queue with flood control and acknowledgements
(:mod:`.outgoing`), registration with CAP and SASL (:mod:`.registration`), taking the
configured nick back (:mod:`.nick`) and the redaction of secrets in the log (:mod:`.redact`).
What belongs to one TCP connection is one :class:`Session`; a reconnect starts a new one, so
nothing is reset by hand. Only the outgoing queue outlives sessions.

A failure says what happened in one line: could not connect (refused, unreachable, no such
host: retried every few seconds at most, since a refused connection costs the server nothing
and a restarted server should be used at once), not an IRC server (with the first bytes the
other end sent), registration timed out, or disconnected (with why). The end of an outage is a
warning too, so that a log read at the default level does not end on the failure: back after
how long, and how many queued lines go out now (``Back on HOST:PORT after 12.3s out; sending 2
queued lines``; at the first connection only if its first attempts failed: ``Connected to
HOST:PORT after 8.2s of failed attempts; ...``).

The plug sees the connection through a small :class:`Handler` contract (see there).

At DEBUG, every raw line is logged as it is read (``<< ...``) and written (``>> ...``), one
record per line, with secrets cut out first by the connection's :class:`.redact.Redactor`
(``PASS ***``, and the text of ``perform`` lines).
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import ircstates
import irctokens
import trio

import immp
from immp import describe_error

from .formatting import scrub
from .nick import NickRegain
from .outgoing import Outgoing, OutgoingQueue, count_lines
from .redact import Redactor
from .registration import Registration

# Bytes of one incoming line before we give up on it (IRCv3 allows 8191 for tags plus 512).
MAX_INCOMING = 16384
# Bytes of a token we echo back to the server (a PING's), so that the reply fits in a line.
MAX_TOKEN = 400
# Longest line (without CR LF) ever written: IRC's 512 bytes including CR LF.
MAX_LINE = 510
# Longest wait between attempts while the server cannot be reached at all (refused, unreachable):
# a restarted server is used within this, however long it was down.
CONNECT_RETRY_MAX = 5.0
# Bytes of what a server that is not IRC sent, shown in the log line that says so.
SHOWN_BYTES = 48
# An IRC command: a word of letters, or a three-digit numeric.
_COMMAND = re.compile(rb"[A-Za-z]+|[0-9]{3}")


class Disconnected(Exception):
    """The connection ended (the server closed it, it stopped answering, or it failed)."""


class CouldNotConnect(Disconnected):
    """No TCP connection was made (refused, unreachable, no such host, timed out)."""


class NotIRC(Disconnected):
    """The other end does not speak IRC; ``str()`` is what it sent, escaped."""


class RegistrationTimeout(Disconnected):
    """Connected, but the server did not register us in time."""


# What ends a session and makes the connection try again.
_NETWORK_ERRORS = (Disconnected, OSError, ssl.SSLError, trio.BrokenResourceError, trio.TooSlowError)


@dataclass
class Settings:
    """What a :class:`Connection` needs from the plug's config."""

    host: str
    port: int
    tls: bool = False
    verify: bool = True
    ca_file: str | None = None
    password: str | None = None
    nick: str = "immp"
    username: str = "immp"
    real_name: str = "IMMP"
    sasl: tuple[str, str] | None = None
    sasl_required: bool = False
    send_delay: float = 0.5
    send_burst: int = 5
    queue_size: int = 1000
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    reconnect_delay: float = 2.0
    reconnect_max: float = 300.0
    connect_timeout: float = 30.0
    nick_retry: float = 30.0


class Handler(Protocol):
    """
    What the connection calls on the plug. For every line after registration:
    ``prepared = handler.prepare(line)`` runs *before* the tracked state takes the line in (so a
    QUIT can still see the channels of the user who quits), then ``await handler.handle(line,
    prepared)`` after. ``await handler.on_ready()`` runs once per registration, after the MOTD
    (send ``perform`` and joins there, with ``OutgoingQueue.send_priority``);
    ``handler.on_sent(item)`` once per queued line, just *before* its first write (so that it
    has run when the server's echo of the line can be read). A line written again after a
    reconnect is not reported again. ``handler.on_link(connected, reason)`` when the link goes
    down (``reason`` says why, in a few words), again while down when the reason changes, and
    when it is registered again after that.
    """

    def prepare(self, line: irctokens.Line) -> Any: ...

    async def handle(self, line: irctokens.Line, prepared: Any) -> None: ...

    async def on_ready(self) -> None: ...

    def on_sent(self, item: Outgoing) -> None: ...

    def on_link(self, connected: bool, reason: str | None) -> None: ...


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _os_reason(exc: BaseException) -> str:
    """A few words for why a TCP connect failed: ``connection refused``, ``no route to host``."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop(0)
        if isinstance(current, socket.gaierror) and current.strerror:
            return current.strerror.lower()
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno).lower()
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        if current.__cause__ is not None:
            seen.append(current.__cause__)
    return str(exc) or type(exc).__name__


def _shown(data: bytes) -> str:
    """The start of what a peer sent, quoted and escaped, safe for one log line."""
    text = repr(data[:SHOWN_BYTES])[1:]  # b'...' without the b: control bytes escaped
    return text + ("..." if len(data) > SHOWN_BYTES else "")


class Session:
    """
    Everything that belongs to one TCP connection, made new for each: the stream, the server's
    state as tracked from its lines, registration, taking the nick back, what was read.
    """

    def __init__(self, stream: trio.abc.Stream, settings: Settings, queue: OutgoingQueue,
                 log: logging.Logger, redact: Redactor):  # fmt: skip
        self.stream: trio.abc.Stream | None = stream
        self.log = log
        self.redact = redact
        #: Server, channel and user state, from this connection's lines.
        self.state = ircstates.Server(settings.host)
        s = settings
        self.registration = Registration(
            nick=s.nick, username=s.username, real_name=s.real_name, password=s.password,
            sasl=s.sasl, sasl_required=s.sasl_required, state=self.state, write=self.write,
            log=log)  # fmt: skip
        self.regain = NickRegain(s.nick, s.nick_retry, self.state, queue.send_priority, log)
        #: Registered, and ``on_ready`` has run.
        self.ready = False
        self.last_recv = trio.current_time()
        #: The start of what the server sent (to show if it turns out not to be IRC).
        self.first_bytes = b""
        #: A line that reads as IRC came in.
        self.spoke_irc = False
        #: Set once the session has ended.
        self.done = trio.Event()
        self._write_lock = trio.Lock()

    async def write(self, *lines: str) -> None:
        """
        Write lines, in one go. Raises :class:`Disconnected` once the session is over.
        irctokens refuses neither line breaks nor long lines: this is the last guard before the
        socket. A bad line is left out (and logged) rather than failing the connection, which
        would send the same line again after the reconnect, forever.
        """
        data = b""
        for line in lines:
            encoded = line.encode("utf-8")
            if any(ch in line for ch in "\r\n\0") or len(encoded) > MAX_LINE:
                self.log.warning("Not writing a line with CR, LF or NUL or over %d bytes (%d): "
                                 "%s", MAX_LINE, len(encoded), self.redact(line)[:80])  # fmt: skip
                continue
            data += encoded + b"\r\n"
        stream = self.stream
        if stream is None:
            raise Disconnected("not connected")
        if not data:
            return
        async with self._write_lock:
            if self.log.isEnabledFor(logging.DEBUG):
                for line in data.decode("utf-8").split("\r\n")[:-1]:
                    self.log.debug(">> %s", self.redact(line))
            await stream.send_all(data)

    def end(self) -> None:
        self.stream = None
        self.ready = False
        self.done.set()


class Connection:
    """
    A self-healing IRC connection. Run :meth:`run` in a nursery; it connects and reconnects
    until cancelled or :meth:`close`. :attr:`outgoing` queues lines under flood control.
    """

    def __init__(self, settings: Settings, handler: Handler, log: logging.Logger):
        self.settings = settings
        self.handler = handler
        self.log = log
        #: What every line logged goes through (see :mod:`.redact`): tell it the lines
        #: that hold secrets it cannot know (``redact.keep_out(line)``).
        self.redact = Redactor()
        #: Every line waiting to be written; outlives sessions.
        self.outgoing = OutgoingQueue(burst=settings.send_burst, delay=settings.send_delay,
                                      size=settings.queue_size, log=log)  # fmt: skip
        #: How many times a connection was registered (1 after the first).
        self.registrations = 0
        self._session: Session | None = None
        self._no_state = ircstates.Server(settings.host)
        self._closing = False
        self._link_down = False  # the handler was told the link is down
        self._link_reason: str | None = None  # the reason it was told last
        # When the current outage began (None while registered), and whether it followed a
        # registration in this run (a reconnect) or the run's first attempts failed.
        self._down_since: float | None = None
        self._down_after_registration = False

    @property
    def state(self) -> ircstates.Server:
        """Server, channel and user state of the current (or last) connection."""
        return self._session.state if self._session else self._no_state

    @property
    def ready(self) -> bool:
        """Whether the current connection is registered and has run ``on_ready``."""
        return self._session is not None and self._session.ready

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- the connection loop --------------------------------------------------------------------

    async def run(self) -> None:
        """
        Connect, and reconnect after every failure with growing delays, until cancelled or
        :meth:`close` ends it. Raises what is not a network failure (a bug, or
        :class:`.registration.SASLFailed`), which ends the plug.
        """
        # The host reuses the plug, and this connection, across a stop and a start: a close of
        # an earlier run must not end this one at its first disconnect.
        self._closing = False
        delay = self.settings.reconnect_delay
        last_failure = None
        started = trio.current_time()
        self._down_since, self._down_after_registration = None, False
        registered_in_run = False
        while True:
            registered = False
            try:
                await self._session_loop()
                failure = f"Disconnected from {self.where} (connection closed)"
            except _NETWORK_ERRORS as exc:
                failure = self._failure(exc)
            except ExceptionGroup as group:
                # The session's tasks failed together: a network failure ends the session and
                # we reconnect; anything else is a bug, raised (the plug fails, and says why)
                # rather than retried forever.
                network, bugs = group.split(_NETWORK_ERRORS)
                if bugs is not None:
                    raise bugs from None
                failure = self._failure(network)
            finally:
                if self._session is not None and self._session.stream is not None:
                    registered = self._session.registration.registered
                    self._session.end()
                self.outgoing.end_session()
            registered_in_run = registered_in_run or registered
            if self._closing:
                self.log.info("%s; closing, so not reconnecting", failure)
                return
            if not self._link_down or failure != self._link_reason:
                # Down, or down for another reason now (refused, then not an IRC server): what
                # /health and the metrics show is the latest.
                self._link_down = True
                self._link_reason = failure
                self.handler.on_link(False, failure)
            if self._down_since is None:
                self._down_since = trio.current_time() if registered_in_run else started
                self._down_after_registration = registered_in_run
            if registered:
                delay, last_failure = self.settings.reconnect_delay, None
            longest = self.settings.reconnect_max
            if failure.startswith("Could not connect"):
                longest = min(longest, CONNECT_RETRY_MAX)
            delay = min(delay, longest)
            wait = random.uniform(delay / 2, delay)
            pending = self.outgoing.pending
            waiting = f"{count_lines(pending)} waiting; " if pending else ""
            # The first of a run of the same failure is a warning; its repeats are not news.
            report = self.log.info if failure == last_failure else self.log.warning
            report("%s; %sretrying in %.1fs", failure, waiting, wait)
            last_failure = failure
            await trio.sleep(wait)
            delay = min(delay * 2, longest)

    def _failure(self, exc: BaseException) -> str:
        """One line saying how a session ended."""
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if isinstance(exc, CouldNotConnect):
            return f"Could not connect to {self.where} ({exc})"
        if isinstance(exc, NotIRC):
            return f"{self.where} is not an IRC server (it sent {exc})"
        if isinstance(exc, RegistrationTimeout):
            return f"Registration with {self.where} {exc}"
        reason = str(exc) if isinstance(exc, Disconnected) else describe_error(exc)
        return f"Disconnected from {self.where} ({reason})"

    async def _open_tcp(self) -> trio.SocketStream:
        s = self.settings
        try:
            with trio.fail_after(s.connect_timeout):
                return await trio.open_tcp_stream(s.host, s.port)
        except trio.TooSlowError:
            raise CouldNotConnect(f"timed out after {s.connect_timeout:g}s") from None
        except OSError as exc:
            raise CouldNotConnect(_os_reason(exc)) from None

    async def _connect(self) -> trio.abc.Stream:
        s = self.settings
        stream = await self._open_tcp()
        if not s.tls:
            return stream
        context = ssl.create_default_context(cafile=s.ca_file)
        if not s.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        tls = trio.SSLStream(stream, context, server_hostname=s.host)
        try:
            with trio.fail_after(s.connect_timeout):
                await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return tls

    async def _session_loop(self) -> None:
        stream = await self._connect()
        self.log.info("Connected to %s%s", self.where, " (TLS)" if self.settings.tls else "")
        session = self._session = Session(
            stream, self.settings, self.outgoing, self.log, self.redact
        )
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(self.outgoing.write_control, session.write)
            nursery.start_soon(self.outgoing.write_lines, session.write, self.handler.on_sent)
            nursery.start_soon(self._keepalive, session)
            nursery.start_soon(self._registration_deadline, session)
            nursery.start_soon(session.regain.run)
            try:
                await session.write(*session.registration.opening())
            except trio.BrokenResourceError:
                # Closed on us at once: what the other end said first may tell why (an HTTP
                # server answers our first line with an error page and hangs up).
                with trio.move_on_after(1):
                    try:
                        await self._reader(session)
                    except (Disconnected, trio.BrokenResourceError, OSError) as exc:
                        if isinstance(exc, NotIRC):
                            raise
                raise
            await self._reader(session)
            nursery.cancel_scope.cancel()

    async def close(self, quit_message: str, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout``), then QUIT and wait for the server."""
        pending = self.outgoing.pending
        if self.ready and pending:
            if not await self.outgoing.drain(timeout):
                self.log.warning("Closing with %s not sent", count_lines(self.outgoing.pending))
        elif pending:
            self.log.warning("Closing while disconnected: %s not sent", count_lines(pending))
        self._closing = True
        session = self._session
        if session is not None and session.stream is not None:
            try:
                await session.write(irctokens.build("QUIT", [scrub(quit_message)]).format())
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, Disconnected):
                return
            with trio.move_on_after(2):
                await session.done.wait()

    async def _registration_deadline(self, session: Session) -> None:
        timeout = self.settings.connect_timeout
        await trio.sleep(timeout)
        if not session.registration.registered:
            if session.first_bytes and not session.spoke_irc:
                raise NotIRC(_shown(session.first_bytes))
            silent = "" if session.first_bytes else "; the server sent nothing"
            raise RegistrationTimeout(f"timed out after {timeout:g}s{silent}")
        if not session.ready:  # a server that sends no end of MOTD
            await self._become_ready(session)

    async def _become_ready(self, session: Session) -> None:
        session.ready = True
        self.registrations += 1
        await self.handler.on_ready()
        session.regain.start(invalid=session.registration.nick_invalid)
        self._report_back()
        self.outgoing.start_data()
        if self._link_down:
            self._link_down = False
            self.handler.on_link(True, None)

    def _report_back(self) -> None:
        """After an outage (or failed first attempts), say that the link is up again: a warning,
        like the failure it ends, so that both show at the default level."""
        since, self._down_since = self._down_since, None
        if since is None:
            return
        took = trio.current_time() - since
        pending = self.outgoing.pending
        noun = "line" if pending == 1 else "lines"
        sending = f"sending {pending} queued {noun}" if pending else "no lines queued"
        if self._down_after_registration:
            self.log.warning("Back on %s after %.1fs out; %s", self.where, took, sending)
        else:
            self.log.warning("Connected to %s after %.1fs of failed attempts; %s", self.where,
                             took, sending)  # fmt: skip

    async def _keepalive(self, session: Session) -> None:
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        while True:
            await trio.sleep_until(session.last_recv + interval)
            if trio.current_time() - session.last_recv < interval:
                continue
            sent = trio.current_time()
            self.outgoing.send_control("PING :immp-keepalive")
            await trio.sleep(timeout)
            if session.last_recv < sent:
                raise Disconnected(f"no answer to PING in {timeout:g}s")

    # -- reading --------------------------------------------------------------------------------

    async def _reader(self, session: Session) -> None:
        buffer = b""
        stream = session.stream
        quick_ack = _quick_ack_for(stream)
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                if session.first_bytes and not session.spoke_irc:
                    raise NotIRC(_shown(session.first_bytes + buffer))
                raise Disconnected("server closed the connection")
            quick_ack()
            session.last_recv = trio.current_time()
            if len(session.first_bytes) < SHOWN_BYTES + 1:
                session.first_bytes += chunk[: SHOWN_BYTES + 1 - len(session.first_bytes)]
            buffer += chunk
            *raws, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_INCOMING:
                self.log.warning("Dropping an over-long incoming line (%d bytes)", len(buffer))
                buffer = b""
            debug = self.log.isEnabledFor(logging.DEBUG)
            for raw in raws:
                raw = raw.rstrip(b"\r")
                if not raw.strip():
                    continue
                if debug:
                    self.log.debug("<< %s", self.redact(raw.decode("utf-8", "backslashreplace")))
                try:
                    line = irctokens.tokenise(raw)
                except Exception as exc:
                    if not session.spoke_irc:
                        raise NotIRC(_shown(session.first_bytes)) from None
                    self._warn("Ignoring unparseable", raw, exc)
                    continue
                if not session.spoke_irc:
                    # An HTTP status line, an SSH banner: the other end is no IRC server.
                    if not _COMMAND.fullmatch(line.command.encode("utf-8", "replace")):
                        raise NotIRC(_shown(session.first_bytes))
                    session.spoke_irc = True
                await self._dispatch(session, line, raw)

    def _warn(self, what: str, raw: bytes, exc: Exception) -> None:
        """Log ``what`` went wrong with a received line, quoted redacted and cut to 200 chars."""
        quoted = self.redact(raw.decode("utf-8", "backslashreplace"))[:200]
        self.log.warning('%s line "%s": %s', what, quoted, describe_error(exc))

    async def _dispatch(self, session: Session, line: irctokens.Line, raw: bytes) -> None:
        prepared = None
        if session.ready:
            try:
                prepared = self.handler.prepare(line)
            except Exception as exc:
                self._warn("Could not handle", raw, exc)
        try:
            session.state.parse_tokens(line)
        except Exception as exc:
            self._warn("State tracking failed on", raw, exc)
        try:
            await self._protocol(session, line)
        except (Disconnected, OSError, trio.BrokenResourceError, immp.PlugError):
            raise
        except Exception as exc:
            self._warn("Could not handle", raw, exc)
        if session.ready:
            try:
                await self.handler.handle(line, prepared)
            except Exception as exc:
                self._warn("Could not handle", raw, exc)

    async def _protocol(self, session: Session, line: irctokens.Line) -> None:
        """The connection's own business: pings, acknowledgements, registration, the nick."""
        command, params = line.command, line.params
        if command == "PING":
            # Echo the token, but never a line break or more than fits in one line.
            token = _truncate(scrub(params[-1]) if params else "", MAX_TOKEN) or "x"
            self.outgoing.send_control(irctokens.build("PONG", [token]).format())
        elif command == "PONG" and params:
            self.outgoing.acknowledge(params[-1])
        elif command == "ERROR":
            # After our own QUIT the server says goodbye with ERROR: not a problem then.
            text = params[-1] if params else ""
            if self._closing:
                self.log.info("Server closed the link after our QUIT: %s", text)
            else:
                self.log.warning("Server error: %s", text)
        elif not session.ready:
            await session.registration.handle(line)
            if session.registration.done and not session.ready:
                await self._become_ready(session)
        session.regain.news(line)


def _quick_ack_for(stream: trio.abc.Stream):
    """
    A function that asks the kernel to acknowledge what we just read at once, rather than
    after its delayed-ACK pause (about 40 ms on Linux, which resets the setting on every read).

    Why: after each line we send our acknowledging ``PING``; the server's ``PONG`` would then sit
    unacknowledged, and a server that uses Nagle's algorithm (ngircd does) holds its next line
    to us, the next channel message, until that acknowledgement comes: +20 ms per relayed
    message in a busy channel (see docs/performance.md).
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    inner = getattr(stream, "transport_stream", stream)  # the TCP stream under TLS
    if option is None or not isinstance(inner, trio.SocketStream):
        return lambda: None

    def quick_ack() -> None:
        try:
            inner.setsockopt(socket.IPPROTO_TCP, option, 1)
        except OSError:
            pass  # closed meanwhile: the next read says so

    return quick_ack
