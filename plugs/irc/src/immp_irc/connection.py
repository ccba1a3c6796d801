"""
One IRC connection that stays up: connect (TCP or TLS), register (CAP LS 302, SASL PLAIN, nick
collisions), keep alive, and reconnect with exponential backoff and jitter.

Registered under an alternative nick (the configured one was taken), the connection asks for the
configured nick back: at once when it sees the holder leave (a ``QUIT``, or a ``NICK`` away from
it, in a shared channel; or ``731 RPL_MONOFFLINE`` where the server offers ``MONITOR``), and
otherwise every ``nick-retry`` seconds.

Outgoing lines wait in one queue per connection and leave it under flood control (a token
bucket: a burst, then one line per ``send-delay``); replies to CTCP requests, then joins, go
ahead of them under the same flood control, and only ``PONG`` (and our keepalive ``PING``) is
written at once, outside it. The queue outlives each TCP connection: lines queued while
disconnected go out in order after the next registration. A line written to a socket stays
"unacknowledged" until a later ``PING`` we send comes back as ``PONG`` (servers answer in
order); lines still unacknowledged when a connection dies are sent again after the reconnect,
so a dying server can duplicate a line but never lose one.

The plug sees the connection through a small :class:`Handler` contract (see there).

At DEBUG, every raw line is logged as it is read (``<< ...``) and written (``>> ...``), one
record per line, with secrets cut out first by :func:`redact` (``PASS ***``).
"""

from __future__ import annotations

import base64
import itertools
import logging
import math
import random
import re
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import ircstates
import irctokens
import trio

from .formatting import scrub

# Capabilities asked for when the server offers them; everything works without any of them.
WANTED_CAPS = ("server-time", "message-tags", "echo-message", "account-tag", "extended-join",
               "multi-prefix", "account-notify")  # fmt: skip
# Send a PING (whose PONG acknowledges every line before it) at least every this many lines.
ACK_EVERY = 20
# Bytes of one incoming line before we give up on it (IRCv3 allows 8191 for tags plus 512).
MAX_INCOMING = 16384
# Bytes of a token we echo back to the server (a PING's), so that the reply fits in a line.
MAX_TOKEN = 400
# Longest line (without CR LF) ever written: IRC's 512 bytes including CR LF.
MAX_LINE = 510
# PONGs (and our keepalive PING) waiting to be written, at once and outside flood control: only
# the server sends us PINGs, so this only bounds a misbehaving server.
MAX_CONTROL = 64
# Replies to other users' requests (CTCP VERSION, PING) waiting for flood control. Anyone can
# ask, as often as they like: beyond this many waiting, replies are dropped (one warning per
# flood), so that a burst of requests neither grows memory nor, answered at once, gets the bot
# killed for "Excess Flood".
MAX_REPLIES = 8
# Replies to a NICK that refuse the nick. Before registration they make us try an alternative;
# after it, they answer our attempt to take the configured nick back.
NICK_REFUSED = frozenset({"432", "433", "436", "437"})
# RFC 1459's nick length, which every server takes: a nick refused as erroneous (432) at this
# length or shorter is not refused for its length.
RFC_NICKLEN = 9
# Refusals of a nick change after registration that say nothing about the nick itself:
# 438 ERR_NICKTOOFAST (ratbox, hybrid), 447 ERR_NONICKCHANGE (in a +N channel: ngircd, Unreal),
# 484 ERR_RESTRICTED.
NICK_CHANGE_REFUSED = frozenset({"438", "447", "484"})
# Lines that can tell us the configured nick is free, or answer our asking for it.
NICK_NEWS = frozenset({"QUIT", "NICK", "731", "734"}) | NICK_REFUSED | NICK_CHANGE_REFUSED


# Words after which a services command carries a password (``NS IDENTIFY pw``, ``PRIVMSG
# NickServ :IDENTIFY account pw``, ``PRIVMSG Q@CServe.quakenet.org :AUTH user pw``).
SECRET_VERBS = frozenset({"IDENTIFY", "ID", "LOGIN", "AUTH", "REGISTER", "GHOST", "RECOVER",
                          "RELEASE", "REGAIN", "GROUP", "PASS", "PASSWORD"})  # fmt: skip
# AUTHENTICATE arguments that are not a payload: mechanism names, "+" (empty), "*" (abort).
SASL_WORDS = frozenset({"PLAIN", "EXTERNAL", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
                        "+", "*"})  # fmt: skip
# Control characters shown escaped in the log, so a line cannot fake or hide log output.
_LOG_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127]}
_WORD = re.compile(r"\S+")


def _secret_from(words: list[str], from_server: bool) -> int | None:
    """The index of the first word (upper-cased, ``:`` dropped) that must not be logged."""
    command = words[0]
    if command == "PASS":
        return 1
    if command == "AUTHENTICATE":
        return 1 if len(words) > 1 and words[1] not in SASL_WORDS else None
    if command == "OPER" or (command == "JOIN" and not from_server):  # name password; keys
        return 2
    if command in ("PRIVMSG", "NOTICE"):
        if len(words) < 3 or words[1][:1] in ("#", "&", "+", "!"):
            return None  # to a channel: relayed text, never a services login
        candidates: tuple[int, ...] = (2,)
    else:  # NS IDENTIFY pw, NICKSERV IDENTIFY pw, IDENTIFY pw, MSG NickServ IDENTIFY pw
        candidates = (0, 1, 2)
    for index in candidates:
        if words[index : index + 2] == ["SET", "PASSWORD"]:
            return index + 2
        if index < len(words) and words[index] in SECRET_VERBS:
            return index + 1
    return None


def redact(line: str) -> str:
    """
    ``line`` (incoming or outgoing, with or without tags and source) made safe to log: the
    ``PASS`` argument, SASL ``AUTHENTICATE`` payloads, the password of ``OPER``, the keys of
    our ``JOIN`` and everything after a services login verb (``IDENTIFY``, ``LOGIN``, ``AUTH``,
    ``GHOST``, ``SET PASSWORD``...) sent to a nick or as a command become ``***``; control
    characters are escaped.
    """
    line = line.translate(_LOG_ESCAPES)
    matches: list[re.Match] = []
    from_server = False
    for match in _WORD.finditer(line):
        word = match.group()
        if not matches and word[0] in "@:":  # tags, source
            from_server = from_server or word[0] == ":"
            continue
        matches.append(match)
        if len(matches) == 6:  # enough to find any secret; keeps long lines cheap
            break
    if not matches:
        return line
    index = _secret_from([m.group().lstrip(":").upper() for m in matches], from_server)
    if index is None or index >= len(matches):
        return line
    return line[: matches[index].start()] + "***"


class Disconnected(Exception):
    """The connection ended (the server closed it, it stopped answering, or it failed)."""


class QueueFull(Exception):
    """The outgoing queue stayed full for longer than the plug was willing to wait."""


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
    (send ``perform`` and joins there, with :meth:`Connection.send_priority`);
    ``handler.on_sent(item)`` once per queued line, just *before* its first write (so that it
    has run when the server's echo of the line can be read). A line written again after a
    reconnect (see the module docstring) is not reported again.
    """

    def prepare(self, line: irctokens.Line) -> Any: ...

    async def handle(self, line: irctokens.Line, prepared: Any) -> None: ...

    async def on_ready(self) -> None: ...

    def on_sent(self, item: Outgoing) -> None: ...


@dataclass(eq=False)
class Outgoing:
    """One queued line (without CR LF) and what the plug wants to know when it is written."""

    line: str
    meta: Any = None
    ack: int | None = field(default=None, repr=False)
    #: Whether ``Handler.on_sent`` has seen this line (it is written again after a reconnect).
    reported: bool = field(default=False, repr=False)


class TokenBucket:
    """``burst`` lines at once, then one line per ``interval`` seconds."""

    def __init__(self, burst: int, interval: float):
        self.burst = max(1, burst)
        self.interval = interval
        self.tokens = float(self.burst)
        self.updated = trio.current_time()

    def _refill(self) -> None:
        now = trio.current_time()
        if self.interval > 0:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) / self.interval)
        else:
            self.tokens = self.burst
        self.updated = now

    async def take(self) -> None:
        self._refill()
        if self.tokens < 1:
            await trio.sleep((1 - self.tokens) * self.interval)
            self._refill()
        self.tokens -= 1


def alternative_nick(nick: str, attempt: int, nicklen: int | None = None) -> str:
    """
    The ``attempt``-th (from 1) alternative to ``nick``, cut to fit in ``nicklen`` (``None``:
    not known, so not cut).
    """
    suffix = "_" * attempt if attempt <= 2 else str(attempt)
    if nicklen is None:
        return nick + suffix
    return nick[: max(1, nicklen - len(suffix))] + suffix


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc)
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    # trio wraps TLS failures (e.g. a certificate that does not verify) in BrokenResourceError.
    if exc.__cause__ is not None:
        out += f" ({_describe(exc.__cause__)})"
    return out


class Connection:
    """
    A self-healing IRC connection. Run :meth:`run` in a nursery; it connects and reconnects
    until cancelled. :meth:`send` queues a line under flood control.
    """

    def __init__(self, settings: Settings, handler: Handler, log: logging.Logger):
        self.settings = settings
        self.handler = handler
        self.log = log
        #: Server, channel and user state of the current (or last) connection.
        self.state = ircstates.Server(settings.host)
        #: Whether the current connection is registered and has run ``on_ready``.
        self.ready = False
        #: How many times a connection was registered (1 after the first).
        self.registrations = 0
        self._queue: deque[Outgoing] = deque()  # data lines, bounded by settings.queue_size
        self._priority: deque[str] = deque()  # joins and perform, ahead of data, flood-controlled
        self._replies: deque[str] = deque()  # CTCP replies, ahead of those, flood-controlled
        self._replies_dropped = False  # warned about dropping replies since the last ran out
        self._control: deque[str] = deque()  # PONG, keepalive PING: at once, no flood control
        self._unacked: deque[Outgoing] = deque()
        self._wake = trio.Event()  # something for the writers to do
        self._space = trio.Event()  # room in the queue
        self._acks = itertools.count(1)
        self._stream: trio.abc.Stream | None = None
        self._write_lock = trio.Lock()
        self._last_recv = 0.0
        self._nick_attempt = 0
        # While registering: the nick last asked for, and the longest nick the server is known to
        # take (None until it says; ISUPPORT NICKLEN only comes after registration).
        self._nick_tried = settings.nick
        self._nick_limit: int | None = None
        self._registered = False
        # Taking the configured nick back (see _regain_nick); all reset with each session.
        self._became_ready = trio.Event()
        self._nick_free = trio.Event()  # set when the nick may be free: try now
        self._monitoring = False  # the server tells us (MONITOR) when the nick's holder leaves
        self._nick_wait: trio.CancelScope | None = None  # the wait for the next attempt
        self._nick_invalid = False  # the server refused the nick itself (432): stop trying
        self._session_done: trio.Event | None = None
        self._closing = False

    # -- the queue --------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Lines queued or written but not yet acknowledged by the server."""
        return len(self._queue) + len(self._unacked)

    def _poke(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    async def send(self, items: list[Outgoing], timeout: float) -> None:
        """
        Queue data lines, in order, after everything queued before. When the queue is full this
        waits for room (backpressure to the caller) for at most ``timeout`` seconds, then raises
        :class:`QueueFull` with none of ``items`` queued (so a message goes out whole or not at
        all, and the caller can say so).
        """
        size = self.settings.queue_size
        with trio.move_on_after(timeout):
            while len(self._queue) + len(items) > size and self._queue:
                await self._space.wait()
            self._queue.extend(items)
            self._poke()
            return
        raise QueueFull(f"{len(self._queue)} lines waiting")

    def send_priority(self, line: str) -> None:
        """Queue a line (a join, a ``perform`` line) ahead of data lines, flood-controlled."""
        self._priority.append(line)
        self._poke()

    def send_control(self, line: str) -> bool:
        """
        Queue a line (``PONG``) to be written at once, outside flood control; ``False`` if too
        many are waiting.
        """
        if len(self._control) >= MAX_CONTROL:
            return False
        self._control.append(line)
        self._poke()
        return True

    def send_reply(self, line: str) -> bool:
        """
        Queue a reply to someone's request (a CTCP reply) ahead of other lines, under flood
        control. With :data:`MAX_REPLIES` waiting it is dropped (``False``), and the first drop
        of a flood is logged.
        """
        if len(self._replies) >= MAX_REPLIES:
            if not self._replies_dropped:
                self._replies_dropped = True
                self.log.warning("%d replies (CTCP) waiting for flood control; dropping further "
                                 "replies until they are sent", len(self._replies))  # fmt: skip
            return False
        self._replies.append(line)
        self._poke()
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued line has been acknowledged; ``False`` on timeout."""
        with trio.move_on_after(timeout):
            while self.pending:
                await self._space.wait()
            return True
        return False

    # -- the connection loop --------------------------------------------------------------------

    async def run(self) -> None:
        """
        Connect, and reconnect after every failure with growing delays, until cancelled or
        :meth:`close` ends it.
        """
        # The host reuses the plug, and this connection, across a stop and a start: a close of
        # an earlier run must not end this one at its first disconnect.
        self._closing = False
        delay = self.settings.reconnect_delay
        while True:
            self._session_done = trio.Event()
            try:
                await self._session()
                reason = "connection closed"
            except _NETWORK_ERRORS as exc:
                reason = _describe(exc)
            except ExceptionGroup as group:
                # The session's tasks failed together: a network failure ends the session and
                # we reconnect; anything else is a bug, raised (the plug fails, and says why)
                # rather than retried forever.
                network, bugs = group.split(_NETWORK_ERRORS)
                if bugs is not None:
                    raise bugs from None
                reason = _describe(network)
            finally:
                was_registered = self._registered
                self._end_session()
            if self._closing:
                self.log.info("Disconnected from %s:%s (%s); closing, so not reconnecting",
                              self.settings.host, self.settings.port, reason)  # fmt: skip
                return
            if was_registered:
                delay = self.settings.reconnect_delay
            wait = random.uniform(delay / 2, delay)
            self.log.warning("Disconnected from %s:%s (%s); %d lines waiting; reconnecting in "
                             "%.1fs", self.settings.host, self.settings.port, reason,
                             self.pending, wait)  # fmt: skip
            await trio.sleep(wait)
            delay = min(delay * 2, self.settings.reconnect_max)

    def _end_session(self) -> None:
        # Lines the server may not have seen go back to the front of the queue, in order.
        for item in reversed(self._unacked):
            item.ack = None
            self._queue.appendleft(item)
        self._unacked.clear()
        self._priority.clear()
        self._replies.clear()
        self._replies_dropped = False
        self._control.clear()
        self._stream = None
        self._registered = False
        self.ready = False
        if self._session_done is not None:
            self._session_done.set()

    async def _connect(self) -> trio.abc.Stream:
        s = self.settings
        stream = await trio.open_tcp_stream(s.host, s.port)
        if not s.tls:
            return stream
        context = ssl.create_default_context(cafile=s.ca_file)
        if not s.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        tls = trio.SSLStream(stream, context, server_hostname=s.host)
        await tls.do_handshake()
        return tls

    async def _session(self) -> None:
        s = self.settings
        with trio.fail_after(s.connect_timeout):
            stream = await self._connect()
        self.log.info("Connected to %s:%s%s", s.host, s.port, " (TLS)" if s.tls else "")
        async with stream, trio.open_nursery() as nursery:
            self._stream = stream
            self.state = ircstates.Server(s.host)
            self._nick_attempt = 0
            self._nick_tried = s.nick
            self._nick_limit = None
            self._became_ready = trio.Event()
            self._nick_free = trio.Event()
            self._monitoring = False
            self._nick_wait = None
            self._nick_invalid = False
            self._last_recv = trio.current_time()
            nursery.start_soon(self._control_writer)
            nursery.start_soon(self._writer)
            nursery.start_soon(self._keepalive)
            nursery.start_soon(self._registration_deadline)
            nursery.start_soon(self._regain_nick)
            if s.password:
                await self._write(irctokens.build("PASS", [scrub(s.password)]).format())
            await self._write("CAP LS 302")
            await self._write(irctokens.build("NICK", [s.nick]).format())
            await self._write(irctokens.build("USER", [s.username, "0", "*", scrub(s.real_name)
                                                       or s.nick]).format())  # fmt: skip
            await self._reader()
            nursery.cancel_scope.cancel()

    async def close(self, quit_message: str, timeout: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout``), then QUIT and wait for the server."""
        if self.ready and self.pending:
            if not await self.drain(timeout):
                self.log.warning("Closing with %d lines not sent", self.pending)
        elif self.pending:
            self.log.warning("Closing while disconnected: %d lines not sent", self.pending)
        self._closing = True
        if self._stream is not None:
            try:
                await self._write(irctokens.build("QUIT", [scrub(quit_message)]).format())
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            with trio.move_on_after(2):
                await self._session_done.wait()

    # -- reading --------------------------------------------------------------------------------

    async def _reader(self) -> None:
        buffer = b""
        quick_ack = _quick_ack_for(self._stream)
        while True:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise Disconnected("server closed the connection")
            quick_ack()
            self._last_recv = trio.current_time()
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
                    self.log.debug("<< %s", redact(raw.decode("utf-8", "backslashreplace")))
                try:
                    line = irctokens.tokenise(raw)
                except Exception as exc:
                    self.log.warning("Ignoring unparseable line %r: %s", raw[:200], _describe(exc))
                    continue
                await self._dispatch(line, raw)

    async def _dispatch(self, line: irctokens.Line, raw: bytes) -> None:
        prepared = None
        if self.ready:
            try:
                prepared = self.handler.prepare(line)
            except Exception as exc:
                self.log.warning("Could not handle line %r: %s", raw[:200], _describe(exc))
        try:
            self.state.parse_tokens(line)
        except Exception as exc:
            self.log.warning("State tracking failed on line %r: %s", raw[:200], _describe(exc))
        try:
            await self._protocol(line)
        except (Disconnected, OSError, trio.BrokenResourceError):
            raise
        except Exception as exc:
            self.log.warning("Could not handle line %r: %s", raw[:200], _describe(exc))
        if self.ready:
            try:
                await self.handler.handle(line, prepared)
            except Exception as exc:
                self.log.warning("Could not handle line %r: %s", raw[:200], _describe(exc))

    async def _protocol(self, line: irctokens.Line) -> None:
        """The connection's own business: pings, registration, capabilities, SASL."""
        command, params = line.command, line.params
        if command == "PING":
            # Echo the token, but never a line break or more than fits in one line.
            token = _truncate(scrub(params[-1]) if params else "", MAX_TOKEN) or "x"
            self.send_control(irctokens.build("PONG", [token]).format())
        elif command == "PONG" and params and params[-1].startswith("immp-ack-"):
            self._acknowledge(int(params[-1].removeprefix("immp-ack-")))
        elif command == "CAP" and len(params) >= 3:
            await self._cap(line)
        elif command == "AUTHENTICATE" and params == ["+"] and self.settings.sasl:
            user, password = self.settings.sasl
            payload = base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()
            chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
            if not chunks or len(chunks[-1]) == 400:
                chunks.append("+")
            for chunk in chunks:
                await self._write(f"AUTHENTICATE {chunk}")
        elif command in ("903", "907"):
            self.log.info("SASL authentication succeeded")
            await self._write("CAP END")
        elif command in ("902", "904", "905", "906", "908"):
            if command != "908":
                self.log.warning("SASL authentication failed (%s %s); going on without it",
                                 command, params[-1] if params else "")  # fmt: skip
                await self._write("CAP END")
        elif command in NICK_REFUSED and not self._registered:
            await self._try_another_nick(command, params)
        elif command == "001":
            self._registered = True
            self.registrations += 1
            self.log.info("Registered as %s", self.state.nickname)
        elif command in ("376", "422") and self._registered and not self.ready:
            await self._become_ready()
        elif command == "ERROR":
            # After our own QUIT the server says goodbye with ERROR: not a problem then.
            report = self.log.info if self._closing else self.log.warning
            report("Server error: %s", params[-1] if params else "")
        if self._became_ready.is_set() and command in NICK_NEWS:
            self._nick_news(line)

    async def _try_another_nick(self, command: str, params: list[str]) -> None:
        """
        The nick we asked for while registering was refused: ask for the next alternative. The
        server's NICKLEN is not known yet (ISUPPORT comes after registration), so the
        alternative keeps the whole nick, and is cut only as far as the server shows it must
        be: to the length of the nick it echoes back (servers that truncate), or one shorter
        after each ``432`` for a nick longer than the 9 characters every server takes.
        """
        tried, echoed = self._nick_tried, params[1] if len(params) > 2 else self._nick_tried
        bounds = [self._nick_limit] if self._nick_limit is not None else []
        if len(echoed) < len(tried):
            bounds.append(len(echoed))
        # Erroneous and longer than every server takes: most likely too long.
        too_long = command == "432" and len(tried) > RFC_NICKLEN
        if too_long:
            bounds.append(len(tried) - 1)
        if command == "432" and self._nick_attempt == 0:
            self._nick_invalid = True  # not a nick this server takes: never ask again
        if not too_long or self._nick_attempt == 0:
            self._nick_attempt += 1  # else the same alternative again, shorter
        self._nick_limit = min(bounds, default=None)
        nick = alternative_nick(self.settings.nick, self._nick_attempt, self._nick_limit)
        self.log.info("Nick %s is not available (%s), trying %s", echoed, command, nick)
        self._nick_tried = nick
        await self._write(irctokens.build("NICK", [nick]).format())

    async def _cap(self, line: irctokens.Line) -> None:
        sub = line.params[1].upper()
        if sub == "LS" and line.params[2] != "*":
            offered = self.state.available_caps
            wanted = [cap for cap in WANTED_CAPS if cap in offered]
            if self.settings.sasl and "sasl" in offered:
                mechanisms = offered["sasl"]
                if not mechanisms or "PLAIN" in mechanisms.upper().split(","):
                    wanted.append("sasl")
                else:
                    self.log.warning("Server offers no SASL PLAIN (only %s)", mechanisms)
            elif self.settings.sasl:
                self.log.warning("Server offers no SASL; connecting without it")
            if wanted:
                await self._write(f"CAP REQ :{' '.join(wanted)}")
            else:
                await self._write("CAP END")
        elif sub == "ACK" and not self._registered:
            acked = line.params[-1].split()
            if "sasl" in acked:
                await self._write("AUTHENTICATE PLAIN")
            else:
                await self._write("CAP END")
        elif sub == "NAK" and not self._registered:
            await self._write("CAP END")

    async def _registration_deadline(self) -> None:
        await trio.sleep(self.settings.connect_timeout)
        if not self._registered:
            raise Disconnected("registration timed out")
        if not self.ready:  # a server that sends no end of MOTD
            await self._become_ready()

    async def _become_ready(self) -> None:
        self.ready = True
        await self.handler.on_ready()
        self._became_ready.set()
        self._poke()

    # -- taking the configured nick back --------------------------------------------------------

    def _wants_nick(self) -> bool:
        """Whether we are registered under another nick than the configured one."""
        return bool(self.state.nickname) and not self.state.is_me(self.settings.nick)

    async def _regain_nick(self) -> None:
        """
        While registered under an alternative nick, ask for the configured one back: at once
        when the nick may have become free (see :meth:`_nick_news`), else every
        ``nick_retry`` seconds. With ``MONITOR`` the server tells us when the nick is free, and
        the timer only serves after a refusal that ``MONITOR`` would not tell us the end of
        (see :meth:`_retry_later`).
        """
        await self._became_ready.wait()
        nick = self.settings.nick
        if not self._wants_nick() or self._nick_invalid:
            return
        # None: not offered; 0: no room for us; -1: no limit.
        self._monitoring = bool(self.state.isupport.monitor)
        if self._monitoring:
            how = "when MONITOR says it is free"
        elif self.settings.nick_retry > 0:
            how = f"when its holder leaves and every {self.settings.nick_retry:g}s"
        else:
            how = "when its holder is seen to leave"
        self.log.info("Nick %s is held by someone else; registered as %s, will take %s back %s",
                      nick, self.state.nickname, nick, how)  # fmt: skip
        if self._monitoring:
            # The server answers at once with 730 (online) or 731 (offline, which we try).
            self.send_priority(irctokens.build("MONITOR", ["+", nick]).format())
        while self._wants_nick() and not self._nick_invalid:
            delay = self.settings.nick_retry
            use_timer = delay > 0 and not self._monitoring
            with trio.move_on_after(delay if use_timer else math.inf) as self._nick_wait:
                await self._nick_free.wait()
            self._nick_wait = None
            self._nick_free = trio.Event()
            if self._wants_nick() and not self._nick_invalid:
                self.log.debug("Asking for nick %s", nick)
                self.send_priority(irctokens.build("NICK", [nick]).format())
        if self._monitoring:
            self.send_priority(irctokens.build("MONITOR", ["-", nick]).format())

    def _retry_later(self) -> None:
        """Make the next attempt at the latest ``nick_retry`` seconds from now (if set)."""
        if self._nick_wait is not None and self.settings.nick_retry > 0:
            latest = trio.current_time() + self.settings.nick_retry
            self._nick_wait.deadline = min(self._nick_wait.deadline, latest)

    def _nick_news(self, line: irctokens.Line) -> None:
        """
        What a line (already taken into :attr:`state`) says about the configured nick: that we
        have it back, that its holder left it, or the answer to our attempt to take it.
        """
        command, params, nick = line.command, line.params, self.settings.nick
        source = line.hostmask.nickname if line.source else ""
        fold = self.state.casefold
        if command == "NICK" and params and self.state.is_me(params[0]):
            if not self._wants_nick() and fold(source) != fold(nick):
                self.log.info("Regained nick %s (was %s)", nick, source)
                self._nick_free.set()  # ends _regain_nick
            return
        if not self._wants_nick():
            return
        if command == "QUIT" and fold(source) == fold(nick):
            self._nick_free.set()
        elif command == "NICK" and params and fold(source) == fold(nick):
            if fold(params[0]) != fold(nick):  # not just a change of case
                self._nick_free.set()
        elif command == "731" and len(params) > 1:  # RPL_MONOFFLINE: nick[,nick...]
            if any(fold(target) == fold(nick) for target in params[-1].split(",")):
                self._nick_free.set()
        elif command == "734":  # ERR_MONLISTFULL: no MONITOR for us after all
            self.log.info("MONITOR list full; trying nick %s every %gs instead", nick,
                          self.settings.nick_retry)  # fmt: skip
            self._monitoring = False
            self._retry_later()
        elif command == "432":
            # Not a nick this server accepts (too long, reserved): asking again will not help.
            self.log.info("Nick %s is not valid on this server (%s); keeping %s", nick,
                          params[-1] if params else "", self.state.nickname)  # fmt: skip
            self._nick_invalid = True
            self._nick_free.set()
        elif command in NICK_REFUSED or command in NICK_CHANGE_REFUSED:
            # Held again (someone was quicker), held by services, or the server refuses nick
            # changes for now: MONITOR tells us about a new holder leaving, not about the rest.
            self.log.debug("Nick %s still not available (%s %s)", nick, command,
                           params[-1] if params else "")  # fmt: skip
            if command != "433":
                self._retry_later()

    # -- writing ----------------------------------------------------------------------------------

    async def _write(self, line: str) -> None:
        # irctokens refuses neither line breaks nor long lines: this is the last guard before
        # the socket. A bad line is left out (and logged) rather than failing the connection,
        # which would send the same line again after the reconnect, forever.
        data = line.encode("utf-8")
        if any(ch in line for ch in "\r\n\0") or len(data) > MAX_LINE:
            self.log.warning("Not writing a line with CR, LF or NUL or over %d bytes (%d): %s",
                             MAX_LINE, len(data), redact(line[:80]))  # fmt: skip
            return
        stream = self._stream
        if stream is None:
            raise Disconnected("not connected")
        async with self._write_lock:
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug(">> %s", redact(line))
            await stream.send_all(data + b"\r\n")

    def _acknowledge(self, ack: int) -> None:
        while self._unacked and self._unacked[0].ack is not None and self._unacked[0].ack <= ack:
            self._unacked.popleft()
        self._space.set()
        self._space = trio.Event()

    async def _control_writer(self) -> None:
        # A task of its own, so that a PONG never waits for the flood-control bucket that
        # the other writer may be sleeping on.
        while True:
            if self._control:
                await self._write(self._control.popleft())
            else:
                await self._wake.wait()

    async def _writer(self) -> None:
        bucket = TokenBucket(self.settings.send_burst, self.settings.send_delay)
        unmarked = 0  # written data lines not yet followed by an acknowledging PING
        while True:
            if self._replies:
                await bucket.take()
                await self._write(self._replies.popleft())
                if not self._replies:
                    self._replies_dropped = False  # the flood is over: warn again next time
            elif self._priority:
                await bucket.take()
                await self._write(self._priority.popleft())
            elif self.ready and self._queue:
                await bucket.take()
                if not self._queue or not self.ready:
                    continue
                item = self._queue.popleft()
                self._space.set()
                self._space = trio.Event()
                self._unacked.append(item)
                if not item.reported:
                    # Before the write, which yields: the server's echo may be read straight
                    # after. Once: a line written again after a reconnect is the same message.
                    item.reported = True
                    self.handler.on_sent(item)
                await self._write(item.line)
                unmarked += 1
                if unmarked >= ACK_EVERY or not self._queue:
                    await bucket.take()
                    await self._mark_ack()
                    unmarked = 0
            else:
                await self._wake.wait()

    async def _mark_ack(self) -> None:
        ack = next(self._acks)
        for item in reversed(self._unacked):
            if item.ack is not None:
                break
            item.ack = ack
        await self._write(f"PING :immp-ack-{ack}")

    async def _keepalive(self) -> None:
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        while True:
            await trio.sleep_until(self._last_recv + interval)
            if trio.current_time() - self._last_recv < interval:
                continue
            sent = trio.current_time()
            self.send_control("PING :immp-keepalive")
            await trio.sleep(timeout)
            if self._last_recv < sent:
                raise Disconnected(f"no answer to PING in {timeout:g}s")


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
