"""Links in formatted text, both ways (no server): only safe schemes are passed on."""

from __future__ import annotations

import pytest

import immp
from immp_matrix import formatting


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(3)",
        " JavaScript:alert(3)",
        "java\tscript:alert(3)",
        "\x01javascript:alert(3)",
        "vbscript:x",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "/relative",
        "#anchor",
        "",
    ],
)
def test_unsafe_links_are_dropped(href):
    assert formatting.safe_link(href) is None
    rich = formatting.from_html(f'<a href="{href}">click</a> me')
    assert [(seg.text, seg.link) for seg in rich] == [("click me", None)]
    out = immp.RichText([immp.Segment("click", link=href)])
    assert formatting.to_html(out, lambda user: None) == "click"
    assert formatting.to_plain(out) == "click"
    assert formatting.is_plain(out)


@pytest.mark.parametrize(
    "href",
    [
        "https://example.org/",
        "HTTP://example.org/",
        "mailto:a@example.org",
        "matrix:r/room:example.org",
        "https://matrix.to/#/#room:example.org",
    ],
)
def test_safe_links_pass(href):
    assert formatting.safe_link(href) == href
    rich = formatting.from_html(f'<a href="{href}">click</a>')
    assert [(seg.text, seg.link) for seg in rich] == [("click", href)]
    out = immp.RichText([immp.Segment("click", link=href)])
    assert formatting.to_html(out, lambda user: None) == f'<a href="{href}">click</a>'


def test_entity_encoded_scheme_is_still_caught():
    rich = formatting.from_html('<a href="&#106;avascript&colon;alert(1)">x</a>')
    assert [seg.link for seg in rich] == [None]
