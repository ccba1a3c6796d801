"""
Which messages are copies of which: a message received in a bridged channel and every copy the
hook made of it, looked up by any of them, so that edits, deletions and replies reach the copies.
"""

from __future__ import annotations

from collections import deque

import immp


class Copies:
    """
    One synced message: where it was first posted (``origin``, a ``(channel, id)`` pair) and the
    IDs it has on each channel (``ids``; the origin is in there too). A copy a network split into
    several messages has several IDs, first part first.
    """

    __slots__ = ("deleted", "forgotten", "ids", "origin")

    def __init__(self, channel: immp.Channel, id: str):
        self.origin = (channel, id)
        self.ids: dict[immp.Channel, tuple[str, ...]] = {channel: (id,)}
        #: Set once a deletion was passed on, so that echoes of our own deletions stop there.
        self.deleted = False
        #: Set when a map forgot this entry (nothing points at it any more).
        self.forgotten = False

    def is_origin(self, channel: immp.Channel, id: str) -> bool:
        return self.origin[1] == id and self.origin[0] == channel

    def __repr__(self) -> str:
        channel, id = self.origin
        return f"<Copies of {channel!r} {id!r}: {len(self.ids) - 1} copies>"


class CopyMap:
    """
    Where a hook keeps its :class:`Copies`. This is the whole interface the hooks use, so that a
    database could back it later; :class:`MemoryCopyMap` is the in-memory implementation.

    A map may forget: :meth:`find` then returns ``None`` and the hook treats the message as new.
    """

    def find(self, channel: immp.Channel, id: str) -> Copies | None:
        """The entry that ``(channel, id)`` belongs to, as the origin or as a copy."""
        raise NotImplementedError

    def add(self, copies: Copies) -> None:
        """Remember a new synced message (only its origin is known yet)."""
        raise NotImplementedError

    def add_copy(self, copies: Copies, channel: immp.Channel, ids: tuple[str, ...]) -> None:
        """Record the IDs of the copy on ``channel``."""
        raise NotImplementedError


class MemoryCopyMap(CopyMap):
    """
    The latest ``size`` synced messages in memory. When full, the oldest entry and all its IDs
    are forgotten together; a copy recorded after its entry was forgotten is not indexed.
    """

    def __init__(self, size: int):
        self.size = size
        self._entries: deque[Copies] = deque()  # oldest first
        # channel -> id -> entry; nested so that a lookup builds no tuple.
        self._index: dict[immp.Channel, dict[str, Copies]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, channel: immp.Channel, id: str) -> Copies | None:
        ids = self._index.get(channel)
        return ids.get(id) if ids is not None else None

    def add(self, copies: Copies) -> None:
        channel, id = copies.origin
        self._index.setdefault(channel, {})[id] = copies
        self._entries.append(copies)
        while len(self._entries) > self.size:
            self._forget(self._entries.popleft())

    def add_copy(self, copies: Copies, channel: immp.Channel, ids: tuple[str, ...]) -> None:
        copies.ids[channel] = ids
        if copies.forgotten:
            return  # already forgotten: nothing may point at it any more
        index = self._index.setdefault(channel, {})
        for id in ids:
            index[id] = copies

    def _forget(self, copies: Copies) -> None:
        copies.forgotten = True
        for channel, ids in copies.ids.items():
            index = self._index.get(channel)
            if index is None:
                continue
            for id in ids:
                if index.get(id) is copies:
                    del index[id]
            if not index:
                del self._index[channel]
