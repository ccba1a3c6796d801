"""The bounded message -> copies map, and the plugin registration."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

import immp
import immp_sync.plugin
from immp_sync import Copies, ForwardHook, MemoryCopyMap, StoreCopyMap, SyncHook


class _Plug:
    name = "p"


def _channel(source: str) -> immp.Channel:
    return immp.Channel(_PLUG, source)


_PLUG = _Plug()


def test_find_by_origin_or_copy():
    copies_map = MemoryCopyMap(10)
    entry = Copies(_channel("a"), "1")
    copies_map.add(entry)
    copies_map.add_copy(entry, _channel("b"), ("7", "8"))
    assert copies_map.find(_channel("a"), "1") is entry
    assert copies_map.find(_channel("b"), "8") is entry
    assert entry.is_origin(_channel("a"), "1") and not entry.is_origin(_channel("b"), "7")
    assert copies_map.find(_channel("b"), "1") is None


class _Named:
    def __init__(self, name: str):
        self.name = name


class _Hook:
    """What StoreCopyMap uses of its hook: a name, and host.store.messages.put (kept)."""

    name = "sync"

    def __init__(self, plugs):
        self.puts = []
        messages = type("Messages", (), {"put": lambda _, *args: self.puts.append(args)})()
        store = type("Store", (), {"messages": messages})()
        self.host = type("Host", (), {"store": store, "plugs": plugs})()


@given(
    # (plug names never hold U+001F, which ends the name in a channel key)
    st.lists(
        st.text(st.characters(blacklist_characters="\x1f"), min_size=1),
        min_size=3,
        max_size=3,
        unique=True,
    ),
    st.text(),
    st.lists(st.lists(st.text(), min_size=1, max_size=3), min_size=2, max_size=2),
    st.booleans(),
)
def test_store_entry_text_reads_back_as_the_entry(names, source, copy_ids, deleted):
    # The entry is put together as JSON text from each channel key's encoded text: whatever
    # the names, sources and IDs (quotes, U+001F, newlines, non-ASCII), it is valid JSON, the
    # same as encoding the entry's dict, and _revive reads it back to the same copies.
    plugs = {name: _Named(name) for name in names}
    hook = _Hook(plugs)
    copies_map = StoreCopyMap(10, hook)
    origin, *targets = (immp.Channel(plugs[name], source) for name in names)
    entry = Copies(origin, "1")
    copies_map.add(entry)
    entry.pending += 2
    for channel, ids in zip(targets, copy_ids, strict=True):
        copies_map.add_copy(entry, channel, tuple(ids))
    entry.deleted = deleted
    copies_map.settle(entry)
    _, key, made, _ = hook.puts[-1]
    text = made()
    copied = dict(zip(targets, copy_ids, strict=True))
    ids = {immp.channel_key(channel): ids for channel, ids in copied.items()}
    expected = {"origin": [immp.channel_key(origin), "1"], "ids": ids}
    if deleted:
        expected["deleted"] = True
    assert json.loads(text) == expected
    assert text == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    revived = StoreCopyMap(10, hook)._revive(json.loads(text))
    assert revived.origin == (origin, "1") and revived.stored_as == key
    assert revived.ids == {origin: ("1",), **{c: tuple(i) for c, i in copied.items()}}
    assert revived.deleted is deleted


def test_store_entry_text_takes_ids_that_are_not_strings():
    # A plug's mistake (an int for an ID) is encoded as JSON would, not refused.
    plug = _Named("p")
    hook = _Hook({"p": plug})
    copies_map = StoreCopyMap(10, hook)
    entry = Copies(immp.Channel(plug, "a"), "1")
    copies_map.add(entry)
    copies_map.add_copy(entry, immp.Channel(plug, "b"), (7,))
    assert json.loads(hook.puts[-1][2]()) == {"origin": ["p\x1fa", "1"], "ids": {"p\x1fb": [7]}}


@given(st.integers(1, 20), st.integers(0, 200))
def test_stays_bounded_and_forgets_whole_entries(size, count):
    copies_map = MemoryCopyMap(size)
    entries = []
    for i in range(count):
        entry = Copies(_channel("a"), str(i))
        copies_map.add(entry)
        entries.append(entry)
        if i >= 1:
            # A copy recorded late, maybe after its entry was forgotten.
            copies_map.add_copy(entries[i - 1], _channel("b"), (f"c{i - 1}",))
    assert len(copies_map) == min(size, count)
    indexed = sum(len(ids) for ids in copies_map._index.values())
    assert indexed <= 2 * size
    for i, entry in enumerate(entries):
        kept = i >= count - size
        assert (copies_map.find(_channel("a"), str(i)) is entry) == kept


def test_registers_short_names_and_original_paths():
    found = {}

    def register(name, cls, aliases=()):
        found[name] = (cls, list(aliases))

    immp_sync.plugin.register_hooks(register)
    assert found == {
        "sync": (SyncHook, ["immp.hook.sync.SyncHook"]),
        "forward": (ForwardHook, ["immp.hook.sync.ForwardHook"]),
    }
