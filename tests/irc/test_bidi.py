"""
Bidi controls in relayed text: every embedding, override and isolate a part of a line opens is
closed within it, so no name or text can turn the rest of the line (or the next) around.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import immp
from immp_irc.formatting import balance_bidi, balance_bidi_rich
from immp_irc.lines import split_line
from tests.ngircd import RawClient, parse_privmsg

from .conftest import irc_host, plug_config

LRE, RLE, PDF, LRO, RLO = "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"
LRI, RLI, FSI, PDI = "\u2066", "\u2067", "\u2068", "\u2069"
LRM, RLM, ALM = "\u200e", "\u200f", "\u061c"
CONTROLS = LRE + RLE + PDF + LRO + RLO + LRI + RLI + FSI + PDI


def left_open(text: str) -> list[str]:
    """
    What ``text`` leaves open at its end, as a UAX #9 renderer reads it (outermost first), or
    raises ``AssertionError`` at a closer that closes nothing: written independently of the
    plug's code, to check what a client would make of a line.
    """
    stack: list[str] = []
    for char in text:
        if char in LRE + RLE + LRO + RLO + LRI + RLI + FSI:
            stack.append(char)
        elif char == PDF:
            assert stack and stack[-1] in LRE + RLE + LRO + RLO, f"stray PDF in {text!r}"
            stack.pop()
        elif char == PDI:
            assert any(c in LRI + RLI + FSI for c in stack), f"stray PDI in {text!r}"
            while stack.pop() not in LRI + RLI + FSI:
                pass
    return stack


def without_controls(text: str) -> str:
    return "".join(c for c in text if c not in CONTROLS)


def test_nested_overrides_are_closed_innermost_first():
    assert balance_bidi(f"a{RLO}b{LRE}c{LRO}d") == f"a{RLO}b{LRE}c{LRO}d{PDF}{PDF}{PDF}"
    # One closed by the text, the other by us.
    assert balance_bidi(f"{RLE}x{RLO}y{PDF}z") == f"{RLE}x{RLO}y{PDF}z{PDF}"


def test_isolates_are_closed_with_pdi_and_mixed_nesting_keeps_its_order():
    assert balance_bidi(f"{RLI}a{FSI}b{LRI}c") == f"{RLI}a{FSI}b{LRI}c{PDI}{PDI}{PDI}"
    assert balance_bidi(f"{RLO}a{LRI}b{RLE}c") == f"{RLO}a{LRI}b{RLE}c{PDF}{PDI}{PDF}"
    # A PDI ends the embeddings inside its isolate; their PDFs are written out before it.
    assert balance_bidi(f"{RLI}a{RLO}b{PDI}c") == f"{RLI}a{RLO}b{PDF}{PDI}c"


def test_unmatched_closers_are_dropped():
    assert balance_bidi(f"{PDF}evil{PDI}{PDF}") == "evil"
    # A PDF cannot close an embedding from outside an isolate opened since.
    assert balance_bidi(f"{RLE}a{RLI}b{PDF}c") == f"{RLE}a{RLI}bc{PDI}{PDF}"
    # A PDI with no isolate open closes nothing, not even the override.
    assert balance_bidi(f"{RLO}a{PDI}b") == f"{RLO}ab{PDF}"


def test_right_to_left_text_and_marks_are_left_as_written():
    for text in ("שלום עולם", f"{RLM}אבג{LRM} abc {ALM}", f"{RLI}שלום{PDI} said {LRE}x{PDF}",
                 f"{RLI}{RLE}{LRO}deep{PDF}{PDF}{PDI}"):  # fmt: skip
        assert balance_bidi(text) == text


@given(st.text(alphabet=st.characters(blacklist_characters=CONTROLS)))
def test_text_without_bidi_controls_stays_identical(text):
    assert balance_bidi(text) is text
    rich = immp.RichText([text, immp.Segment(text, bold=True)])
    assert balance_bidi_rich(rich) is rich


@given(st.text(alphabet=st.sampled_from([*CONTROLS, "a", "א", " ", LRM])))
def test_anything_balanced_leaves_nothing_open_and_keeps_its_text(text):
    balanced = balance_bidi(text)
    assert left_open(balanced) == []
    assert without_controls(balanced) == without_controls(text)
    assert balance_bidi(balanced) == balanced


def test_rich_text_is_balanced_across_segments():
    link = immp.Segment(f"link{PDF}{PDF}", link="https://example.org/")
    rich = immp.RichText([immp.Segment(f"{RLO}bold", bold=True), link])
    balanced = balance_bidi_rich(rich)
    assert [seg.text for seg in balanced] == [f"{RLO}bold", f"link{PDF}"]
    assert balanced.segments[1].link == "https://example.org/"


def test_a_long_message_split_into_lines_closes_everything_in_each_line():
    words = " ".join(f"{RLO}word{n} {LRI}more" for n in range(200))
    pieces = split_line(immp.RichText([immp.Segment(f"{RLE}start ", bold=True), words]), 120)
    assert len(pieces) > 10
    for piece in pieces:
        assert len(piece.encode()) <= 120
        assert left_open(piece) == []
    kept = " ".join(without_controls(piece).replace("\x02", "") for piece in pieces)
    assert kept == without_controls(f"start {words}")


def test_a_line_split_inside_an_embedding_opens_it_again_on_the_next_line():
    # Right-to-left text in an embedding the split cut: each line shows its part inside the
    # same embedding (outermost first), and closes it.
    words = " ".join(["שלום", "עולם"] * 60)
    for openers in (RLE, RLI + RLE):
        pieces = split_line(immp.RichText([openers + words]), 120)
        assert len(pieces) > 3
        closers = "".join({RLE: PDF, RLI: PDI}[c] for c in reversed(openers))
        for piece in pieces:
            assert len(piece.encode()) <= 120
            assert piece.startswith(openers) and piece.endswith(closers)
            assert left_open(piece) == []
        assert " ".join(without_controls(piece) for piece in pieces) == words
    # Closed where the text closed it: from there on, nothing is opened again.
    pieces = split_line(immp.RichText([f"{RLE}{'a' * 100} {'b' * 100}{PDF} {'c' * 100}"]), 120)
    assert pieces == [f"{RLE}{'a' * 100}{PDF}", f"{RLE}{'b' * 100}{PDF}", "c" * 100]


WORDS = st.lists(st.text(alphabet=st.sampled_from([*CONTROLS, "a", "א", "b"]), max_size=12),
                 max_size=30)  # fmt: skip


@given(WORDS, st.integers(min_value=16, max_value=60))
def test_split_pieces_fit_close_everything_and_keep_the_text(words, limit):
    text = " ".join(words)
    pieces = split_line(immp.RichText([text]), limit)
    for piece in pieces:
        assert len(piece.encode()) <= limit
        assert left_open(piece) == []
    assert "".join(without_controls(p) for p in pieces).replace(" ", "") == (
        without_controls(text).replace(" ", "")
    )


async def test_a_client_sees_every_override_closed(server):
    """An RLO left open in a bridged author's name or text turns nothing else around."""
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with irc_host(plug_config(server.port)) as (host, _, _):
            await alice.expect(":bot!", "JOIN", "#test")
            chan = host.channels["chan0"]
            mallory = immp.User(id="m1", username="mallory", real_name=f"{RLO}yrrallim")
            await chan.send(immp.Message(f"{RLO}olleh ti si", user=mallory))
            await chan.send(immp.Message(f"shrugs {RLO}", user=mallory, action=True))
            bob = immp.User(id="b1", username="bob")
            evil = immp.Message(f"{RLO}evil", user=mallory)
            await chan.send(immp.Message("I agree", user=bob, reply_to=evil))
            await chan.send(
                immp.Message(f"{RLO}{'x' * 300} {'y' * 300} {PDF}{'z' * 300}", user=mallory)
            )
            rtl = f"{RLI}שלום{PDI} and {RLE}עולם{PDF}"
            await chan.send(immp.Message(rtl, user=bob))
            texts = [parse_privmsg(line)[2] for line in await alice.collect("PRIVMSG", 7)]
    assert texts[0] == f"<{RLO}yrrallim{PDF}> {RLO}olleh ti si{PDF}"
    assert texts[1] == f"* {RLO}yrrallim{PDF} shrugs {RLO}{PDF}"
    assert texts[2] == f'<bob> [re {RLO}yrrallim: "{RLO}evil"] {PDF}{PDF}I agree'
    # Split in three lines, each closing its own: the next line is not turned around. The
    # second is inside the override as its text was, and opens it again; the text closed it
    # where the third begins.
    assert texts[3:6] == [f"<{RLO}yrrallim{PDF}> {RLO}{'x' * 300}{PDF}",
                          f"<{RLO}yrrallim{PDF}> {RLO}{'y' * 300}{PDF}",
                          f"<{RLO}yrrallim{PDF}> {'z' * 300}"]  # fmt: skip
    assert texts[6] == f"<bob> {rtl}"  # right-to-left text, well formed, as written
