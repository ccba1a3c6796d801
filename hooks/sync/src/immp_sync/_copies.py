"""
Which messages are copies of which: a message received in a bridged channel and every copy the
hook made of it, looked up by any of them, so that edits, deletions and replies reach the copies.

The hooks use a :class:`StoreCopyMap`: the latest ``history`` entries in memory (the hot path
never waits) in front of ``host.store.messages``, which keeps every entry for the store's
retention, across restarts. An entry is stored as
``{"origin": [channel, id], "ids": {channel: [id, ...]}, "deleted": true}`` with channels as
:func:`immp.channel_key` strings (plug config name and network channel ID), under the hook's
config name. What reading it back implies is left out: ``ids`` lacks the origin's own ID (unless
that channel has others), and ``deleted`` is there only when true.
"""

from __future__ import annotations

import json
from collections import deque
from functools import partial
from json.encoder import encode_basestring

import immp


class Copies:
    """
    One synced message: where it was first posted (``origin``, a ``(channel, id)`` pair) and the
    IDs it has on each channel (``ids``; the origin is in there too). A copy a network split into
    several messages has several IDs, first part first.
    """

    __slots__ = ("deleted", "forgotten", "ids", "origin", "pending", "stored_as")

    def __init__(self, channel: immp.Channel, id: str):
        self.origin = (channel, id)
        #: The entry's key in the store (set by :class:`StoreCopyMap`).
        self.stored_as: str | None = None
        self.ids: dict[immp.Channel, tuple[str, ...]] = {channel: (id,)}
        #: Set once a deletion was passed on, so that echoes of our own deletions stop there.
        self.deleted = False
        #: Set when a map forgot this entry (nothing points at it any more).
        self.forgotten = False
        #: While above zero, deliveries of a new entry are still under way (plus one while the
        #: hook is still handing them out): a :class:`StoreCopyMap` writes the entry once, with
        #: all its copies, when the last of them is recorded or settled.
        self.pending = 0

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

    def changed(self, copies: Copies) -> None:
        """Record that an entry's flags changed (``deleted``)."""

    def settle(self, copies: Copies) -> None:
        """
        One of a new entry's ``pending`` deliveries ended without a copy (it failed, or the
        target took it without one), or the hook has handed out all of them.
        """

    async def recall(self, channel: immp.Channel, id: str) -> Copies | None:
        """
        Like :meth:`find`, and also where the map keeps what it no longer holds in memory (a
        message bridged before a restart), waiting for it if need be. ``None`` if unknown.
        """
        return self.find(channel, id)


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
        index = self._index.get(channel)
        if index is None:
            index = self._index[channel] = {}
        index[id] = copies
        self._entries.append(copies)
        while len(self._entries) > self.size:
            self._forget(self._entries.popleft())

    def add_copy(self, copies: Copies, channel: immp.Channel, ids: tuple[str, ...]) -> None:
        copies.ids[channel] = ids
        if copies.forgotten:
            return  # already forgotten: nothing may point at it any more
        index = self._index.get(channel)
        if index is None:
            index = self._index[channel] = {}
        for id in ids:
            index[id] = copies

    def keep(self, copies: Copies) -> None:
        """Hold an entry that is known elsewhere (read back from a store), indexed by every ID."""
        copies.forgotten = False
        for channel, ids in copies.ids.items():
            index = self._index.setdefault(channel, {})
            for id in ids:
                index[id] = copies
        self._entries.append(copies)
        while len(self._entries) > self.size:
            self._forget(self._entries.popleft())

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


class StoreCopyMap(MemoryCopyMap):
    """
    The latest ``size`` entries in memory, in front of ``host.store.messages`` (under the hook's
    name): every new entry and copy is queued for the store, and :meth:`recall` looks there for
    what memory no longer holds. Entries whose origin plug is no longer configured cannot be
    read back (their channels are named by plug config names); copies on channels of such plugs
    are left out.
    """

    def __init__(self, size: int, hook: immp.Hook):
        super().__init__(size)
        self._hook = hook
        # Channel -> immp.channel_key(channel): worked out once per channel, not per copy; and
        # the key as JSON text, kept in step with it (the only one _entry reads).
        self._keys: dict[immp.Channel, str] = {}
        self._texts: dict[immp.Channel, str] = {}

    def _key(self, channel: immp.Channel, key: str | None = None) -> str:
        known = self._keys.get(channel)
        if known is None or (key is not None and key != known):
            known = key or immp.channel_key(channel)
            self._texts[channel] = encode_basestring(known)
            self._keys[channel] = known
        return known

    # A new entry is written once, when its copies are known (one store write per bridged
    # message, not one more per copy): ``add`` holds it (``pending`` is 1), the hook counts
    # each delivery it hands out and settles its own hold, and the last delivery to be recorded
    # (``add_copy``) or settled writes it with every copy's IDs.

    def add(self, copies: Copies) -> None:
        super().add(copies)
        channel, id = copies.origin
        # Found by its key (immp.message_key of the origin): no index row for the origin.
        copies.stored_as = immp.message_key(self._keys.get(channel) or self._key(channel), id)
        copies.pending = 1

    def add_copy(self, copies: Copies, channel: immp.Channel, ids: tuple[str, ...]) -> None:
        super().add_copy(copies, channel, ids)
        if copies.pending:
            copies.pending -= 1
            if not copies.pending:
                self._save_whole(copies)
            return
        key = self._keys.get(channel) or self._key(channel)
        self._save(copies, [(key, id) for id in ids])

    def settle(self, copies: Copies) -> None:
        if copies.pending:
            copies.pending -= 1
            if not copies.pending:
                self._save_whole(copies)

    def _forget(self, copies: Copies) -> None:
        super()._forget(copies)
        if copies.pending:  # a delivery that never ran (dropped for a stuck target)
            copies.pending = 0
            self._save_whole(copies)

    def _save_whole(self, copies: Copies) -> None:
        get = self._keys.get
        origin = copies.origin[0]
        ids = []
        for channel, copy_ids in copies.ids.items():
            if channel != origin:
                key = get(channel) or self._key(channel)
                if len(copy_ids) == 1:  # (a comprehension is a call of its own)
                    ids.append((key, copy_ids[0]))
                else:
                    ids.extend([(key, id) for id in copy_ids])
        self._save(copies, ids)

    def changed(self, copies: Copies) -> None:
        self._save(copies, [])

    async def recall(self, channel: immp.Channel, id: str) -> Copies | None:
        copies = self.find(channel, id)
        if copies is not None:
            return copies
        hook = self._hook
        entry = await hook.host.store.messages.find(hook.name, self._key(channel), id)
        copies = self.find(channel, id)  # added while we waited
        if copies is not None or entry is None:
            return copies
        copies = self._revive(entry)
        if copies is not None:
            self.keep(copies)
        return copies

    def _save(self, copies: Copies, ids: list[tuple[str, str]]) -> None:
        if copies.stored_as is None:
            return  # read back from the store, then forgotten and changed: nothing to index
        # The entry is made when the store writes it (once for all the puts of a flush), maybe
        # in the store's thread: _entry reads only what this side replaces whole.
        hook = self._hook
        hook.host.store.messages.put(hook.name, copies.stored_as, partial(self._entry, copies), ids)

    def _entry(self, copies: Copies, text=encode_basestring) -> str:
        # The entry's JSON text, put together here from each channel key's text (encoded once
        # per channel): this runs in the store's thread, which holds the GIL while it does, and
        # a dict of the same for the store to encode cost about twice as much. ``text`` encodes
        # one ID (json.dumps, if a plug gave an ID that is not a string).
        code = self._texts.get
        channel, id = copies.origin
        origin = code(channel) or "null"
        own = (id,)
        try:
            parts = []
            # (a list of the items is taken at once, whatever the other thread does meanwhile)
            for copy, copy_ids in list(copies.ids.items()):
                key = code(copy)
                if key is None:
                    continue
                # What _revive knows without being told is left out: the origin's own ID (it
                # is in "origin") and "deleted" while it is false. A shorter entry is less to
                # encode, parse and store for every message.
                if copy_ids == own and key == origin:
                    continue
                if len(copy_ids) == 1:
                    parts.append(f"{key}:[{text(copy_ids[0])}]")
                else:
                    parts.append(f"{key}:[{','.join(map(text, copy_ids))}]")
            entry = f'{{"origin":[{origin},{text(id)}],"ids":{{{",".join(parts)}}}'
        except TypeError:
            if text is encode_basestring:
                return self._entry(copies, partial(json.dumps, ensure_ascii=False))
            raise
        return entry + (',"deleted":true}' if copies.deleted else "}")

    def _revive(self, entry: dict) -> Copies | None:
        plugs = self._hook.host.plugs

        def channel_of(key: str) -> immp.Channel | None:
            name, _, source = key.partition("\x1f")
            plug = plugs.get(name)
            return immp.Channel(plug, source) if plug is not None else None

        try:
            origin_key, origin_id = entry["origin"]
            origin = channel_of(origin_key)
            if origin is None:
                return None
            copies = Copies(origin, origin_id)
            copies.stored_as = immp.message_key(origin_key, origin_id)
            self._key(origin, origin_key)
            for key, ids in entry["ids"].items():
                channel = channel_of(key)
                if channel is not None:
                    copies.ids[channel] = tuple(ids)
                    self._key(channel, key)
            copies.deleted = bool(entry.get("deleted"))
        except (KeyError, TypeError, ValueError):
            return None  # not an entry this map wrote
        return copies
