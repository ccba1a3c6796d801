"""
Registering one connection: ``PASS``, ``CAP LS 302`` and the capabilities we want, SASL PLAIN,
``NICK``/``USER`` with alternatives while the nick is taken, up to the end of the MOTD.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable

import ircstates
import irctokens

import immp

from .formatting import scrub
from .nick import NICK_REFUSED, RFC_NICKLEN, alternative_nick

# Capabilities asked for when the server offers them; everything works without any of them.
WANTED_CAPS = ("server-time", "message-tags", "echo-message", "account-tag", "extended-join",
               "multi-prefix", "account-notify")  # fmt: skip
# SASL numerics that end the exchange without a login: 902 ERR_NICKLOCKED, 904 ERR_SASLFAIL,
# 905 ERR_SASLTOOLONG, 906 ERR_SASLABORTED (908 RPL_SASLMECHS only lists mechanisms).
SASL_FAILED = frozenset({"902", "904", "905", "906"})


class SASLFailed(immp.PlugError):
    """SASL was required (``sasl-required``) and the server did not log us in."""


class Registration:
    """
    The registration of one session (a new connection gets a new one). :meth:`opening` gives
    the first lines to write; :meth:`handle` takes every line the server sends until
    :attr:`done`, writing answers with ``write``.
    """

    def __init__(self, *, nick: str, username: str, real_name: str, password: str | None,
                 sasl: tuple[str, str] | None, sasl_required: bool, state: ircstates.Server,
                 write: Callable[[str], Awaitable[None]], log: logging.Logger):  # fmt: skip
        self.nick = nick
        self.username = username
        self.real_name = real_name
        self.password = password
        self.sasl = sasl
        self.sasl_required = sasl_required
        self.state = state
        self.write = write
        self.log = log
        #: The server sent ``001``: we are registered.
        self.registered = False
        #: The server sent the end of its MOTD (or registration is taken as done without it).
        self.done = False
        #: The first nick asked for was refused as erroneous (432): never ask for it again.
        self.nick_invalid = False
        self._sasl_over = sasl is None  # logged in, or gone on without it
        self._attempt = 0
        # The nick last asked for, and the longest nick the server is known to take (None until
        # it says; ISUPPORT NICKLEN only comes after registration).
        self._tried = nick
        self._limit: int | None = None

    def opening(self) -> list[str]:
        """The lines that start registration, in order."""
        lines = []
        if self.password:
            lines.append(irctokens.build("PASS", [scrub(self.password)]).format())
        lines.append("CAP LS 302")
        lines.append(irctokens.build("NICK", [self.nick]).format())
        real_name = scrub(self.real_name) or self.nick
        lines.append(irctokens.build("USER", [self.username, "0", "*", real_name]).format())
        return lines

    async def handle(self, line: irctokens.Line) -> None:
        """
        Take in one line (already taken into the state). Raises :class:`SASLFailed` when SASL
        is required and cannot succeed on this server.
        """
        command, params = line.command, line.params
        if command == "CAP" and len(params) >= 3:
            await self._cap(line)
        elif command == "AUTHENTICATE" and params == ["+"] and self.sasl:
            user, password = self.sasl
            payload = base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode()
            chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
            if not chunks or len(chunks[-1]) == 400:
                chunks.append("+")
            for chunk in chunks:
                await self.write(f"AUTHENTICATE {chunk}")
        elif command in ("903", "907"):
            self.log.info("SASL authentication succeeded")
            self._sasl_over = True
            await self.write("CAP END")
        elif command in SASL_FAILED and not self._sasl_over:
            await self._without_sasl(f"{command} {params[-1] if params else ''}".strip())
            await self.write("CAP END")
        elif command in NICK_REFUSED and not self.registered:
            await self._try_another_nick(command, params)
        elif command == "001":
            if not self._sasl_over:  # a server that ignored CAP LS: no SASL here
                await self._without_sasl("the server does not negotiate capabilities")
            self.registered = True
            self.log.info("Registered as %s", self.state.nickname)
        elif command in ("376", "422") and self.registered:
            self.done = True

    async def _without_sasl(self, why: str) -> None:
        """SASL cannot log us in: stop if it is required, else go on without it (a warning)."""
        self._sasl_over = True
        user = self.sasl[0] if self.sasl else ""
        if self.sasl_required:
            raise SASLFailed(f"SASL login as {user} failed ({why}); not going on without it "
                             "(sasl-required)")  # fmt: skip
        self.log.warning("SASL login as %s failed (%s); going on without it", user, why)

    async def _cap(self, line: irctokens.Line) -> None:
        sub = line.params[1].upper()
        if sub == "LS" and line.params[2] != "*":
            offered = self.state.available_caps
            wanted = [cap for cap in WANTED_CAPS if cap in offered]
            if self.sasl and "sasl" in offered:
                mechanisms = offered["sasl"]
                if not mechanisms or "PLAIN" in mechanisms.upper().split(","):
                    wanted.append("sasl")
                else:
                    await self._without_sasl(f"the server offers no SASL PLAIN, only {mechanisms}")
            elif self.sasl:
                await self._without_sasl("the server offers no SASL")
            if wanted:
                await self.write(f"CAP REQ :{' '.join(wanted)}")
            else:
                await self.write("CAP END")
        elif sub == "ACK" and not self.registered:
            if "sasl" in line.params[-1].split():
                await self.write("AUTHENTICATE PLAIN")
            else:
                await self.write("CAP END")
        elif sub == "NAK" and not self.registered:
            if "sasl" in line.params[-1].split() and not self._sasl_over:
                await self._without_sasl("the server refused the sasl capability")
            await self.write("CAP END")

    async def _try_another_nick(self, command: str, params: list[str]) -> None:
        """
        The nick we asked for while registering was refused: ask for the next alternative. The
        server's NICKLEN is not known yet (ISUPPORT comes after registration), so the
        alternative keeps the whole nick, and is cut only as far as the server shows it must
        be: to the length of the nick it echoes back (servers that truncate), or one shorter
        after each ``432`` for a nick longer than the 9 characters every server takes.
        """
        tried, echoed = self._tried, params[1] if len(params) > 2 else self._tried
        bounds = [self._limit] if self._limit is not None else []
        if len(echoed) < len(tried):
            bounds.append(len(echoed))
        # Erroneous and longer than every server takes: most likely too long.
        too_long = command == "432" and len(tried) > RFC_NICKLEN
        if too_long:
            bounds.append(len(tried) - 1)
        if command == "432" and self._attempt == 0:
            self.nick_invalid = True  # not a nick this server takes: never ask again
        if not too_long or self._attempt == 0:
            self._attempt += 1  # else the same alternative again, shorter
        self._limit = min(bounds, default=None)
        nick = alternative_nick(self.nick, self._attempt, self._limit)
        self.log.info("Nick %s is not available (%s), trying %s", echoed, command, nick)
        self._tried = nick
        await self.write(irctokens.build("NICK", [nick]).format())
