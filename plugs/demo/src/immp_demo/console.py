"""How the demo console shows a message in a terminal."""

from __future__ import annotations

import unicodedata

import immp

_STYLES = (("bold", "1"), ("italic", "3"), ("underline", "4"), ("strike", "9"), ("code", "2"),
           ("pre", "2"))  # fmt: skip


# The Unicode bidi embedding, override and isolate controls: shown as they are, they reorder
# the text around them, so a message could make the console show something nobody wrote.
_BIDI = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _safe(text: str) -> str:
    """
    ``text`` with every control character but newline and tab shown as ``\\xNN`` (``\\uNNNN``
    for the bidi controls): text from other networks must never drive the terminal (clear it,
    move the cursor, retitle it) nor reorder what is shown around it. This covers C0 controls
    and ESC, DEL, the 8-bit C1 controls (U+009B is a CSI of its own) and the bidi embeddings,
    overrides and isolates (U+202A-U+202E, U+2066-U+2069).
    """
    return "".join(_escape(ch) if ch in _BIDI or (ch not in "\n\t" and
                                                  unicodedata.category(ch) == "Cc")
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


def render(msg: immp.Message, *, color: bool = False, original: immp.Message | None = None) -> str:
    """
    One message as terminal text: ``<name> text``, ``* name text`` for actions, joins, parts
    and renames in words, an ``(edited)`` mark; ANSI styles for bold, italic, underline, strike
    and code when ``color``. Control characters in the message are escaped.

    A deletion shows ``(deleted: <name> text)`` with the ``original`` message it deletes, or
    ``(a message was deleted)`` without: the ID a message has on this network means nothing to
    whoever reads the console (it is not the number they typed, nor the ID elsewhere).
    """
    if isinstance(msg, immp.SentMessage) and msg.deleted:
        if original is None:
            return "(a message was deleted)"
        return f"(deleted: {_styled(original.render(), color)})"
    return _styled(msg.render(), color)
