"""
IRC formatting <-> rich text, and scrubbing of text that must not reach the socket as such.

IRC formats text with control bytes: ``\\x02`` bold, ``\\x1d`` italic, ``\\x1f`` underline,
``\\x1e`` strikethrough, ``\\x11`` monospace, ``\\x03`` colours (``\\x03FG[,BG]``), ``\\x04`` hex
colours, ``\\x16`` reverse and ``\\x0f`` reset. Colours and reverse have no rich-text equivalent
and are dropped cleanly; the other codes become :class:`immp.Segment` flags.

Text from other networks may carry Unicode bidi controls, which are legitimate in right-to-left
text but, left open, reorder everything after them on the line (a name ending in an RLO shows
the text after it backwards: "Trojan Source" spoofing). :func:`balance_bidi` closes what a part
of a line opens, so no part can change how the rest of the line is shown.
"""

from __future__ import annotations

import re
import zlib

import immp

BOLD, ITALIC, UNDERLINE, STRIKE, MONOSPACE = "\x02", "\x1d", "\x1f", "\x1e", "\x11"
COLOUR, HEX_COLOUR, REVERSE, RESET = "\x03", "\x04", "\x16", "\x0f"
CTCP = "\x01"

_TOGGLES = {BOLD: "bold", ITALIC: "italic", UNDERLINE: "underline", STRIKE: "strike",
            MONOSPACE: "code"}  # fmt: skip
_COLOUR_CODE = re.compile(r"\x03(?:\d{1,2}(?:,\d{1,2})?)?")
_HEX_CODE = re.compile(r"\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?")
# Every C0 control byte and DEL: none of them belongs in relayed chat text. Line breaks are
# handled before this (each line of a message is its own IRC line).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
# The bidi embeddings, overrides and isolates, and their closers. The marks (LRM, RLM, ALM)
# are left alone: each is an invisible strong letter, with no more effect than a Hebrew or
# Latin letter in its place, and they need no closing.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
PDF, PDI = "\u202c", "\u2069"
# Each opener (LRE, RLE, LRO, RLO; LRI, RLI, FSI) and what closes it.
_BIDI_CLOSERS = {"\u202a": PDF, "\u202b": PDF, "\u202d": PDF, "\u202e": PDF,
                 "\u2066": PDI, "\u2067": PDI, "\u2068": PDI}  # fmt: skip
_ISOLATES = frozenset(opener for opener, closer in _BIDI_CLOSERS.items() if closer == PDI)
# Readable on both light and dark backgrounds; white, black and greys are left out.
_NICK_COLOURS = (2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13)


def from_irc(text: str) -> immp.RichText:
    """Parse IRC-formatted text into rich text; colours and unknown control bytes are dropped."""
    segments: list[immp.Segment] = []
    flags = dict.fromkeys(_TOGGLES.values(), False)
    buffer: list[str] = []
    pos = 0

    def flush() -> None:
        if buffer:
            segments.append(immp.Segment("".join(buffer), **flags))
            buffer.clear()

    while pos < len(text):
        char = text[pos]
        if char in _TOGGLES:
            flush()
            flags[_TOGGLES[char]] = not flags[_TOGGLES[char]]
            pos += 1
        elif char == RESET:
            flush()
            flags = dict.fromkeys(flags, False)
            pos += 1
        elif char == COLOUR:
            pos = _COLOUR_CODE.match(text, pos).end()
        elif char == HEX_COLOUR:
            pos = _HEX_CODE.match(text, pos).end()
        elif _CONTROLS.match(char):
            pos += 1  # reverse, CTCP markers, stray C0 bytes: no meaning in rich text
        else:
            buffer.append(char)
            pos += 1
    flush()
    return immp.RichText(segments).normalise()


def scrub(text: str) -> str:
    """
    Plain text safe inside one IRC line: line breaks and tabs become spaces; every other
    control byte (NUL, CTCP's ``\\x01``, formatting codes) is removed.
    """
    text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return _CONTROLS.sub("", text)


def has_bidi(text: str) -> bool:
    """Whether ``text`` has a bidi embedding, override or isolate, or a closer of one."""
    return not text.isascii() and _BIDI.search(text) is not None


def balance_bidi(text: str) -> str:
    """
    ``text`` with every bidi embedding, override and isolate it opens closed at its end (PDF
    for LRE, RLE, LRO and RLO, PDI for LRI, RLI and FSI, innermost first) and every closer
    that closes nothing it opened dropped, so that it cannot change how whatever follows it
    is shown. Text without such controls, or with each closed by its own closer, is returned
    unchanged.

    A PDI also ends the embeddings opened inside its isolate (as in UAX #9); their PDFs are
    written out before it, so that the result only grows as ``text`` does (line splitting
    measures pieces by their balanced length).
    """
    if not has_bidi(text):
        return text  # nearly every line: no work
    opened: list[str] = []
    return _balanced(text, opened) + _closers(opened)


def balance_bidi_rich(rich: immp.RichText) -> immp.RichText:
    """
    :func:`balance_bidi` for rich text, across its segments (an embedding may span several);
    the closers due at the end are a plain segment of their own, so a link's text stays its
    URL. Rich text without bidi controls is returned as it is.
    """
    if not any(has_bidi(seg.text) for seg in rich):
        return rich
    opened: list[str] = []
    out = [seg.with_text(_balanced(seg.text, opened)) for seg in rich]
    if opened:
        out.append(immp.Segment(_closers(opened)))
    return immp.RichText(out)


def _step(char: str, opened: list[str]) -> str:
    """
    One bidi control applied to ``opened`` (the openers open, innermost last): what to write
    for it. An opener is written and opened; a PDF closes the innermost embedding, never one
    outside an isolate opened since; a PDI closes its isolate and what was opened inside it
    (their PDFs written before it). A closer that closes nothing is dropped.
    """
    if char in _BIDI_CLOSERS:
        opened.append(char)
        return char
    if char == PDF:
        if opened and opened[-1] not in _ISOLATES:
            opened.pop()
            return PDF
        return ""
    if _ISOLATES.isdisjoint(opened):
        return ""
    out = ""
    while opened.pop() not in _ISOLATES:
        out += PDF
    return out + PDI


def _closers(opened: list[str]) -> str:
    """What closes everything in ``opened``, innermost first."""
    return "".join(_BIDI_CLOSERS[char] for char in reversed(opened))


def _balanced(text: str, opened: list[str]) -> str:
    """``text`` with the closers that close nothing open dropped; ``opened`` is what is open
    (see :func:`_step`), before and after."""
    out: list[str] = []
    start = 0
    for match in _BIDI.finditer(text):
        pos = match.start()
        out.append(text[start:pos])
        start = pos + 1
        out.append(_step(match.group(), opened))
    out.append(text[start:])
    return "".join(out)


def bidi_left_open(text: str, opened: list[str] | None = None) -> list[str]:
    """
    The embeddings, overrides and isolates (their openers, outermost first) left open after
    ``text``, following ``opened`` (what was open before it), read as :func:`balance_bidi`
    reads it.
    """
    stack = list(opened or ())
    for match in _BIDI.finditer(text):
        _step(match.group(), stack)
    return stack


def bidi_depth(text: str) -> int:
    """How deep the embeddings, overrides and isolates of ``text`` nest, at most (0: none)."""
    stack: list[str] = []
    deepest = 0
    for match in _BIDI.finditer(text):
        _step(match.group(), stack)
        deepest = max(deepest, len(stack))
    return deepest


def reopen_bidi(text: str, open: list[str]) -> str:
    """
    ``text`` preceded by the openers in ``open`` (outermost first), which a text before it left
    open: each is dropped with the closer that ``text`` starts with, if it closes it at once
    (an empty embedding shows nothing).
    """
    stack = list(open)
    start = 0
    while stack and start < len(text) and text[start] == _BIDI_CLOSERS[stack[-1]]:
        stack.pop()
        start += 1
    return "".join(stack) + text[start:]


def expand_links(rich: immp.RichText) -> immp.RichText:
    """Show each link whose text differs from its URL as ``text (url)``; drop link targets."""
    out = []
    for seg in rich:
        if seg.link and seg.link.strip() != seg.text.strip():
            out.append(immp.Segment(seg.text, **_flags(seg)))
            out.append(immp.Segment(f" ({seg.link})"))
        else:
            out.append(immp.Segment(seg.text, **_flags(seg)))
    return immp.RichText(out)


def _flags(seg: immp.Segment) -> dict[str, bool]:
    return {"bold": seg.bold, "italic": seg.italic, "underline": seg.underline,
            "strike": seg.strike, "code": seg.code or seg.pre}  # fmt: skip


def to_irc(rich: immp.RichText) -> str:
    """
    One line of rich text as IRC-formatted text. Control bytes in the text itself are scrubbed,
    so the only codes in the result are the ones that express the segments' formatting.
    """
    out: list[str] = []
    state = dict.fromkeys(_TOGGLES.values(), False)
    for seg in rich:
        text = scrub(seg.text)
        if not text:
            continue
        wanted = _flags(seg)
        for code, name in _TOGGLES.items():
            if wanted[name] != state[name]:
                out.append(code)
                state[name] = wanted[name]
        out.append(text)
    if any(state.values()):
        out.append(RESET)
    return "".join(out)


def nick_colour(name: str) -> int:
    """A colour number for ``name``, the same on every run (not Python's salted hash)."""
    return _NICK_COLOURS[zlib.crc32(name.encode("utf-8")) % len(_NICK_COLOURS)]


def coloured(name: str) -> str:
    """``name`` (scrubbed) in its stable colour, the colour closed after it."""
    name = scrub(name)
    # A name starting with a digit or comma would be read as part of the colour code: an empty
    # bold pair in between ends the code.
    guard = BOLD + BOLD if name[:1].isdigit() or name[:1] == "," else ""
    return f"{COLOUR}{nick_colour(name):02d}{guard}{name}{COLOUR}"
