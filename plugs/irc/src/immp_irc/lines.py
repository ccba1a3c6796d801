"""
Fitting text into IRC lines: a relayed line may be at most 512 bytes including the prefix the
server adds (``:nick!user@host PRIVMSG #chan :``) and the closing CR LF.
"""

from __future__ import annotations

import immp

from .formatting import (
    balance_bidi,
    bidi_depth,
    bidi_left_open,
    expand_links,
    has_bidi,
    reopen_bidi,
    scrub,
    to_irc,
)

LINE_LIMIT = 512
# Unknown parts of our own hostmask are assumed as long as servers commonly allow (a ``~`` plus
# a 10-character user name, a 63-character host name), so that guesses err on the safe side.
USER_MARGIN = 11
HOST_MARGIN = 63


def text_budget(mask: str, command: str, target: str, *, action: bool = False) -> int:
    """
    Bytes left for the text of one ``command`` line to ``target`` once the server has added
    ``:mask command target :`` and CR LF (and a CTCP ACTION's wrapping, for ``action``).
    """
    used = len(f":{mask} {command} {target} :\r\n".encode())
    if action:
        used += len("\x01ACTION \x01")
    return LINE_LIMIT - used


def guess_mask(nick: str, user: str | None, host: str | None) -> str:
    """Our own ``nick!user@host`` as the server shows it, unknown parts at their longest."""
    return f"{nick}!{user or 'u' * USER_MARGIN}@{host or 'h' * HOST_MARGIN}"


def _measure(rich: immp.RichText) -> int:
    return len(balance_bidi(to_irc(rich)).encode("utf-8"))


#: Bidi embeddings, overrides and isolates that a piece of a split line opens again where the
#: last piece left them open, at most (6 bytes each, opener and closer, kept free in every
#: piece of a line with bidi controls).
REOPEN_DEPTH = 8


def split_line(rich: immp.RichText, limit: int) -> list[str]:
    """
    One line of rich text as IRC-formatted pieces of at most ``limit`` bytes each, broken at
    white space where possible, never inside a character; formatting carries over to the
    next piece. Each piece closes the bidi embeddings, overrides and isolates it opens (see
    :func:`~immp_irc.formatting.balance_bidi`), within the limit: what one line opens never
    reaches the next. What a piece leaves open that the text goes on inside (right-to-left
    text in an embedding cut by the split) the next piece opens again, up to
    :data:`REOPEN_DEPTH` levels, so that each line shows its part as the whole would. Pieces
    with nothing to show once formatted (only white space, formatting codes or control
    characters, which are scrubbed) are left out, so the list may be empty.
    """
    if limit < 16:
        raise ValueError(f"no room for text in an IRC line ({limit} bytes)")
    rich = expand_links(rich).normalise()
    plain = str(rich)
    if not has_bidi(plain):  # nearly every line
        pieces = rich.chunked(limit, _measure)
        # The same white space as chunked() breaks at: a no-break space alone is text.
        return [balance_bidi(text) for text in map(to_irc, pieces) if scrub(text).strip(" \t\n")]
    # Each level opened again costs its opener and, unless the piece closes it, its closer.
    reserve = min(min(REOPEN_DEPTH, bidi_depth(plain)) * 6, (limit - 16) // 2)
    out = []
    carried: list[str] = []  # openers the last piece left open, outermost first
    for text in map(to_irc, rich.chunked(limit - reserve, _measure)):
        opened = reopen_bidi(text, carried[: reserve // 6])
        carried = bidi_left_open(text, carried)
        if scrub(text).strip(" \t\n"):
            out.append(balance_bidi(opened))
    return out
