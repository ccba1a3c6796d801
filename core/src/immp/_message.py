"""
The message model: users, rich text, attachments, messages and receipts.

A :class:`Message` is what a hook builds and sends; a :class:`SentMessage` is a message that exists
on a network, i.e. a :class:`Message` plus a :class:`Receipt` (its ID, channel and time).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._channel import Channel
    from ._plug import Plug


class User:
    """
    Someone on a network.

    ``id`` is the network's stable identifier for the user (what permissions are keyed on);
    ``username`` is the handle others see and may change; ``suggested`` marks a user that was
    made up to show an author (e.g. by a bridge), not one looked up on the network.
    """

    __slots__ = ("avatar", "id", "link", "plug", "raw", "real_name", "suggested", "username")

    def __init__(
        self,
        id: str | None = None,
        plug: Plug | None = None,
        *,
        username: str | None = None,
        real_name: str | None = None,
        avatar: str | None = None,
        link: str | None = None,
        suggested: bool = False,
        raw: Any = None,
        id_: str | None = None,
    ):
        self.id = id if id_ is None else id_  # id_: IMMP's spelling
        self.plug = plug
        self.username = username
        self.real_name = real_name
        self.avatar = avatar
        self.link = link
        self.suggested = suggested
        self.raw = raw

    @property
    def name(self) -> str | None:
        """The best name to show for this user: the real name, else the username, else the ID."""
        return self.real_name or self.username or self.id

    async def is_system(self) -> bool:
        """Whether the network considers this user a system/bot account."""
        return bool(self.plug) and await self.plug.user_is_system(self)

    def _key(self) -> tuple:
        return (self.plug.name if self.plug else None, self.id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, User):
            return NotImplemented
        if self.id is None or other.id is None:
            return self is other
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key()) if self.id is not None else id(self)

    def __repr__(self) -> str:
        plug = self.plug.name if self.plug else None
        return f"<User {plug}:{self.id!r} {self.name!r}>"


@dataclass(slots=True, eq=True)
class Segment:
    """
    A run of text with one set of formatting. ``link`` is a URL the text points to; ``mention``
    is a :class:`User` the text refers to.
    """

    text: str = ""
    bold: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False
    code: bool = False
    pre: bool = False
    link: str | None = None
    mention: User | None = None

    def same_format(self, other: Segment) -> bool:
        """Whether the two segments differ only in their text."""
        return (
            self.bold == other.bold
            and self.italic == other.italic
            and self.underline == other.underline
            and self.strike == other.strike
            and self.code == other.code
            and self.pre == other.pre
            and self.link == other.link
            and self.mention == other.mention
        )

    def with_text(self, text: str) -> Segment:
        """A copy of this segment with other text and the same formatting."""
        return replace(self, text=text)

    def __str__(self) -> str:
        return self.text


_FORMAT_FIELDS = tuple(f.name for f in fields(Segment) if f.name != "text")


class RichText:
    """
    Formatted text: a sequence of :class:`Segment`. Plain strings mix in freely (``rich + "x"``);
    ``str(rich)`` is the plain text.
    """

    __slots__ = ("_segments",)

    def __init__(self, segments: Iterable[Segment | str] = ()):
        self._segments: list[Segment] = [
            seg if isinstance(seg, Segment) else Segment(str(seg)) for seg in segments
        ]

    @classmethod
    def of(cls, value: RichText | Segment | str | None) -> RichText | None:
        """Coerce a string or segment to rich text; ``None`` stays ``None``."""
        if value is None or isinstance(value, RichText):
            return value
        # Every received message's text comes through here: skip __init__'s general loop.
        rich = cls.__new__(cls)
        rich._segments = [value if isinstance(value, Segment) else Segment(str(value))]
        return rich

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments)

    def __len__(self) -> int:
        """The length of the plain text (not the number of segments)."""
        return sum(len(seg.text) for seg in self._segments)

    def __bool__(self) -> bool:
        return any(seg.text for seg in self._segments)

    @property
    def segments(self) -> list[Segment]:
        return list(self._segments)

    def __str__(self) -> str:
        return "".join(seg.text for seg in self._segments)

    def __repr__(self) -> str:
        return f"<RichText {self._segments!r}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        if not isinstance(other, RichText):
            return NotImplemented
        return self.normalise()._segments == other.normalise()._segments

    __hash__ = None  # mutable-ish container semantics, like list

    def __add__(self, other: RichText | Segment | str) -> RichText:
        other_segments = other._segments if isinstance(other, RichText) else [other]
        return RichText([*self._segments, *other_segments])

    def __radd__(self, other: Segment | str) -> RichText:
        return RichText([other, *self._segments])

    def append(self, *segments: Segment | str) -> None:
        """Add segments (or plain strings) to the end, in place."""
        self._segments.extend(s if isinstance(s, Segment) else Segment(s) for s in segments)

    def prepend(self, *segments: Segment | str) -> None:
        """Add segments (or plain strings) to the start, in place."""
        new = [s if isinstance(s, Segment) else Segment(s) for s in segments]
        self._segments[:0] = new

    def clone(self) -> RichText:
        """A copy whose segments can be changed without touching this one."""
        return RichText(replace(seg) for seg in self._segments)

    def __getitem__(self, index: slice | int) -> RichText:
        """Slice by plain-text character positions, keeping formatting."""
        if isinstance(index, int):
            length = len(self)
            if index < 0:
                index += length
            if not 0 <= index < length:
                raise IndexError("RichText index out of range")
            index = slice(index, index + 1)
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("RichText slices must be contiguous")
        out: list[Segment] = []
        pos = 0
        for seg in self._segments:
            end = pos + len(seg.text)
            lo, hi = max(start, pos), min(stop, end)
            if lo < hi:
                out.append(seg.with_text(seg.text[lo - pos : hi - pos]))
            pos = end
            if pos >= stop:
                break
        return RichText(out)

    def normalise(self) -> RichText:
        """A copy with empty segments dropped and neighbours of the same format merged."""
        out: list[Segment] = []
        for seg in self._segments:
            if not seg.text:
                continue
            if out and out[-1].same_format(seg):
                out[-1] = out[-1].with_text(out[-1].text + seg.text)
            else:
                out.append(seg)
        return RichText(out)

    def strip(self) -> RichText:
        """A copy without leading and trailing white space."""
        text = str(self)
        start = len(text) - len(text.lstrip())
        stop = len(text.rstrip())
        return self[start:stop]

    def lines(self) -> list[RichText]:
        """Split on line breaks, keeping formatting; the breaks themselves are dropped."""
        text = str(self)
        out, start = [], 0
        for pos, char in enumerate(text):
            if char == "\n":
                out.append(self[start:pos])
                start = pos + 1
        out.append(self[start:])
        return out

    def chunked(self, limit: int, measure: Callable[[RichText], int] = len) -> list[RichText]:
        """
        Split into pieces each measuring at most ``limit``, preferring to break after a line
        break, then at white space, and only then mid-word (a break that would leave a piece
        shorter than a third of what fits is not worth it). ``measure`` sizes a piece: by
        default its plain-text length; a network may count e.g. the bytes of its own encoding
        of the formatting (``lambda r: len(to_wire(r).encode())``): it must grow with the text.
        Line breaks and white space at a break are dropped; nothing else is lost, and
        formatting carries over into the next piece.
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        text = str(self)
        pieces: list[RichText] = []
        start = 0
        while start < len(text):
            if measure(self[start:]) <= limit:
                end = next_start = len(text)
            else:
                # The longest prefix that fits, by binary search (measure grows with length).
                lo, hi = start + 1, len(text)
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if measure(self[start:mid]) <= limit:
                        lo = mid
                    else:
                        hi = mid - 1
                window = text[start:lo]
                brk = window.rfind("\n")
                if brk <= len(window) // 3:
                    brk = max(window.rfind(" "), window.rfind("\t"))
                if brk > len(window) // 3:
                    end, next_start = start + brk, start + brk + 1
                else:
                    end = next_start = lo
            while end > start and text[end - 1] in " \t\n":
                end -= 1
            piece = self[start:end]
            if str(piece).strip(" \t\n"):  # only the white space we break at is dropped
                pieces.append(piece)
            start = next_start
            # Do not start the next piece with the white space we broke at.
            while start < len(text) and text[start] in " \t\n":
                start += 1
        return pieces


class FileType(enum.Enum):
    """What a :class:`File` contains, as far as plugs care."""

    unknown = 0
    image = 1


@dataclass(slots=True)
class File:
    """An attachment: a title, a type and where to fetch it from (usually a URL)."""

    title: str | None = None
    type: FileType = FileType.unknown
    source: str | None = None


@dataclass(slots=True)
class Location:
    """A point on a map, with an optional name and address."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None

    @property
    def map_link(self) -> str:
        return f"https://www.openstreetmap.org/?mlat={self.latitude}&mlon={self.longitude}"


_MESSAGE_FIELDS = (
    "text", "user", "action", "edited", "reply_to", "joined", "left", "title", "attachments", "raw",
)  # fmt: skip
_CONTENT_FIELDS = _MESSAGE_FIELDS[:-1]  # without raw, which belongs to one network


def _same(value: Any) -> Any:
    return value


# How Message.copy_of stores a changed field: as Message.__init__ would.
_COERCE: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_MESSAGE_FIELDS, _same),
    "text": RichText.of,
    **dict.fromkeys(("joined", "left", "attachments"), list),
}


def _fill(msg: Message, source: Message) -> None:
    """``source``'s content on a new ``msg`` (the text shared, the lists copied), without raw."""
    msg.text = source.text
    msg.user = source.user
    msg.action = source.action
    msg.edited = source.edited
    msg.reply_to = source.reply_to
    # Nearly always empty: a new list costs less than list() of an empty one.
    msg.joined = list(source.joined) if source.joined else []
    msg.left = list(source.left) if source.left else []
    msg.title = source.title
    msg.attachments = list(source.attachments) if source.attachments else []
    msg.raw = None
    msg.key = None


def _change(msg: Message, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setter = _COERCE.get(name)
        if setter is None:
            raise TypeError(f"{type(msg).__name__}.copy_of() got an unexpected field {name!r}")
        setattr(msg, name, setter(value))


class Message:
    """
    A message to send, or the content of one received.

    ``text`` is rich text (a plain string is converted); ``action`` marks a ``/me`` message;
    ``edited`` marks a new revision of an earlier message; ``reply_to`` is the message this
    answers; ``joined``/``left`` list users who entered or left the channel; ``title`` is a new
    channel title (a rename); ``attachments`` holds :class:`File`, :class:`Location` and
    forwarded :class:`Message` objects; ``raw`` is whatever the network gave, for plug use.
    """

    __slots__ = (*_MESSAGE_FIELDS, "key")

    def __init__(
        self,
        text: RichText | str | None = None,
        user: User | None = None,
        *,
        action: bool = False,
        edited: bool = False,
        reply_to: Message | None = None,
        joined: Sequence[User] = (),
        left: Sequence[User] = (),
        title: str | None = None,
        attachments: Sequence[File | Location | Message] = (),
        raw: Any = None,
    ):
        self.text = RichText.of(text)
        self.user = user
        self.action = action
        self.edited = edited
        self.reply_to = reply_to
        self.joined = list(joined) if joined else []  # (see _fill)
        self.left = list(left) if left else []
        self.title = title
        self.attachments = list(attachments) if attachments else []
        self.raw = raw
        #: The journal's key (see :class:`immp.Journal`): on a received message its journal
        #: entry, on a message to send its delivery (entry and target). A plug that can send
        #: idempotently derives its transaction ID from it (the same key never makes two
        #: messages); ``None`` when not journaled. Never copied by :meth:`copy_of`.
        self.key: str | None = None

    def content(self, **changes: Any) -> dict[str, Any]:
        """
        The message's content as keyword arguments (every field but ``raw``, shared, not
        copied), with some changed: for building another kind of message from this one, e.g.
        ``SentMessage(id, channel, **msg.content())``.
        """
        values = {name: getattr(self, name) for name in _CONTENT_FIELDS}
        values.update(changes)
        return values

    @classmethod
    def copy_of(cls, source: Message, /, **changes: Any) -> Message:
        """
        A new message of this class with the content of ``source`` (every field but ``raw``;
        the text is shared, the lists are copied), with some fields changed: what a plug's
        :meth:`~immp.Plug.put` or a bridge builds for every message it passes on, e.g.
        ``SentMessage.copy_of(msg, id=id, channel=channel)``. Faster than
        ``cls(**source.content())``, which it equals.
        """
        msg = cls.__new__(cls)
        _fill(msg, source)
        if changes:
            _change(msg, changes)
        return msg

    def clone(self, **changes: Any) -> Message:
        """A copy of the message content (never of a receipt) with some fields changed."""
        values = self.content(raw=self.raw)
        if values["text"] is not None:
            values["text"] = values["text"].clone()
        values.update(changes)
        return Message(**values)

    def render(self, *, name: bool = True, quote_reply: bool = False) -> RichText:
        """
        The message as one piece of rich text, for networks without structure: the author's name
        (``<name> text`` or ``* name text`` for actions), joins/parts and renames in words, and
        attachments as their title and link.
        """
        out = RichText()
        who = self.user.name if self.user else None
        if quote_reply and isinstance(self.reply_to, Message) and self.reply_to.text:
            quoted = str(self.reply_to.text).replace("\n", " ")
            if len(quoted) > 40:
                quoted = quoted[:39] + "…"
            author = self.reply_to.user.name if self.reply_to.user else None
            out.append(Segment(f'[re {author}: "{quoted}"] ' if author else f'[re "{quoted}"] '))
        if self.text:
            if name and who:
                out.prepend(Segment(f"* {who} " if self.action else f"<{who}> "))
            out = out + self.text
        for user in self.joined:
            out.append(("\n" if out else "") + f"{user.name} joined")
        for user in self.left:
            out.append(("\n" if out else "") + f"{user.name} left")
        if self.title is not None:
            out.append(
                ("\n" if out else "") + f"{who or 'Someone'} changed the title to: {self.title}"
            )
        for item in self.attachments:
            line = _render_attachment(item)
            if line:
                out.append(("\n" if out else "") + line)
        if self.edited and out:
            out.append(" (edited)")
        return out

    def __repr__(self) -> str:
        bits = [
            f"{name}={getattr(self, name)!r}" for name in ("text", "user") if getattr(self, name)
        ]
        for flag in ("action", "edited"):
            if getattr(self, flag):
                bits.append(flag)
        return f"<{type(self).__name__} {' '.join(bits)}>"


def _render_attachment(item: File | Location | Message) -> str | None:
    if isinstance(item, File):
        kind = "image" if item.type is FileType.image else "file"
        title = item.title or kind
        return f"[{kind}: {title}] {item.source}" if item.source else f"[{kind}: {title}]"
    if isinstance(item, Location):
        label = item.name or item.address or f"{item.latitude}, {item.longitude}"
        return f"[location: {label}] {item.map_link}"
    if isinstance(item, Message):
        who = item.user.name if item.user else "someone"
        return f"[forwarded from {who}] {item.text or ''}".rstrip()
    return None


@dataclass(slots=True, eq=False)
class Receipt:
    """
    Where and when a message exists on a network: its ``id`` in ``channel``, the time ``at``,
    a ``revision`` (bumped by edits, so that newer edits win) and whether it was ``deleted``.
    """

    id: str
    channel: Channel
    at: float = field(default_factory=time.time)
    revision: int = 0
    deleted: bool = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Receipt):
            return NotImplemented
        return self.id == other.id and self.channel == other.channel

    def __hash__(self) -> int:
        return hash((self.id, self.channel))


class SentMessage(Message):
    """
    A message that exists on a network: a :class:`Message` and a :class:`Receipt` in one. A
    deletion is a ``SentMessage`` with ``deleted=True`` and usually no content.
    """

    __slots__ = ("at", "channel", "deleted", "id", "revision")

    def __init__(
        self,
        id: str | None = None,
        channel: Channel | None = None,
        *,
        at: float | None = None,
        revision: int = 0,
        deleted: bool = False,
        id_: str | None = None,
        **content: Any,
    ):
        Message.__init__(self, **content)  # (not super(): a lookup less per message)
        self.id = id if id_ is None else id_  # id_: IMMP's spelling
        self.channel = channel
        self.at = time.time() if at is None else at
        self.revision = revision
        self.deleted = deleted

    @classmethod
    def copy_of(
        cls,
        source: Message,
        /,
        id: str,
        channel: Channel,
        *,
        at: float | None = None,
        revision: int = 0,
        deleted: bool = False,
        **changes: Any,
    ) -> SentMessage:
        """
        ``source``'s content as a message that exists as ``id`` in ``channel`` (see
        :meth:`Message.copy_of`): what a plug's :meth:`~immp.Plug.put` usually makes.
        """
        # Message.copy_of inline (no super() and no keyword dict): a plug's put makes one of
        # these for every message it sends.
        sent = cls.__new__(cls)
        _fill(sent, source)
        if changes:
            _change(sent, changes)
        sent.id = id
        sent.channel = channel
        sent.at = time.time() if at is None else at
        sent.revision = revision
        sent.deleted = deleted
        return sent

    @property
    def receipt(self) -> Receipt:
        return Receipt(self.id, self.channel, self.at, self.revision, self.deleted)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SentMessage, Receipt)):
            return self.id == other.id and self.channel == other.channel
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.id, self.channel))

    def __repr__(self) -> str:
        return f"<SentMessage {self.channel!r} {self.id!r} {super().__repr__()}>"
