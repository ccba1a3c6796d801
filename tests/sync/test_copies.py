"""The bounded message -> copies map, and the plugin registration."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import immp
import immp_sync.plugin
from immp_sync import Copies, ForwardHook, MemoryCopyMap, SyncHook


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
