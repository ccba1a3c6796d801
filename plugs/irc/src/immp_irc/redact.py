"""
Log redaction: what of an IRC line must not reach the log (passwords, SASL payloads, channel
keys, services logins), and control characters escaped so that a line cannot fake log output.

:func:`redact` knows the protocol's secrets and the usual services verbs. A ``perform`` line is
the operator's own and may log in with a verb it does not know (``PRIVMSG Q :LOGON user pw``):
a :class:`Redactor` is told each such line (:meth:`Redactor.keep_out`) and hides its text
wherever it appears, in the line itself and in what the server sends back (an echo of it).
"""

from __future__ import annotations

import re

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
    knows the verb, else everything after the target of a ``PRIVMSG``/``NOTICE`` to a nick
    (its text) or after the command of anything else. ``None`` for a line of one word, and for
    text to a channel (said in public, and hiding it would hide those words in every line).
    """
    line = line.translate(_LOG_ESCAPES).strip()
    start = _secret_start(line)
    if start is None:
        words = [match.group() for match in _WORD.finditer(line)]
        keep = 1
        if words and words[0].upper() in ("PRIVMSG", "NOTICE"):
            if len(words) > 1 and words[1][:1] in ("#", "&", "+", "!"):
                return None
            keep = 2
        if len(words) <= keep:
            return None
        start = [match.start() for match in _WORD.finditer(line)][keep]
    secret = line[start:]
    return secret.removeprefix(":") or None


class Redactor:
    """
    :func:`redact`, and the text of the lines it was told to keep out of the log (see the
    module docstring) replaced by ``***`` wherever it appears, in lines either way.
    """

    #: Shorter secrets are not looked for in other lines (``+i`` would hide every mode change);
    #: the line that carries one is still redacted from its command on.
    SHORTEST = 4

    def __init__(self):
        self._lines: set[str] = set()  # as given, to know them again when written
        self._secrets: list[str] = []  # longest first, so that a longer one is hidden whole

    def keep_out(self, line: str) -> None:
        """``line`` (a ``perform`` line, as it will be written) holds a secret: hide it."""
        self._lines.add(line)
        secret = perform_secret(line)
        if secret and len(secret) >= self.SHORTEST and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, line: str) -> str:
        if line in self._lines:
            secret = perform_secret(line)
            if secret is not None:
                escaped = line.translate(_LOG_ESCAPES).strip()
                return escaped[: len(escaped) - len(secret)] + "***"
        line = redact(line)
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "***")
        return line
