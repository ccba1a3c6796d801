"""
Matrix message formatting <-> :class:`immp.RichText`.

Matrix sends ``body`` (plain text) and optionally ``formatted_body`` in ``org.matrix.custom.html``.
:func:`from_html` reads the HTML subset clients use (bold, italic, underline, strike, code, pre,
links, user pills, line breaks, paragraphs, lists and quotes) and drops the rest, keeping its
text; the ``<mx-reply>`` reply fallback is dropped whole. :func:`to_html` writes rich text as
HTML where every piece of text is escaped: text from other networks is only ever text (a ``<b>``
typed on IRC arrives as the characters ``<b>``). Both pass on only links of :data:`SAFE_SCHEMES`
(see :func:`safe_link`): any other link (``javascript:``, ``data:``, a relative one) is reduced
to its text, so that a bridge never turns a click on a copy into a script.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from html.parser import HTMLParser

import immp

MATRIX_TO = "https://matrix.to/#/"
#: The schemes of links passed on (``https://matrix.to/#/...`` is an https link).
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "matrix"})
_STYLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "s": "strike",
    "del": "strike",
    "strike": "strike",
    "code": "code",
    "pre": "pre",
}
_BLOCK_TAGS = {
    "p",
    "div",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "table",
    "tr",
}


def safe_link(href: str | None) -> str | None:
    """
    ``href`` if it is an absolute link of one of :data:`SAFE_SCHEMES`, else ``None``. Browsers
    ignore surrounding spaces, and tabs or newlines inside a scheme (``java&#9;script:``), so
    those are taken out before the scheme is read.
    """
    if not href:
        return None
    # What the WHATWG URL parser drops too: C0 controls and spaces around, tabs and newlines.
    cleaned = re.sub(r"[\t\n\r]", "", href)
    cleaned = re.sub(r"^[\x00-\x20]+|[\x00-\x20]+$", "", cleaned)
    scheme, colon, _ = cleaned.partition(":")
    if not colon or scheme.lower() not in SAFE_SCHEMES:
        return None
    return cleaned


def user_of_pill(href: str | None) -> str | None:
    """The Matrix user ID a ``https://matrix.to/#/@user:server`` link points to, if any."""
    if not href or not href.startswith(MATRIX_TO):
        return None
    target = urllib.parse.unquote(href[len(MATRIX_TO) :].split("?")[0])
    return target if target.startswith("@") and ":" in target else None


class _Reader(HTMLParser):
    def __init__(self, mention: Callable[[str, str], immp.User | None]):
        super().__init__(convert_charrefs=True)
        self.mention = mention
        self.segments: list[immp.Segment] = []
        self.styles: list[tuple[str, str | None]] = []  # (tag, style or None)
        self.links: list[str | None] = []
        self.skip = 0  # inside <mx-reply>
        self.pill: tuple[str, list[str]] | None = None  # (user ID, text so far)
        self.lists: list[list[int]] = []

    def _newline(self) -> None:
        text = "".join(seg.text for seg in self.segments)
        if text and not text.endswith("\n"):
            self.segments.append(immp.Segment("\n"))

    def handle_starttag(self, tag, attrs):
        if tag == "mx-reply":
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self.segments.append(immp.Segment("\n"))
            return
        if tag in _BLOCK_TAGS:
            self._newline()
        if tag in ("ul", "ol"):
            self.lists.append([0] if tag == "ol" else [-1])
        elif tag == "li":
            marker = "• "
            if self.lists and self.lists[-1][0] >= 0:
                self.lists[-1][0] += 1
                marker = f"{self.lists[-1][0]}. "
            self.segments.append(immp.Segment(marker))
        elif tag == "blockquote":
            self.segments.append(immp.Segment("> "))
        if tag == "a":
            href = safe_link(dict(attrs).get("href"))
            user_id = user_of_pill(href)
            if user_id is not None:
                self.pill = (user_id, [])
            self.links.append(href)
        self.styles.append((tag, _STYLE_TAGS.get(tag)))

    def handle_endtag(self, tag):
        if tag == "mx-reply":
            self.skip = max(0, self.skip - 1)
            return
        if self.skip or tag == "br":
            return
        # Close the innermost open tag of this name (and anything left open inside it).
        for index in range(len(self.styles) - 1, -1, -1):
            if self.styles[index][0] == tag:
                for open_tag, _ in self.styles[index:]:
                    if open_tag == "a" and self.links:
                        self.links.pop()
                del self.styles[index:]
                break
        if tag == "a" and self.pill is not None:
            user_id, texts = self.pill
            self.pill = None
            name = "".join(texts)
            user = self.mention(user_id, name)
            self.segments.append(
                immp.Segment(
                    name or user_id, mention=user, link=None if user else MATRIX_TO + user_id
                )
            )
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag in _BLOCK_TAGS:
            self._newline()

    def handle_data(self, data):
        if self.skip or not data:
            return
        if self.pill is not None:
            self.pill[1].append(data)
            return
        flags = {style: True for _, style in self.styles if style}
        if not flags.get("pre"):
            data = re.sub(r"[ \t\r\n]+", " ", data)  # HTML collapses white space
        link = next((href for href in reversed(self.links) if href), None)
        self.segments.append(immp.Segment(data, link=link, **flags))


def from_html(
    source: str, mention: Callable[[str, str], immp.User | None] = lambda uid, name: None
) -> immp.RichText:
    """
    Rich text from a ``formatted_body``. ``mention(user_id, text)`` turns a user pill into a
    :class:`immp.User` (``None`` keeps it as a link).
    """
    reader = _Reader(mention)
    reader.feed(source)
    reader.close()
    rich = immp.RichText(reader.segments).normalise()
    return rich.strip() if rich else rich


def strip_reply_fallback(body: str) -> str:
    """A plain ``body`` without the reply fallback (leading ``> `` lines and the blank line)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


def to_html(rich: immp.RichText, pill: Callable[[immp.User], str | None]) -> str:
    """
    ``formatted_body`` for rich text: all text escaped, line breaks as ``<br>``. ``pill(user)``
    gives the Matrix user ID of a mention that is a Matrix user (it becomes a pill), else
    ``None`` (its text stays plain).
    """
    out: list[str] = []
    for seg in rich.normalise():
        text = html.escape(seg.text, quote=False)
        if seg.mention is not None:
            user_id = pill(seg.mention)
            if user_id is not None:
                out.append(f'<a href="{html.escape(MATRIX_TO + user_id)}">{text}</a>')
                continue
        if seg.pre:
            out.append(f"<pre><code>{text}</code></pre>")
            continue
        text = text.replace("\n", "<br>")
        if seg.code:
            text = f"<code>{text}</code>"
        for flag, tag in (
            ("strike", "del"),
            ("underline", "u"),
            ("italic", "em"),
            ("bold", "strong"),
        ):
            if getattr(seg, flag):
                text = f"<{tag}>{text}</{tag}>"
        link = safe_link(seg.link)
        if link:
            text = f'<a href="{html.escape(link)}">{text}</a>'
        out.append(text)
    return "".join(out)


def to_plain(rich: immp.RichText) -> str:
    """
    ``body`` for rich text: the text, with a (safe) link's URL after it where the text differs.
    """
    out: list[str] = []
    for seg in rich.normalise():
        out.append(seg.text)
        link = safe_link(seg.link)
        if link and link != seg.text and seg.mention is None:
            out.append(f" <{link}>")
    return "".join(out)


def is_plain(rich: immp.RichText) -> bool:
    """Whether rich text has no formatting at all (then no ``formatted_body`` is needed)."""
    plain = immp.Segment()
    return all(replace(seg, link=safe_link(seg.link)).same_format(plain) for seg in rich)
