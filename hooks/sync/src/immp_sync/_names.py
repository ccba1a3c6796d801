"""
How the author of a copy is shown: ``name-format``, ``reset-author`` and ``strip-name-emoji``.

``name-format`` is a Jinja2 template rendered in a sandboxed environment (a config file is
trusted, but a template still only sees the values below and cannot reach Python internals):

``user``
    The author (an :class:`immp.User`: ``user.name``, ``user.username``, ``user.real_name``,
    ``user.id``, ``user.link``), or ``None`` for a message without one.
``title``
    The title of the channel the message was posted in (``None`` where the network has none).
``plug``
    The plug that channel is on (``plug.name``, ``plug.network_name``).
``channel``
    That channel (``channel.source``).
``label``
    The bridge label for a sync hook; for a forward hook the source channel's config name.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2
import jinja2.sandbox

import immp

_ENVIRONMENT = jinja2.sandbox.ImmutableSandboxedEnvironment(autoescape=False)

# Pictographs, dingbats, flags, keycaps, skin tones, variation selectors, joiners and tag
# characters: what makes up an emoji, so that none is left half-removed.
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # symbols and pictographs, emoticons, transport, flags...
    "\u2190-\u21ff\u2300-\u23ff\u2460-\u24ff\u25a0-\u27bf\u2900-\u297f\u2b00-\u2bff"
    "\u3030\u303d\u3297\u3299\u00a9\u00ae\u203c\u2049\u2122\u2139"
    "\ufe00-\ufe0f\u200d\u20e3"
    "\U000e0020-\U000e007f"
    "]+"
)
_SPACES = re.compile(r"\s{2,}")

# Rendered names kept per style (names repeat a lot, so this stays small); the oldest goes first.
CACHE_SIZE = 1024


def strip_emoji(text: str) -> str:
    """``text`` without emoji, with the white space they leave behind tidied."""
    return _SPACES.sub(" ", _EMOJI.sub("", text)).strip()


def compile_template(source: str) -> jinja2.Template:
    """Compile a ``name-format``; raises :class:`ValueError` if it does not parse."""
    try:
        return _ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"bad template: {exc.message} (line {exc.lineno})")


class NameStyle:
    """The author options for copies sent to one plug."""

    __slots__ = ("_cache", "plain", "reset_author", "strip_name_emoji", "template")

    def __init__(self, name_format: str | None, reset_author: bool, strip_name_emoji: bool):
        self.template = compile_template(name_format) if name_format else None
        self.reset_author = reset_author
        self.strip_name_emoji = strip_name_emoji
        self._cache: immp.BoundedCache[tuple, str | None] = immp.BoundedCache(CACHE_SIZE)
        #: Whether copies keep the author untouched (nothing to render).
        self.plain = not (self.template or reset_author or strip_name_emoji)

    def name(self, user: immp.User | None, context: dict[str, Any]) -> str | None:
        """The name to show for ``user``; ``context`` holds the other template variables."""
        if self.template is None:
            name = user.name if user else None
        else:
            key = (
                user.plug.name if user and user.plug else None,
                user.id if user else None,
                (user.username, user.real_name, user.link) if user else None,
                context["title"],
                context["label"],
                context["channel"],
            )
            if key in self._cache:
                return self._cache[key]
            try:
                name = self.template.render(user=user, **context).strip() or None
            except Exception:
                # A template error (e.g. an attribute of None) must not lose the message.
                name = user.name if user else None
            if self.strip_name_emoji and name:
                name = strip_emoji(name) or None
            self._cache[key] = name
            return name
        if self.strip_name_emoji and name:
            name = strip_emoji(name) or None
        return name

    def author(self, user: immp.User | None, context: dict[str, Any]) -> immp.User | None:
        """The author to give a copy."""
        if self.plain:
            return user
        name = self.name(user, context)
        if self.reset_author or user is None:
            return immp.User(real_name=name, suggested=True) if name else None
        return immp.User(
            user.id,
            user.plug,
            username=user.username,
            real_name=name,
            avatar=user.avatar,
            link=user.link,
            suggested=True,
            raw=user.raw,
        )
