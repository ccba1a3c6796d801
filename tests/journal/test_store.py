"""
The journal's rows in each store that keeps them (SQLite, PostgreSQL; ``new_store`` in
conftest.py): what a process wrote is what the next one reads, in the order written, per
namespace, with writes merged to their net effect before each commit.
"""

from __future__ import annotations

import pytest

from immp._journal import DONE, PENDING, WRITING

from .conftest import DURABLE
from .helpers import load_journal

durable = pytest.mark.parametrize("new_store", DURABLE, indirect=True)


@durable
async def test_entries_and_deliveries_outlive_the_store_in_the_order_written(new_store):
    store = new_store()
    await store.open()
    # Keys out of alphabetical order, and a later entry older: the order is the order written.
    store.journal_write([("entry", "r.10", 100.5, '{"n":10}'), ("entry", "r.9", 99.0, '{"n":9}'),
                         ("delivery", "r.10", "r.10/b", PENDING),
                         ("delivery", "r.10", "r.10/c", PENDING)])  # fmt: skip
    store.journal_write([("entry", "r.11", 101.0, lambda: '{"n":11}')])  # made when written
    # A function may give the message as JSON-ready data instead: stored as its JSON text.
    store.journal_write([("entry", "r.12", 102.0, lambda: {"n": 12, "t": 'é "\\\x1f', "at": 0.1})])
    await store.flush()
    store.journal_write([("delivery", "r.10", "r.10/b", WRITING),
                         ("delivery", "r.10", "r.10/c", DONE),
                         ("delivery", "r.9", "r.9/b", PENDING), ("done", "r.11")])  # fmt: skip
    await store.close()
    entries, deliveries = await load_journal(new_store())
    assert entries == [("r.10", 100.5, '{"n":10}'), ("r.9", 99.0, '{"n":9}'),
                       ("r.12", 102.0, '{"n":12,"t":"é \\"\\\\\\u001f","at":0.1}')]  # fmt: skip
    assert sorted(deliveries) == [("r.10", "r.10/b", WRITING), ("r.10", "r.10/c", DONE),
                                  ("r.9", "r.9/b", PENDING)]  # fmt: skip


@durable
async def test_done_deletes_an_entry_with_its_deliveries_and_one_done_in_its_round_is_never_written(
    new_store,
):
    store = new_store()
    await store.open()
    store.journal_write([("entry", "a", 1.0, "{}"), ("delivery", "a", "a/x", PENDING)])
    await store.flush()
    flushes = store.stats()["flushes"]
    # Received and delivered between two commits: nothing to write (the text is never made).
    # (One call: one round, whenever the thread wakes.)
    store.journal_write([("entry", "b", 2.0, lambda: pytest.fail("encoded")),
                         ("delivery", "b", "b/x", PENDING), ("done", "b"),
                         ("done", "a")])  # fmt: skip
    await store.flush()
    assert store.stats()["flushes"] == flushes + 1
    await store.close()
    assert await load_journal(new_store()) == ([], [])


@durable
async def test_two_namespaces_on_one_database_never_see_each_others_rows(new_store):
    east, west = new_store("east"), new_store("west")
    for store in (east, west):  # the same keys in both, as two instances started at once
        await store.open()
        store.journal_write([("entry", "k.1", 1.0, f'"{store.namespace}"'),
                             ("delivery", "k.1", "k.1/b", PENDING),
                             ("entry", "k.2", 2.0, "{}")])  # fmt: skip
        await store.flush()
    east.journal_write([("done", "k.1")])
    west.journal_write([("delivery", "k.1", "k.1/b", WRITING)])
    for store in (east, west):
        await store.close()
    assert await load_journal(new_store("east")) == ([("k.2", 2.0, "{}")], [])
    assert await load_journal(new_store("west")) == (
        [("k.1", 1.0, '"west"'), ("k.2", 2.0, "{}")], [("k.1", "k.1/b", WRITING)])  # fmt: skip
    assert await load_journal(new_store("north")) == ([], [])


@durable
async def test_a_cursor_set_after_the_entries_is_kept_with_them(new_store):
    # A plug sets its cursor after Plug.taken() handed the entries over: the same round (one
    # transaction with state and journal rows) or a later one.
    store = new_store()
    await store.open()
    store.journal_write([("entry", "e.1", 1.0, "{}"), ("delivery", "e.1", "e.1/b", PENDING)])
    store.set("src", "cursor", 1)
    await store.close()
    again = new_store()
    await again.open()
    assert await again.get("src", "cursor") == 1
    assert await again.journal_load() == ([("e.1", 1.0, "{}")], [("e.1", "e.1/b", PENDING)])
    await again.close()
