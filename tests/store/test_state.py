"""self.state and host.store on the memory store (the default of a host built without a file)."""

from __future__ import annotations

import time

import pytest

import immp
from immp.testing import running


class Remembering(immp.Plug):
    """A plug that counts its openings in its state, from open()."""

    async def open(self):
        self.opened = await self.state.get("opened", 0) + 1
        await self.state.set("opened", self.opened)

    async def put(self, channel, msg):
        return []


class Noting(immp.Hook):
    async def open(self):
        self.seen = await self.state.get("seen")


def _host(**kwargs) -> immp.Host:
    host = immp.Host(**kwargs)
    host.add_plug(Remembering("plug", {}, host))
    host.add_hook(Noting("hook", {}, host))
    return host


async def test_state_kept_across_runs_of_one_host():
    host = _host()
    assert isinstance(host.store, immp.MemoryStore)
    for expected in (1, 2, 3):
        async with running(host):
            assert host.plugs["plug"].opened == expected


async def test_areas_are_per_item_and_namespace():
    store = immp.MemoryStore(namespace="a")
    host = _host(store=store)
    async with running(host):
        plug, hook = host.plugs["plug"], host.hooks["hook"]
        await plug.state.set("k", {"nested": [1, "two", None]})
        assert await hook.state.get("k") is None
        assert await plug.state.get("k") == {"nested": [1, "two", None]}
        assert await plug.state.get("missing", "default") == "default"
        await plug.state.delete("k")
        assert await plug.state.get("k", 5) == 5


async def test_values_must_be_json():
    host = _host()
    async with running(host):
        with pytest.raises(TypeError):
            await host.plugs["plug"].state.set("k", object())


async def test_read_values_are_copies():
    host = _host()
    async with running(host):
        state = host.plugs["plug"].state
        value = {"list": [1]}
        await state.set("k", value)
        value["list"].append(2)
        got = await state.get("k")
        got["list"].append(3)
        assert await state.get("k") == {"list": [1]}


async def test_message_map_finds_entry_by_any_id():
    store = immp.MemoryStore()
    await store.open()
    entry = {"origin": ["a\x1froom", "1"], "ids": {"a\x1froom": ["1"], "b\x1froom": ["x", "y"]}}
    store.messages.put("sync", "a\x1froom\x1f1", entry, [("a\x1froom", "1")])
    store.messages.put("sync", "a\x1froom\x1f1", entry, [("b\x1froom", "x"), ("b\x1froom", "y")])
    for channel, id in (("a\x1froom", "1"), ("b\x1froom", "x"), ("b\x1froom", "y")):
        assert await store.messages.find("sync", channel, id) == entry
    assert await store.messages.find("other", "a\x1froom", "1") is None
    assert store.prune(before=0) == 0
    assert store.prune(before=time.time() + 1) == 1
    assert await store.messages.find("sync", "b\x1froom", "x") is None
    await store.close()


def test_channel_key_uses_config_names():
    host = immp.Host()
    plug = host.add_plug(Remembering("irc", {}, host))
    assert immp.channel_key(immp.Channel(plug, "#room")) == "irc\x1f#room"


def test_store_url_memory_and_unknown(tmp_path):
    host = immp.build_host({"store": "memory"}, file=str(tmp_path / "bridge.yaml"))
    assert isinstance(host.store, immp.MemoryStore)
    assert host.store.namespace == "bridge"
    with pytest.raises(immp.ConfigError) as caught:
        immp.build_host({"store": "nosuch://x"}, file=str(tmp_path / "bridge.yaml"))
    assert "(installed: memory, " in str(caught.value) and caught.value.path == "store"
    assert "sqlite)" in str(caught.value)  # (and postgresql where immp-store-postgres is)


async def test_host_stats_include_the_store(tmp_path):
    host = _host(store=immp.SQLiteStore(tmp_path / "s.db"))
    async with running(host):
        await host.plugs["plug"].state.set("k", 1)
        await host.store.flush()
        stats = host.stats()["store"]
    assert stats["backend"] == "sqlite" and stats["flushes"] >= 1
    assert stats["queue_depth"] == 0 and stats["flush_seconds_total"] > 0
    assert stats["last_flush_seconds"] > 0 and stats["reachable"]


def test_a_full_write_queue_drops_its_oldest_writes_first_and_keeps_the_newest():
    # What the store does while its database is unreachable and the queue reached max_queue.
    batch = immp.WriteBatch()
    for n in range(100):
        batch.add(("message", "sync", f"m{n}", {"n": n}, [("a\x1froom", str(n))]))
    for n in range(10):
        batch.add(("state", "plug", f"s{n}", str(n)))
    assert batch.drop_oldest(30) == 30
    assert [key for _, key in batch.messages] == [f"m{n}" for n in range(30, 100)]
    assert len(batch) == 80
    # Message entries go before state; what is asked beyond what is queued is not invented.
    assert batch.drop_oldest(75) == 75
    assert not batch.messages and [key for _, key in batch.state] == ["s5", "s6", "s7", "s8", "s9"]
    assert batch.drop_oldest(50) == 5 and len(batch) == 0
