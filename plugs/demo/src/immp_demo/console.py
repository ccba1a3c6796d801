"""How the demo console shows a message in a terminal."""

from __future__ import annotations

import immp

_STYLES = (("bold", "1"), ("italic", "3"), ("underline", "4"), ("strike", "9"), ("code", "2"),
           ("pre", "2"))  # fmt: skip


def _styled(rich: immp.RichText, color: bool) -> str:
    out = []
    for seg in rich:
        text = seg.text
        if seg.link and seg.link != text:
            text = f"{text} <{seg.link}>"
        codes = [code for attr, code in _STYLES if getattr(seg, attr)]
        if color and codes:
            text = f"\x1b[{';'.join(codes)}m{text}\x1b[0m"
        out.append(text)
    return "".join(out)


def render(msg: immp.Message, *, color: bool = False) -> str:
    """
    One message as terminal text: ``<name> text``, ``* name text`` for actions, joins, parts
    and renames in words, ``(edited)`` and ``(deleted)`` marks; ANSI styles for bold, italic,
    underline, strike and code when ``color``.
    """
    if isinstance(msg, immp.SentMessage) and msg.deleted:
        return f"(message {msg.id} deleted)"
    text = _styled(msg.render(), color)
    # Control characters from other networks must not drive the terminal.
    return "".join(ch if ch >= " " or ch in "\n\x1b" and color else _visible(ch) for ch in text)


def _visible(ch: str) -> str:
    return "\n" if ch == "\n" else f"\\x{ord(ch):02x}"
