"""
Log redaction: what of an IRC line must not reach the log (passwords, SASL payloads, channel
keys, services logins), and control characters escaped so that a line cannot fake log output.

:func:`redact` knows the protocol's secrets and the usual services verbs. A ``perform`` line is
the operator's own and may log in with a verb it does not know (``PRIVMSG Q :LOGON user pw``):
a :class:`Redactor` is told each such line (:meth:`Redactor.keep_out`) and hides its secret
(the text of a message to a nick, the arguments of an unknown command) in the line itself and
wherever it or its last word appears again: in what the server sends back (an echo of it, a
services error quoting it) and in the warnings that quote a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Words after which a services command carries a password (``NS IDENTIFY pw``, ``PRIVMSG
# NickServ :IDENTIFY account pw``, ``PRIVMSG Q@CServe.quakenet.org :AUTH user pw``).
SECRET_VERBS = frozenset({"IDENTIFY", "ID", "LOGIN", "AUTH", "REGISTER", "GHOST", "RECOVER",
                          "RELEASE", "REGAIN", "GROUP", "PASS", "PASSWORD"})  # fmt: skip
# AUTHENTICATE arguments that are not a payload: mechanism names, "+" (empty), "*" (abort).
SASL_WORDS = frozenset({"PLAIN", "EXTERNAL", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512",
                        "+", "*"})  # fmt: skip
# Commands whose arguments are never a secret (a JOIN's keys are redact()'s): a ``perform``
# line of one of these is logged whole.
PUBLIC_COMMANDS = frozenset({"JOIN", "PART", "NICK", "AWAY", "TOPIC", "INVITE", "KICK", "WHO",
                             "WHOIS", "WHOWAS", "NAMES", "LIST", "QUIT", "PING", "PONG", "CAP",
                             "USERHOST", "ISON", "MONITOR", "SETNAME", "MOTD", "VERSION",
                             "TIME", "LUSERS", "CHATHISTORY"})  # fmt: skip
# Control characters shown escaped in the log, so a line cannot fake or hide log output.
_LOG_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127]}
_WORD = re.compile(r"\S+")


def _is_channel(target: str) -> bool:
    """``target`` names a channel, or its members of a rank (STATUSMSG ``@#chan``, ``+#chan``)."""
    return target.lstrip("@%~")[:1] in ("#", "&", "+", "!")


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
        if len(words) < 3 or _is_channel(words[1]):
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


def _secret_start(line: str) -> int | None:
    """Where the part of ``line`` that :func:`redact` hides starts (``None``: nothing)."""
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
        return None
    index = _secret_from([m.group().lstrip(":").upper() for m in matches], from_server)
    if index is None or index >= len(matches):
        return None
    return matches[index].start()


def redact(line: str) -> str:
    """
    ``line`` (incoming or outgoing, with or without tags and source) made safe to log: the
    ``PASS`` argument, SASL ``AUTHENTICATE`` payloads, the password of ``OPER``, the keys of
    our ``JOIN`` and everything after a services login verb (``IDENTIFY``, ``LOGIN``, ``AUTH``,
    ``GHOST``, ``SET PASSWORD``...) sent to a nick or as a command become ``***``; control
    characters are escaped.
    """
    line = line.translate(_LOG_ESCAPES)
    start = _secret_start(line)
    return line if start is None else line[:start] + "***"


def perform_secret(line: str) -> str | None:
    """
    What of a ``perform`` line must never be logged: what :func:`redact` would hide if it
    knows the verb, else the text of a ``PRIVMSG``/``NOTICE`` to a nick, or everything after
    the command of one it does not know (``CS``, ``HS``, a network's own services verb).
    ``None`` for a command that carries no secret (:data:`PUBLIC_COMMANDS`, ``MODE`` without
    a key), for a line of one word, and for text to a channel (said in public).
    """
    line = line.translate(_LOG_ESCAPES).strip()
    start = _secret_start(line)
    if start is None:
        words = [match.group() for match in _WORD.finditer(line)]
        command = words[0].upper() if words else ""
        keep = 1
        if command in PUBLIC_COMMANDS:
            return None
        if command == "MODE":  # only a channel key (+k key) is secret
            if len(words) < 4 or "k" not in words[2]:
                return None
            keep = 3
        elif command in ("PRIVMSG", "NOTICE"):
            if len(words) > 1 and _is_channel(words[1]):
                return None
            keep = 2
        if len(words) <= keep:
            return None
        start = [match.start() for match in _WORD.finditer(line)][keep]
    secret = line[start:]
    return secret.removeprefix(":") or None


class Redactor:
    """
    :func:`redact`, and the secrets of the lines it was told to keep out of the log (see the
    module docstring) replaced by ``***`` wherever they appear, in lines either way: the whole
    secret and its last word (``pw`` of ``LOGON user pw``, which a services reply may quote
    alone), as words, in any case.
    """

    #: Shorter secrets are not looked for in other lines (``+i`` would hide every mode change);
    #: the line that carries one is still redacted from its command on.
    SHORTEST = 4

    def __init__(self):
        self._secrets: dict[str, str | None] = {}  # line as given -> its secret, when written
        self._words: set[str] = set()  # what is looked for elsewhere, case-folded
        self._search: re.Pattern | None = None

    def keep_out(self, line: str, public: Iterable[str] = (),
                 is_channel: Callable[[str], bool] = _is_channel) -> None:  # fmt: skip
        """
        ``line`` (a ``perform`` line, as it will be written) holds a secret: hide it. Words in
        ``public`` (the bot's nicks) and channel names (by ``is_channel``, the plug's test from
        what the server announced) are hidden in ``line`` itself only, not looked for in every
        other line.
        """
        secret = self._secrets[line] = perform_secret(line)
        if not secret:
            return
        shown = {word.casefold() for word in public}
        for word in (secret, secret.split()[-1]):
            folded = word.casefold()
            if len(word) >= self.SHORTEST and folded not in shown and not is_channel(word):
                self._words.add(folded)
        if self._words:
            words = sorted(self._words, key=len, reverse=True)  # a longer one hidden whole
            alternatives = "|".join(re.escape(word) for word in words)
            self._search = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def __call__(self, line: str) -> str:
        secret = self._secrets.get(line)
        if secret is not None:
            escaped = line.translate(_LOG_ESCAPES).strip()
            return escaped[: len(escaped) - len(secret)] + "***"
        line = redact(line)
        if self._search is not None:
            line = self._search.sub("***", line)
        return line
