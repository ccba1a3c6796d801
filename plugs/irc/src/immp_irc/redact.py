"""
Log redaction: what of an IRC line must not reach the log (passwords, SASL payloads, channel
keys, services logins), and control characters escaped so that a line cannot fake log output.
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
