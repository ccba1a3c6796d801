"""How the demo console shows a message in a terminal."""

from __future__ import annotations

import unicodedata

import immp

_STYLES = (("bold", "1"), ("italic", "3"), ("underline", "4"), ("strike", "9"), ("code", "2"),
           ("pre", "2"))  # fmt: skip


def _safe(text: str) -> str:
    """
    ``text`` with every control character but newline and tab shown as ``\\xNN``: text from
    other networks must never drive the terminal (clear it, move the cursor, retitle it). This
    covers C0 controls and ESC, DEL and the 8-bit C1 controls (U+009B is a CSI of its own).
    """
    return "".join(f"\\x{ord(ch):02x}" if ch not in "\n\t" and unicodedata.category(ch) == "Cc"
                   else ch for ch in text)  # fmt: skip


def _styled(rich: immp.RichText, color: bool) -> str:
    out = []
    for seg in rich:
        text = _safe(seg.text)
        if seg.link and seg.link != seg.text:
            text = f"{text} <{_safe(seg.link)}>"
        codes = [code for attr, code in _STYLES if getattr(seg, attr)]
        # Only these escapes, made here, ever reach the terminal.
        if color and codes:
            text = f"\x1b[{';'.join(codes)}m{text}\x1b[0m"
        out.append(text)
    return "".join(out)


def render(msg: immp.Message, *, color: bool = False) -> str:
    """
    One message as terminal text: ``<name> text``, ``* name text`` for actions, joins, parts
    and renames in words, ``(edited)`` and ``(deleted)`` marks; ANSI styles for bold, italic,
    underline, strike and code when ``color``. Control characters in the message are escaped.
    """
    if isinstance(msg, immp.SentMessage) and msg.deleted:
        return f"(message {_safe(msg.id)} deleted)"
    return _styled(msg.render(), color)
