"""IRC formatting both ways and line splitting, without a server."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

import immp
from immp_irc.formatting import coloured, from_irc, scrub, to_irc
from immp_irc.lines import guess_mask, split_line, text_budget


def test_colours_and_reverse_are_dropped_without_eating_text():
    rich = from_irc("\x0312,04blue\x03 \x0399\x03,x \x04ff0000,00ff00hex\x04 \x16r\x16 1\x0f2")
    # "\x0399" is colour 99 (the default colour); "\x03,x" has no colour, so ",x" is text.
    assert str(rich) == "blue ,x hex r 12"


def test_formatting_round_trips():
    text = "\x02b\x02 \x1di\x1d \x1fu\x1f \x1es\x1e \x11c\x11 \x02\x1dboth\x0f"
    assert to_irc(from_irc(text)) == text


def test_scrub_leaves_no_line_breaks_nul_or_ctcp():
    assert scrub("a\r\nb\rc\nd\x00e\x01f\tg") == "a b c def g"


def test_nick_colours_are_stable_and_closed():
    assert coloured("dave") == coloured("dave")
    assert coloured("dave").endswith("dave\x03")
    assert coloured("7up").startswith("\x03") and "\x02\x027up" in coloured("7up")


def test_budget_counts_the_prefix_the_server_adds():
    mask = "bot!~bot@127.0.0.1"
    assert text_budget(mask, "PRIVMSG", "#test") == 512 - len(f":{mask} PRIVMSG #test :\r\n")
    assert len(guess_mask("bot", None, None)) > 70  # unknown: assume long


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=1500),
       st.integers(min_value=40, max_value=450))  # fmt: skip
@example("\xa0", 40)  # a lone no-break space is text, not a break
def test_split_pieces_fit_and_keep_every_character(text, limit):
    rich = immp.RichText([immp.Segment(text[: len(text) // 2], bold=True), text[len(text) // 2 :]])
    pieces = split_line(rich, limit)
    for piece in pieces:
        assert len(piece.encode("utf-8")) <= limit  # whole characters: encodes cleanly
        assert not any(ch in piece for ch in "\r\n\0\x01")
    # Only white space (and control bytes) is lost at the breaks.
    kept = "".join(str(from_irc(piece)) for piece in pieces)
    expected = scrub(text)
    assert kept.replace(" ", "") == expected.replace(" ", "")
