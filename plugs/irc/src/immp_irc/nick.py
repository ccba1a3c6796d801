"""
Nicks: the alternatives tried while the configured nick is taken, and taking the configured nick
back once registered under an alternative.

Registered under an alternative nick, the connection asks for the configured nick back: at once
when it sees the holder leave (a ``QUIT``, or a ``NICK`` away from it, in a shared channel; or
``731 RPL_MONOFFLINE`` where the server offers ``MONITOR``), and otherwise every ``nick-retry``
seconds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import ircstates
import irctokens
import trio

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


def alternative_nick(nick: str, attempt: int, nicklen: int | None = None) -> str:
    """
    The ``attempt``-th (from 1) alternative to ``nick``, cut to fit in ``nicklen`` (``None``:
    not known, so not cut).
    """
    suffix = "_" * attempt if attempt <= 2 else str(attempt)
    if nicklen is None:
        return nick + suffix
    return nick[: max(1, nicklen - len(suffix))] + suffix


class NickRegain:
    """
    Taking the configured nick back, for one session (a new connection gets a new one). Run
    :meth:`run` in the session's nursery; feed it every line after registration with
    :meth:`news` (after the state has taken the line in).
    """

    def __init__(self, nick: str, retry: float, state: ircstates.Server,
                 send: Callable[[str], None], log: logging.Logger):  # fmt: skip
        self.nick = nick
        self.retry = retry
        self.state = state
        self.send = send  # queues a line ahead of data lines, flood-controlled
        self.log = log
        #: The server refused the nick itself (432): asking again will not help.
        self.invalid = False
        self._ready = trio.Event()
        self._free = trio.Event()  # set when the nick may be free: try now
        self._monitoring = False  # the server tells us (MONITOR) when the nick's holder leaves
        self._wait: trio.CancelScope | None = None  # the wait for the next attempt

    def start(self, invalid: bool = False) -> None:
        """
        Registration is done (and joins queued): start asking, if the nick is not ours.
        ``invalid``: the server refused the configured nick as erroneous while registering.
        """
        self.invalid = self.invalid or invalid
        self._ready.set()

    def _wants_nick(self) -> bool:
        """Whether we are registered under another nick than the configured one."""
        return bool(self.state.nickname) and not self.state.is_me(self.nick)

    async def run(self) -> None:
        """
        While registered under an alternative nick, ask for the configured one back: at once
        when the nick may have become free (see :meth:`news`), else every ``retry`` seconds.
        With ``MONITOR`` the server tells us when the nick is free, and the timer only serves
        after a refusal that ``MONITOR`` would not tell us the end of (see
        :meth:`_retry_later`). Returns once the nick is ours or cannot be.
        """
        await self._ready.wait()
        nick = self.nick
        if not self._wants_nick() or self.invalid:
            return
        # None: not offered; 0: no room for us; -1: no limit.
        self._monitoring = bool(self.state.isupport.monitor)
        if self._monitoring:
            how = "when MONITOR says it is free"
        elif self.retry > 0:
            how = f"when its holder leaves and every {self.retry:g}s"
        else:
            how = "when its holder is seen to leave"
        self.log.info("Nick %s is held by someone else; registered as %s, will take %s back %s",
                      nick, self.state.nickname, nick, how)  # fmt: skip
        if self._monitoring:
            # The server answers at once with 730 (online) or 731 (offline, which we try).
            self.send(irctokens.build("MONITOR", ["+", nick]).format())
        while self._wants_nick() and not self.invalid:
            use_timer = self.retry > 0 and not self._monitoring
            with trio.move_on_after(self.retry if use_timer else math.inf) as self._wait:
                await self._free.wait()
            self._wait = None
            self._free = trio.Event()
            if self._wants_nick() and not self.invalid:
                self.log.debug("Asking for nick %s", nick)
                self.send(irctokens.build("NICK", [nick]).format())
        if self._monitoring:
            self.send(irctokens.build("MONITOR", ["-", nick]).format())

    def _retry_later(self) -> None:
        """Make the next attempt at the latest ``retry`` seconds from now (if set)."""
        if self._wait is not None and self.retry > 0:
            latest = trio.current_time() + self.retry
            self._wait.deadline = min(self._wait.deadline, latest)

    def news(self, line: irctokens.Line) -> None:
        """
        What a line (already taken into the state) says about the configured nick: that we
        have it back, that its holder left it, or the answer to our attempt to take it.
        """
        if not self._ready.is_set() or line.command not in NICK_NEWS:
            return
        command, params, nick = line.command, line.params, self.nick
        source = line.hostmask.nickname if line.source else ""
        fold = self.state.casefold
        if command == "NICK" and params and self.state.is_me(params[0]):
            if not self._wants_nick() and fold(source) != fold(nick):
                self.log.info("Regained nick %s (was %s)", nick, source)
                self._free.set()  # ends run()
            return
        if not self._wants_nick():
            return
        if command == "QUIT" and fold(source) == fold(nick):
            self._free.set()
        elif command == "NICK" and params and fold(source) == fold(nick):
            if fold(params[0]) != fold(nick):  # not just a change of case
                self._free.set()
        elif command == "731" and len(params) > 1:  # RPL_MONOFFLINE: nick[,nick...]
            if any(fold(target) == fold(nick) for target in params[-1].split(",")):
                self._free.set()
        elif command == "734":  # ERR_MONLISTFULL: no MONITOR for us after all
            self.log.info("MONITOR list full; trying nick %s every %gs instead", nick,
                          self.retry)  # fmt: skip
            self._monitoring = False
            self._retry_later()
        elif command == "432":
            # Not a nick this server accepts (too long, reserved): asking again will not help.
            self.log.info("Nick %s is not valid on this server (%s); keeping %s", nick,
                          params[-1] if params else "", self.state.nickname)  # fmt: skip
            self.invalid = True
            self._free.set()
        elif command in NICK_REFUSED or command in NICK_CHANGE_REFUSED:
            # Held again (someone was quicker), held by services, or the server refuses nick
            # changes for now: MONITOR tells us about a new holder leaving, not about the rest.
            self.log.debug("Nick %s still not available (%s %s)", nick, command,
                           params[-1] if params else "")  # fmt: skip
            if command != "433":
                self._retry_later()
