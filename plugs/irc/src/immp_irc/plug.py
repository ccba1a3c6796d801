"""
IRC plug: a robust IRC client (registered as ``irc``; ``immp.plug.irc.IRCPlug`` means the same).

Config: the keys of ``SCHEMA`` below, each with its type, default and ``doc``; the README's table
is generated from it (``hatch run docs``).

The plug's channels are the host's named channels on this plug whose source is an IRC channel
name (any CHANTYPES prefix), plus channels a hook sends to; one added while running is joined at
once, one removed is parted. A channel whose source is a nick is a private conversation with
that user: legal, but a source without any of the prefixes ``# & + !`` is a config warning. A
source that is no IRC name at all (a comma, which would make ``JOIN #a,0`` join two channels, a
space, a control character, a leading colon, or empty) is a config error, and one added while
running (``!channel-add``) is never joined: the plug logs an error naming it.

Message IDs: the server's ``msgid`` where it sends one (also for our own lines, with
``echo-message``); otherwise the plug's own, unique per run (see the README, "Message IDs").

User IDs: the services account name when the server tells it (account-tag, extended-join,
account-notify), otherwise ``nick!user@host``; ``nick!*@*`` when the user and host are not known
yet. Never a bare nick, so a nick change cannot take over someone's permissions.

Logging: at DEBUG every raw line read (``<< ...``) and written (``>> ...``), one record per
line, with passwords cut out (``PASS ***``; see :mod:`immp_irc.redact`), and the secrets of
``perform`` lines kept out wherever they appear.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from datetime import datetime
from typing import Any

import irctokens
import trio

import immp

from .connection import Connection, Settings
from .formatting import CTCP, balance_bidi, balance_bidi_rich, coloured, from_irc, has_bidi, scrub
from .lines import guess_mask, split_line, text_budget
from .outgoing import Outgoing, QueueFull

VERSION = "IMMP IRC plug (immp-plug-irc)"
# Emulated echoes (servers without echo-message) waiting for the host; when full, an echo is
# skipped with a warning (the host already knows the message as ours, so nothing loops).
ECHO_BUFFER = 1024
# Longest author name shown, so that a name leaves room for text in a 512-byte line.
NAME_LIMIT = 64
# Lines written, awaiting the server's echo-message copy, by (folded target, text): at most this
# many distinct ones, and this many of each (the same text sent again and again to a channel
# that refuses it); the oldest is forgotten (its echo, if it ever comes, is then a new message).
ECHOES_AWAITED = 1000
# With echo-message and message-tags, put() waits this long at most for the server's msgid of
# each line, so that the receipt is the network's own (stable) ID; under the host's echo wait.
MSGID_WAIT = 1.0
#: Seconds between two warnings that the server refuses our lines to one target (404 and the
#: like); the lines refused meanwhile are counted in the next one.
REFUSALS_REPEAT = 60.0

# Seconds: from 0 (none) to a day, which no sane delay or timeout exceeds.
SECONDS = immp.Range(immp.Number, 0, 86400)

SCHEMA = immp.Schema({
    "server": {
        immp.Required("host", doc="Server host name."): str,
        immp.Optional("port", None, doc="Server port; null: 6697 with `ssl`, else 6667."):
            immp.Nullable(immp.Range(int, 1, 65535)),
        immp.Optional("ssl", False, doc="Connect with TLS."): bool,
        immp.Optional("verify", True, doc="Verify the server's TLS certificate and host name "
                      "(turn off only explicitly)."): bool,
        immp.Optional("ca-file", None, doc="PEM file of CA certificates to trust instead of "
                      "the system's, for private servers."): immp.Nullable(str),
        immp.Optional("password", None, doc="Server password (`PASS`)."): immp.Nullable(str),
    },
    "user": {
        immp.Required("nick", doc="Nick name; alternatives within the server's NICKLEN when it "
                      "is taken, and the nick taken back when its holder leaves."): str,
        immp.Optional("real-name", None, doc="Real name (\"gecos\"); null: the nick."):
            immp.Nullable(str),
        immp.Optional("username", None, doc="User name (the USER in `nick!USER@host`); null: "
                      "the nick."): immp.Nullable(str),
    },
    immp.Optional("sasl", None, doc="`{username, password}`: log in to services with SASL "
                  "PLAIN."): immp.Nullable({"username": str, "password": str}),
    immp.Optional("sasl-required", True, doc="With `sasl` set, a failed SASL login (a wrong "
                  "password, a server without SASL PLAIN) stops the plug with a one-line error; "
                  "false: go on without the account after a warning."): bool,
    immp.Optional("perform", [], doc="Raw lines sent after each registration (e.g. a NickServ "
                  "identify on servers without SASL); line breaks are removed. Their secrets (what "
                  "follows the command, or a PRIVMSG's text to a nick) are never logged, nor "
                  "anywhere the server repeats them; see \"Debug logging\"."): [str],
    immp.Optional("quit", "Disconnecting", doc="Quit message."): str,
    immp.Optional("accept-invites", False, doc="Join channels the bot is invited to."): bool,
    immp.Optional("colour-nicks", False, doc="Colour relayed authors' names, stably per "
                  "name."): bool,
    immp.Optional("quote-reply-to", True, doc="Quote the start of the message a reply "
                  "answers."): bool,
    immp.Optional("send-delay", 0.5, doc="Seconds per line after a burst (flood control)."):
        SECONDS,
    immp.Optional("send-burst", 5, doc="Lines sent at once before `send-delay` applies."):
        immp.Range(int, 1, 1000),
    immp.Optional("queue-size", 1000, doc="Lines that may wait to be sent (e.g. while "
                  "disconnected)."): immp.Range(int, 1),
    immp.Optional("queue-timeout", 60.0, doc="Seconds a send waits for room in a full queue "
                  "before it fails with an error (never silently)."): SECONDS,
    immp.Optional("channel-keys", {}, doc="Keys of channels that need one, by channel name."):
        {str: str},
    immp.Optional("ping-interval", 60.0, doc="Seconds of silence before the bot checks the "
                  "server."): SECONDS,
    immp.Optional("ping-timeout", 30.0, doc="Seconds to wait for that check before "
                  "reconnecting."): SECONDS,
    immp.Optional("connect-timeout", 30.0, doc="Seconds to connect (TCP and TLS), and again "
                  "to register, before trying again."): immp.Range(immp.Number, 0.1, 86400),
    immp.Optional("reconnect-delay", 2.0, doc="First delay before reconnecting; doubles up to "
                  "`reconnect-max` (randomised by up to half). While the server cannot be "
                  "reached at all (refused), at most 5 seconds."): SECONDS,
    immp.Optional("reconnect-max", 300.0, doc="Longest delay between reconnection attempts."):
        SECONDS,
    immp.Optional("rejoin-delay", 5.0, doc="Seconds before rejoining a channel after a kick."):
        SECONDS,
    immp.Optional("nick-retry", 30.0, doc="While registered under an alternative nick, seconds "
                  "between attempts to take `user.nick` back (0: only when its holder is seen "
                  "to leave; with MONITOR, only after a refusal MONITOR cannot report)."):
        SECONDS,
    immp.Optional("puppet", False, doc="Accepted for IMMP configs; puppets are not supported "
                  "yet (a warning is logged)."): bool,
    immp.Optional("puppet-prefix", "", doc="Accepted for IMMP configs (see `puppet`)."): str,
})  # fmt: skip


# Channel prefixes assumed where the server's own (ISUPPORT CHANTYPES) is not known yet: at
# ``--check`` time and before registration. Every common server uses a subset of these.
KNOWN_CHANTYPES = "#&+!"


# What a source may not contain: a comma separates JOIN's targets (``#a,0`` joins ``#a`` and
# ``0``, which parts every channel on some servers), a space ends the parameter, and a control
# character (BEL, NUL, CR, LF...) is refused by servers or breaks the line.
SOURCE_RULE = "no commas, spaces or control characters"


def _source_problem(source: str) -> str | None:
    """
    What makes ``source`` no IRC channel name or nick (``has a comma``, ``is empty``), or
    ``None`` if it can be one.
    """
    if not source:
        return "is empty"
    if any(ord(c) < 32 or c == "\x7f" for c in source):
        return "has a control character"
    if "," in source:
        return "has a comma"
    if " " in source:
        return "has a space"
    if source.startswith(":"):
        return "starts with a colon"
    return None


def _checked_source(source: str) -> str:
    """``source`` if it can be an IRC channel or nick; raises ``ValueError`` saying why not."""
    problem = _source_problem(source)
    if problem:
        raise ValueError(f"{source!r} {problem}")
    return source


def _source_warning(source: str) -> str | None:
    """A channel source without a channel prefix is legal (a private chat) but rarely meant."""
    if source[:1] in KNOWN_CHANTYPES:
        return None
    return (f"{source!r} has no channel prefix ({' '.join(KNOWN_CHANTYPES)}), so it is a "
            f"private chat with whoever holds the nick {source!r}, who would get every "
            f"message; for a channel write '#{source}'")  # fmt: skip


class _Line:
    """One line of a message put() queued: our ID for it, and the server's once it echoes."""

    __slots__ = ("action", "channel", "echoed", "id", "msgid", "receipt_id", "text", "wire")

    def __init__(self, channel: immp.Channel, id: str, text: str, wire: str, action: bool):
        self.channel = channel
        self.id = id  # ours: unique, but only meaningful to this run
        self.text = text
        self.wire = wire
        self.action = action
        self.msgid: str | None = None
        self.echoed = trio.Event()
        self.receipt_id: str | None = None  # what put() returned (None while it waits)

    @property
    def final_id(self) -> str:
        """The ID hooks know this line by."""
        return self.receipt_id or self.msgid or self.id


def _valid_name(name: str) -> bool:
    return bool(name) and not name.startswith(":") and not any(c in name for c in " ,\r\n\0\x07")


def _server_time(tags: dict[str, str] | None) -> float | None:
    value = (tags or {}).get("time")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class IRCPlug(immp.Plug):
    """A connection to one IRC server; see the module docstring for its config."""

    schema = SCHEMA
    source_schema = immp.Warn(
        immp.Check(_checked_source, f"an IRC channel name or nick ({SOURCE_RULE})"),
        _source_warning,
    )
    network_name = "IRC"
    # A delivery is done when the server acknowledged its lines (PING/PONG), not when put()
    # queued them; an intent mark goes before the write (see outgoing.py).
    confirms_delivery = True

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        c = self.config
        server, user = c["server"], c["user"]
        if not _valid_name(user["nick"]):
            raise immp.ConfigError("not a valid nick", "user.nick")
        sasl = c["sasl"]
        self.connection = Connection(Settings(
            host=server["host"],
            port=server["port"] or (6697 if server["ssl"] else 6667),
            tls=server["ssl"], verify=server["verify"], ca_file=server["ca-file"],
            password=server["password"], nick=user["nick"],
            username=scrub(user["username"] or user["nick"]).replace(" ", "") or "immp",
            real_name=user["real-name"] or user["nick"],
            sasl=(sasl["username"], sasl["password"]) if sasl else None,
            sasl_required=c["sasl-required"],
            send_delay=c["send-delay"], send_burst=c["send-burst"], queue_size=c["queue-size"],
            ping_interval=c["ping-interval"], ping_timeout=c["ping-timeout"],
            reconnect_delay=c["reconnect-delay"], reconnect_max=c["reconnect-max"],
            connect_timeout=c["connect-timeout"],
            nick_retry=c["nick-retry"],
        ), self, self.log)  # fmt: skip
        self.connection.outgoing.before_write = self._intent
        self.connection.outgoing.on_acked = self._acked
        # Our own message IDs where the server gives no msgid: a per-run prefix (never reused
        # across runs, so a stored copy map cannot confuse two messages) and a counter.
        self._prefix = secrets.token_hex(3)
        self._ids = itertools.count(1)
        # Channels joined because a hook sent there or we were invited (by folded name).
        self._extra_channels: dict[str, str] = {}
        # Lines written, awaiting the server's echo-message copy, oldest first per key.
        self._awaiting_echo: immp.BoundedCache[tuple[str, str], deque[_Line]] = (
            immp.BoundedCache(ECHOES_AWAITED))  # fmt: skip
        self._echo_send: trio.MemorySendChannel | None = None
        # (folded target, text) of the perform lines that are messages, to know their echoes.
        self._perform_echoes: set[tuple[str, str]] = set()
        # Per target refusing our lines (404 in a moderated channel).
        self._refusals = immp.Throttle(REFUSALS_REPEAT)
        if c["puppet"]:
            self.log.warning("%s: puppets are not supported yet; relaying as the bot", name)

    @property
    def network_id(self) -> str:
        return f"irc:{self.config['server']['host']}"

    def _next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    # -- lifetime -------------------------------------------------------------------------------

    async def open(self):
        self._echo_send, echo_receive = trio.open_memory_channel(ECHO_BUFFER)
        self.nursery.start_soon(self._echo_worker, echo_receive)
        self.nursery.start_soon(self.connection.run)

    async def close(self):
        await self.connection.close(self.config["quit"])

    async def on_channel_added(self, channel: immp.Channel) -> None:
        """A named channel added while running is joined at once (or at the next registration)."""
        if channel.plug is not self:
            return
        if not self._joinable(channel.source):
            self._refuse_source(channel)
            return
        if not self._is_channel_name(channel.source):
            return
        if self.connection.ready and not self._state.has_channel(channel.source):
            self.log.info("Channel %s added; joining", channel.source)
            self._join(channel.source)

    async def on_channel_removed(self, channel: immp.Channel) -> None:
        """A named channel removed while running is parted, unless something still uses it."""
        if channel.plug is not self or not self._is_channel_name(channel.source):
            return
        folded = self._fold(channel.source)
        self._extra_channels.pop(folded, None)
        if folded in self._configured_channels():
            return  # another named channel stands for the same IRC channel
        if self.connection.ready and self._state.has_channel(channel.source):
            self.log.info("Channel %s removed; leaving", channel.source)
            part = irctokens.build("PART", [channel.source]).format()
            self.connection.outgoing.send_priority(part)

    async def _echo_worker(self, receive: trio.MemoryReceiveChannel) -> None:
        async with receive:
            async for sent in receive:
                await self.queue(sent)

    # -- state helpers --------------------------------------------------------------------------

    @property
    def _state(self):
        return self.connection.state

    def _fold(self, name: str) -> str:
        return self._state.casefold(name)

    def _is_channel_name(self, name: str) -> bool:
        return name[:1] in (self._state.isupport.chantypes or ["#", "&"])

    def _joinable(self, source: str) -> bool:
        return _source_problem(source) is None

    def _refuse_source(self, channel: immp.Channel) -> None:
        """Say that a named channel's source is no IRC name, so it is never joined."""
        name = self.host.named_channel(channel) if self.host else None
        self.log.error("channels.%s.source: %r is not an IRC channel name or nick (it %s; %s); "
                       "not joining it", name or "?", channel.source,
                       _source_problem(channel.source), SOURCE_RULE)  # fmt: skip

    def _configured_channels(self) -> dict[str, str]:
        """Folded name -> source of every channel the plug should be in."""
        out = {}
        for channel in self.host.channels.values() if self.host else ():
            source = channel.source
            if channel.plug is self and self._joinable(source) and self._is_channel_name(source):
                out[self._fold(source)] = source
        out.update(self._extra_channels)
        return out

    def _channel(self, name: str) -> immp.Channel:
        """The channel for a name as the server spells it, spelled as configured if it is."""
        return immp.Channel(self, self._configured_channels().get(self._fold(name), name))

    def _user(self, nick: str, username: str | None = None, hostname: str | None = None,
              account: str | None = None) -> immp.User:  # fmt: skip
        known = self._state.users.get(self._fold(nick))
        if known is not None:
            username = username or known.username
            hostname = hostname or known.hostname
            account = account or known.account
        if self._state.is_me(nick):
            username = username or self._state.username
            hostname = hostname or self._state.hostname
            account = account or self._state.account
        ident = account or f"{nick}!{username or '*'}@{hostname or '*'}"
        return immp.User(id=ident, plug=self, username=nick, raw=known)

    def _line_user(self, line: irctokens.Line) -> immp.User:
        mask = line.hostmask
        account = (line.tags or {}).get("account") or None
        return self._user(mask.nickname, mask.username, mask.hostname, account)

    def _own_mask(self) -> str:
        state = self._state
        if self.connection.ready and state.username and state.hostname:
            return f"{state.nickname}!{state.username}@{state.hostname}"
        # Unknown while disconnected: allow for a longer alternative nick and any user/host.
        nick = state.nickname or self.config["user"]["nick"]
        return guess_mask(nick + "__", None, None)

    # -- the connection's handler contract ------------------------------------------------------

    async def on_ready(self) -> None:
        user = self.config["user"]
        public = [user["nick"], self._state.nickname or "", user["username"] or "",
                  *self._configured_channels().values()]  # fmt: skip
        statusmsg = "".join(self._state.isupport.statusmsg or [])

        def is_channel(word: str) -> bool:  # a channel, or its members of a rank (@#chan)
            return self._is_channel_name(word.lstrip(statusmsg))

        lines = [text for text in (scrub(raw).strip() for raw in self.config["perform"]) if text]
        # The operator's own lines, often a services login: their text is never logged, and
        # their echoes (echo-message) are no messages for the hooks.
        self._perform_echoes = {key for key in map(self._message_key, lines) if key is not None}
        for line in lines:
            self.connection.redact.keep_out(line, public, is_channel)
            self.connection.outgoing.send_priority(line)
        for source in self._configured_channels().values():
            self._join(source)
        if self.connection.registrations == 1:
            self._warn_about_sources()

    def _warn_about_sources(self) -> None:
        """
        A named channel whose prefix this server does not take is a nick here, and one whose
        source is no IRC name is not joined (a host built without a config file can have one):
        say so once.
        """
        chantypes = "".join(self._state.isupport.chantypes or [])
        for name, channel in self.host.channels.items() if self.host else ():
            source = channel.source
            if channel.plug is not self:
                continue
            if not self._joinable(source):
                self._refuse_source(channel)
            elif source[:1] in KNOWN_CHANTYPES:
                if not self._is_channel_name(source):
                    self.log.warning("Channel %s: %r is not a channel on this server (its "
                                     "prefixes are %s), so it is a private chat with the nick "
                                     "%r", name, source, chantypes, source)  # fmt: skip

    def _join(self, source: str) -> None:
        key = self.config["channel-keys"].get(source)
        params = [source, scrub(key)] if key else [source]
        self.connection.outgoing.send_priority(irctokens.build("JOIN", params).format())

    def on_link(self, connected: bool, reason: str | None) -> None:
        """The link to the server went down (``reason``) or is registered again."""
        report = getattr(self, "connection_changed", None)  # the host's, where it has one
        if report is not None:
            report(connected, reason)

    def on_sent(self, item: Outgoing) -> None:
        if item.meta is None:
            return
        line: _Line = item.meta
        if "echo-message" in self._state.agreed_caps:
            # The server echoes the line as written, CTCP wrapping and all.
            key = (self._fold(line.channel.source), line.wire)
            waiting = self._awaiting_echo.get(key)
            if waiting is None:
                waiting = self._awaiting_echo[key] = deque(maxlen=ECHOES_AWAITED)
            waiting.append(line)
            return
        line.echoed.set()  # no echo will come: put() need not wait for one
        # No echo-message: show hooks what we posted, under the ID put() returned.
        sent = immp.SentMessage(line.final_id, line.channel, text=from_irc(line.text),
                                user=self._self_user(), action=line.action)  # fmt: skip
        try:
            self._echo_send.send_nowait(sent)
        except trio.WouldBlock:
            self.log.warning("Echo buffer full; not showing hooks our own line %r",
                             line.text[:80])  # fmt: skip

    def _self_user(self) -> immp.User:
        return self._user(self._state.nickname or self.config["user"]["nick"])

    def prepare(self, line: irctokens.Line) -> Any:
        """What the state knows before it takes in ``line``: who leaves which channels."""
        if line.command in ("QUIT", "NICK") and line.source:
            nick = line.hostmask.nickname
            if self._state.is_me(nick):
                return None
            known = self._state.users.get(self._fold(nick))
            user = self._line_user(line)
            channels = [self._state.channels[c].name for c in known.channels] if known else []
            return user, channels
        if line.command == "KICK" and len(line.params) >= 2:
            return self._user(line.params[1])
        return None

    async def handle(self, line: irctokens.Line, prepared: Any) -> None:
        command = line.command
        if command in ("PRIVMSG", "NOTICE") and len(line.params) >= 2:
            await self._on_message(line)
        elif command == "JOIN" and line.params and line.source:
            if self._state.is_me(line.hostmask.nickname):
                self.log.info("Joined %s", line.params[0])
                who = irctokens.build("WHO", [line.params[0]]).format()
                self.connection.outgoing.send_priority(who)
            else:
                await self._event(line, line.params[0], joined=[self._line_user(line)])
        elif command == "PART" and line.params and line.source:
            if not self._state.is_me(line.hostmask.nickname):
                await self._event(line, line.params[0], left=[self._line_user(line)])
        elif command == "KICK" and len(line.params) >= 2 and line.source:
            await self._event(line, line.params[0], left=[prepared], user=self._line_user(line))
            if self._state.is_me(line.params[1]):
                self.log.warning("Kicked from %s by %s: %s", line.params[0],
                                 line.hostmask.nickname, line.params[-1])  # fmt: skip
                self.nursery.start_soon(self._rejoin, line.params[0])
        elif command == "QUIT" and prepared:
            user, channels = prepared
            for name in channels:
                await self._event(line, name, left=[user])
        elif command == "NICK" and prepared and line.params:
            user, channels = prepared
            text = immp.RichText([immp.Segment(f"is now known as {line.params[0]}")])
            for name in channels:
                await self._event(line, name, user=user, text=text, action=True)
        elif command == "TOPIC" and len(line.params) >= 2 and line.source:
            await self._event(line, line.params[0], user=self._line_user(line),
                              title=line.params[1])  # fmt: skip
        elif command == "INVITE" and len(line.params) >= 2 and line.source:
            invited = line.params[1]
            if (self.config["accept-invites"] and self._is_channel_name(invited)
                    and self._joinable(invited)):  # fmt: skip
                self.log.info("Invited to %s by %s; joining", invited,
                              line.hostmask.nickname)  # fmt: skip
                self._extra_channels[self._fold(invited)] = invited
                self._join(invited)
        elif command == "474" and len(line.params) >= 2:
            self.log.warning("Banned from %s; not rejoining", line.params[1])
            self._extra_channels.pop(self._fold(line.params[1]), None)
        elif command in ("403", "405", "471", "473", "475", "476", "477") and len(line.params) >= 2:
            self.log.warning("Cannot join %s: %s", line.params[1], line.params[-1])
        elif command in ("401", "404", "442") and len(line.params) >= 2:
            self._refused(line.params[1], line.params[-1])

    def _refused(self, target: str, reason: str) -> None:
        # Said once per target and REFUSALS_REPEAT seconds, with the count since: a moderated
        # channel refuses every bridged line, which made one warning per line.
        held = self._refusals.due(self._fold(target), trio.current_time())
        if held is None:
            return
        more = f" ({held} more lines refused since it was said)" if held else ""
        self.log.warning("Cannot send to %s: %s%s", target, reason, more)

    async def _event(self, line: irctokens.Line, channel_name: str, **fields) -> None:
        if not self._is_channel_name(channel_name):
            return
        ident = (line.tags or {}).get("msgid") or self._next_id()
        sent = immp.SentMessage(ident, self._channel(channel_name), at=_server_time(line.tags),
                                raw=line, **fields)  # fmt: skip
        await self.queue(sent)

    async def _rejoin(self, channel: str) -> None:
        await trio.sleep(self.config["rejoin-delay"])
        if self._fold(channel) in self._configured_channels() and self.connection.ready:
            if not self._state.has_channel(channel):
                self._join(channel)

    async def _on_message(self, line: irctokens.Line) -> None:
        if not line.source or "!" not in line.source:
            return  # server notices
        nick = line.hostmask.nickname
        target, text = line.params[0], line.params[1]
        target = target.lstrip("".join(self._state.isupport.statusmsg or []))
        own = self._state.is_me(nick)
        if own and (self._fold(target), line.params[1]) in self._perform_echoes:
            return  # a perform line of ours, not a message put() sent
        action = False
        if text.startswith(CTCP):
            verb, _, args = text.strip(CTCP).partition(" ")
            if verb.upper() == "ACTION":
                action, text = True, args
            else:
                if line.command == "PRIVMSG" and not own:
                    self._ctcp_reply(nick, verb.upper(), args)
                return
        if self._is_channel_name(target):
            channel = self._channel(target)
        else:
            # A private conversation is known by the other person's nick.
            channel = immp.Channel(self, target if own else nick)
        msgid = (line.tags or {}).get("msgid") or None
        ident = None
        if own:
            ident = self._echo_id(target, line.params[1], msgid)
        ident = ident or msgid or self._next_id()
        user = self._line_user(line)
        sent = immp.SentMessage(ident, channel, at=_server_time(line.tags), text=from_irc(text),
                                user=user, action=action, raw=line)  # fmt: skip
        await self.queue(sent)

    def _message_key(self, line: str) -> tuple[str, str] | None:
        """(folded target, text) of a PRIVMSG or NOTICE line as written, as its echo has them."""
        try:
            parsed = irctokens.tokenise(line)
        except ValueError:
            return None
        if parsed.command not in ("PRIVMSG", "NOTICE") or len(parsed.params) < 2:
            return None
        target = parsed.params[0].lstrip("".join(self._state.isupport.statusmsg or []))
        return self._fold(target), parsed.params[1]

    def _echo_id(self, target: str, text: str, msgid: str | None) -> str | None:
        """The ID of our own line echoed back: the server's msgid if put() is still waiting."""
        key = (self._fold(target), text)
        waiting = self._awaiting_echo.get(key)
        if not waiting:
            return None
        sent = waiting.popleft()
        if not waiting:
            del self._awaiting_echo[key]
        if sent.receipt_id is None:
            sent.msgid = msgid
        sent.echoed.set()
        return sent.final_id

    def _ctcp_reply(self, nick: str, verb: str, args: str) -> None:
        if verb == "VERSION":
            reply = f"{CTCP}VERSION {VERSION}{CTCP}"
        elif verb == "PING":
            reply = f"{CTCP}PING {scrub(args)[:64]}{CTCP}"
        else:
            return
        if not _valid_name(nick) or len(nick.encode("utf-8")) > NAME_LIMIT:
            return  # no nick a server hands out; nothing to answer
        # Under flood control; dropped (and logged once) when many wait: see send_reply.
        self.connection.outgoing.send_reply(irctokens.build("NOTICE", [nick, reply]).format())

    # -- sending --------------------------------------------------------------------------------

    def queued(self) -> int:
        """Lines waiting to be written, or written and not yet acknowledged by the server."""
        return self.connection.outgoing.pending

    async def put(self, channel: immp.Channel, msg: immp.Message) -> list[immp.Receipt]:
        target = channel.source
        problem = _source_problem(target)
        if problem:
            raise immp.PlugError(f"{self.name}: {target!r} is not an IRC channel or nick "
                                 f"(it {problem})")  # fmt: skip
        if isinstance(msg, immp.SentMessage) and msg.deleted:
            self.host.journal.delivered(msg.key)
            return []
        if self._is_channel_name(target) and self._fold(target) not in self._configured_channels():
            self._extra_channels[self._fold(target)] = target
            if self.connection.ready:
                self._join(target)
        items, lines = [], []
        for text, ctcp_action in self._lines(target, msg):
            wire = f"{CTCP}ACTION {text}{CTCP}" if ctcp_action else text
            line = _Line(channel, self._next_id(), text, wire, ctcp_action)
            lines.append(line)
            items.append(Outgoing(irctokens.build("PRIVMSG", [target, wire]).format(),
                                  meta=line))  # fmt: skip
        if not items:
            self.host.journal.delivered(msg.key)
            return []  # nothing to show on IRC (e.g. only control characters): nothing sent
        if msg.key is not None:
            items[0].intent = items[-1].done = msg.key
        # Where the server will tag our lines' echoes with its own msgid, and they go out at once
        # (connected, no backlog), wait a moment for those: the network's IDs outlive this run.
        caps = self._state.agreed_caps
        wait = (
            self.connection.ready
            and "echo-message" in caps
            and "message-tags" in caps
            and self.connection.outgoing.pending + len(items) <= self.config["send-burst"]
        )
        try:
            await self.connection.outgoing.send(items, self.config["queue-timeout"])
        except QueueFull as exc:
            raise immp.PlugError(f"{self.name}: message to {target} not sent, the outgoing "
                                 f"queue stayed full ({exc})")  # fmt: skip
        if wait:
            with trio.move_on_after(MSGID_WAIT):
                for line in lines:
                    await line.echoed.wait()
        receipts = []
        for line in lines:
            line.receipt_id = line.final_id  # from now on, its echo has this ID too
            receipts.append(immp.Receipt(line.receipt_id, channel))
        return receipts

    async def _intent(self, item: Outgoing) -> None:
        # Durable before the write: after a crash the line is known to be in doubt, never taken
        # for one that was not written (which would be sent again: a duplicate).
        self.host.journal.writing(item.intent)
        await self.host.journal.flush()

    def _acked(self, item: Outgoing) -> None:
        self.host.journal.delivered(item.done)

    def _lines(self, target: str, msg: immp.Message) -> list[tuple[str, bool]]:
        """
        The message as ``(IRC text, whether a CTCP ACTION)`` lines, each within budget. The
        author's name, a reply's quote, the text and each line as a whole close the bidi
        controls they open (see :func:`~immp_irc.formatting.balance_bidi`): no part, and no
        line, can change how the rest is shown.
        """
        body = self._body(msg)
        name = scrub(msg.user.name or "")[:NAME_LIMIT].strip() if msg.user else ""
        name = balance_bidi(name)
        ctcp_action = bool(msg.action and not name and msg.text)
        prefix = ""
        if name and (msg.text or msg.attachments):
            shown = coloured(name) if self.config["colour-nicks"] else name
            prefix = f"* {shown} " if msg.action else f"<{shown}> "
        budget = text_budget(self._own_mask(), "PRIVMSG", target, action=ctcp_action)
        budget -= len(prefix.encode("utf-8"))
        out = []
        for line in body.lines():
            for piece in split_line(line, budget):
                out.append((prefix + piece, ctcp_action))
        return out

    def _body(self, msg: immp.Message) -> immp.RichText:
        """The message without its author, its text and a reply's quote each bidi-balanced."""
        quote = self.config["quote-reply-to"]
        text = balance_bidi_rich(msg.text) if msg.text else msg.text
        if text is not msg.text:  # so that an " (edited)" after it shows as written
            msg = immp.Message.copy_of(msg, text=text)
        body = msg.render(name=False, quote_reply=quote)
        reply_to = msg.reply_to
        if (quote and isinstance(reply_to, immp.Message) and reply_to.text
                and has_bidi(str(body))):  # fmt: skip
            # The quote comes first; what someone else wrote must not turn the answer around.
            unquoted = msg.render(name=False)
            start = len(body) - len(unquoted)
            quoted = body[:start]
            balanced = balance_bidi_rich(quoted)
            if balanced is not quoted and str(body[start:]) == str(unquoted):
                body = balanced + body[start:]
        return body

    # -- channels and users ---------------------------------------------------------------------

    async def user_from_id(self, id: str) -> immp.User | None:
        if "!" in id:
            nick = id.partition("!")[0]
            user = self._user(nick)
            return user if user.id == id else immp.User(id=id, plug=self, username=nick)
        for known in self._state.users.values():
            if known.account == id:
                return self._user(known.nickname)
        return None

    async def user_from_username(self, username: str) -> immp.User | None:
        known = self._state.users.get(self._fold(username))
        if known is None and not self._state.is_me(username):
            return None
        return self._user(known.nickname if known else username)

    async def user_is_system(self, user: immp.User) -> bool:
        if user.username and self._state.nickname and self._state.is_me(user.username):
            return True
        return user == self._self_user()

    async def public_channels(self) -> list[immp.Channel]:
        return [self._channel(c.name) for c in self._state.channels.values()]

    async def private_channels(self) -> list[immp.Channel] | None:
        return None

    async def channel_for_user(self, user: immp.User) -> immp.Channel | None:
        return immp.Channel(self, user.username) if user.username else None

    async def channel_is_private(self, channel: immp.Channel) -> bool:
        return not self._is_channel_name(channel.source)

    async def channel_title(self, channel: immp.Channel) -> str | None:
        if not self._is_channel_name(channel.source):
            return channel.source
        state = self._state.get_channel(channel.source)
        return state.topic if state else None

    async def channel_members(self, channel: immp.Channel) -> list[immp.User] | None:
        if not self._is_channel_name(channel.source):
            return [self._self_user(), self._user(channel.source)]
        state = self._state.get_channel(channel.source)
        if state is None:
            return None
        return [self._user(member.nickname) for member in state.users.values()]

    async def channel_admins(self, channel: immp.Channel) -> list[immp.User] | None:
        state = self._state.get_channel(channel.source)
        if state is None:
            return None
        # Half-ops and above: founders (q), admins (a), ops (o), half-ops (h).
        return [self._user(member.nickname) for member in state.users.values()
                if member.modes & {"q", "a", "o", "h"}]  # fmt: skip
