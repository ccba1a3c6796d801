"""
The journal with more than one hook on a channel, with hooks that do not route through it, and
with a target that keeps failing: an entry is done only once every hook that routes through the
journal was done with it and its deliveries are; an entry of the last run goes to those hooks
only; and an entry older than the age limit is let go while the process runs. Each test runs on
every store that keeps a journal (``new_store`` in conftest.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import pytest
import trio

import immp
from immp._journal import DONE, encode
from immp.testing import running
from immp_commands import CommandHook
from immp_demo import DemoPlug
from immp_sync import SyncHook
from tests.commands.helpers import ToolHook
from tests.journal.helpers import load_journal

DEMO = {"interval": None, "channel": "room", "echo": False}


class Flaky(DemoPlug):
    """A demo plug whose network refuses what is sent (put, edit) while ``fail`` is set."""

    fail = False
    refuse = False  # for good (immp.SendRefused): the bot may not post there

    async def put(self, channel, msg):
        if self.refuse:
            raise immp.SendRefused("you may not post here")
        if self.fail:
            raise immp.PlugError("network says no")
        return await super().put(channel, msg)

    async def edit(self, receipt, msg):
        if self.fail:
            raise immp.PlugError("network says no")
        return await super().edit(receipt, msg)


class SlowSync(SyncHook):
    """A sync hook that takes a moment per message (a backlog, a store lookup that missed)."""

    async def on_receive(self, sent, source, primary):
        await trio.sleep(0.3)
        await super().on_receive(sent, source, primary)


def _host(store, *, second=SyncHook, first_config=None, plugs="abc", **journal) -> immp.Host:
    """Hook s1 bridges a and b; hook s2 bridges a and the others. Plug c is :class:`Flaky`."""
    host = immp.Host(store=store, journal=True, close_timeout=1, **journal)
    for name in plugs:
        cls = Flaky if name == "c" else DemoPlug
        host.add_plug(cls(name, DEMO, host))
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
    host.add_hook(SyncHook("s1", {"channels": {"main": ["a-room", "b-room"]},
                                  **(first_config or {})}, host))  # fmt: skip
    others = [f"{name}-room" for name in plugs if name != "b"]
    host.add_hook(second("s2", {"channels": {"other": others}}, host))
    return host


async def test_a_delivery_of_the_slower_hook_is_kept_when_the_faster_one_finished(new_store):
    # s1 bridges a->b, s2 (a moment slower) a->c, whose network refuses the copy. s1's delivery
    # must not end the entry: the next start delivers c's copy.
    host = _host(new_store(), second=SlowSync)
    async with running(host):
        host.plugs["c"].fail = True
        await host.plugs["a"].receive("hello")
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(1)
        await trio.sleep(0.6)  # s2 routed it, and c refused it
        assert host.journal.stats()["deliveries"] == 1  # c's, not confirmed
    assert "kept for the next start" in host.journal.summary()
    entries, _ = await load_journal(new_store())
    assert len(entries) == 1, "the entry with c's undelivered copy is gone from the store"
    again = _host(new_store(), second=SlowSync)
    async with running(again):
        with trio.fail_after(10):
            await again.plugs["c"].wait_puts(1)
        await trio.sleep(0.1)
        assert [str(m.text) for _, m in again.plugs["c"].puts] == ["hello"]
        assert list(again.plugs["b"].puts) == []  # done before the restart: not sent again


async def test_a_copy_the_network_refused_for_good_is_not_sent_again_at_the_next_start(
    new_store,
):
    # c refuses "no" for good (SendRefused) and "later" for now (its network is down): the next
    # start sends c the second only, and nothing is left in the journal.
    host = _host(new_store(), plugs="ac")
    c = host.plugs["c"]
    async with running(host):
        c.refuse = True
        await host.plugs["a"].receive("no")
        await trio.sleep(0.3)
        c.refuse, c.fail = False, True
        await host.plugs["a"].receive("later")
        await trio.sleep(0.3)
        assert host.journal.stats()["refused"] == 1
        assert host.journal.stats()["deliveries"] == 1  # "later", not confirmed
    assert host.journal.summary().startswith("1 delivery of 1 message not confirmed")
    again = _host(new_store(), plugs="ac")
    async with running(again):
        with trio.fail_after(10):
            await again.plugs["c"].wait_puts(1)
        await trio.sleep(0.3)
        assert [str(m.text) for _, m in again.plugs["c"].puts] == ["later"]
    assert again.journal.summary() == "every journaled message was delivered"
    assert await load_journal(new_store()) == ([], [])


async def test_an_edit_one_hook_does_not_copy_still_goes_to_the_other_hooks_target(new_store):
    # s1 does not copy edits (edits: false): it routes the edit nowhere. s2 copies it to c,
    # whose network refuses it for now: the edit stays journaled for the next start.
    host = _host(new_store(), second=SlowSync, first_config={"edits": False})
    async with running(host):
        sent = await host.plugs["a"].receive("hello")
        with trio.fail_after(10):
            await host.plugs["c"].wait_puts(1)
        host.plugs["c"].fail = True
        await host.plugs["a"].edit_message(sent.id, "hello, edited")
        await trio.sleep(0.6)
        assert host.journal.stats()["deliveries"] == 1  # the edit to c, not confirmed
    assert "kept for the next start" in host.journal.summary()
    entries, _ = await load_journal(new_store())
    assert len(entries) == 1, "the edit's entry is gone from the store"


async def test_an_entry_of_the_last_run_goes_to_every_hook_without_repeating_what_was_done(
    new_store,
):
    # A killed process left one entry: delivered to b (by s1) and to c (by s2), not yet to d
    # (s2). Each hook learns what is done: only d gets it.
    host = _host(new_store(), plugs="abcd")
    store = new_store()
    await store.open()
    a = host.plugs["a"]
    sent = immp.SentMessage("m1", immp.Channel(a, "room"), text="left over",
                            user=immp.User("alice", a, username="alice"))  # fmt: skip
    store.journal_write([("entry", "e1", time.time() - 1, encode(sent)),
                         ("delivery", "e1", "e1/b\x1froom", DONE),
                         ("delivery", "e1", "e1/c\x1froom", DONE)])  # fmt: skip
    await store.close()
    async with running(host):
        with trio.fail_after(10):
            await host.plugs["d"].wait_puts(1)
        await trio.sleep(0.3)
        got = {name: [str(m.text) for _, m in host.plugs[name].puts] for name in "bcd"}
    assert got == {"b": [], "c": [], "d": ["left over"]}
    assert await load_journal(new_store()) == ([], [])


def _commands_host(new_store, plug: type[DemoPlug] = DemoPlug) -> immp.Host:
    """Plug a with the commands hook and ToolHook's commands (``!ping`` answers ``pong``)."""
    host = immp.Host(store=new_store(), journal=True)
    host.add_plug(plug("a", DEMO, host))
    host.add_hook(CommandHook("commands", {}, host))
    host.add_hook(ToolHook("tools", {}, host))
    return host


async def test_a_command_is_not_run_again_after_a_restart(new_store):
    # A command in a channel no bridge copies: nothing to deliver, so nothing is kept; and an
    # entry of the last run (a crash) goes to the sync hook only, never to the commands hook.
    def build():
        return _commands_host(new_store)

    first = build()
    async with running(first):
        await first.plugs["a"].receive("!ping", user=immp.User("u-2", first.plugs["a"]))
        with trio.fail_after(10):
            await first.plugs["a"].wait_puts(1)
        assert [str(m.text) for _, m in first.plugs["a"].puts] == ["pong"]
    assert await load_journal(new_store()) == ([], [])
    # As a killed process would have left it: the command journaled, not yet handled.
    store = new_store()
    await store.open()
    a = first.plugs["a"]
    sent = immp.SentMessage("m9", immp.Channel(a, "room"), text="!ping",
                            user=immp.User("u-2", a, username="u-2"))  # fmt: skip
    store.journal_write([("entry", "e9", time.time() - 1, encode(sent))])
    await store.close()
    again = build()
    async with running(again):
        await trio.sleep(0.3)
        assert again.hooks["tools"].calls == []
        assert list(again.plugs["a"].puts) == []
    assert again.journal.stats()["replayed"] == 1
    assert await load_journal(new_store()) == ([], [])


async def test_a_target_that_keeps_failing_does_not_keep_every_message(new_store, caplog):
    # c refuses everything. Entries older than journal-age would expire at the next start
    # anyway: the running process lets them go (once, in one line) rather than hold one per
    # message, in memory and in the store, for as long as it runs.
    caplog.set_level(logging.WARNING, "immp.journal")
    host = immp.Host(store=new_store(), journal=True, journal_age=0.5)
    for name in "ac":
        cls = Flaky if name == "c" else DemoPlug
        host.add_plug(cls(name, DEMO, host))
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
    host.add_hook(SyncHook("s", {"channels": {"main": ["a-room", "c-room"]}}, host))
    async with running(host):
        host.plugs["c"].fail = True
        for round in range(3):
            for n in range(100):
                await host.plugs["a"].receive(f"m{round}.{n}")
            await host.plugs["a"].taken()
            await trio.sleep(0.6)  # past the age
        await host.plugs["a"].receive("last")
        await host.plugs["a"].taken()
        await trio.sleep(0.1)
        stats = host.journal.stats()
    assert stats["open"] <= 101 and stats["abandoned"] >= 200, stats
    entries, _ = await load_journal(new_store())
    assert len(entries) <= 101
    lines = [r.getMessage() for r in caplog.records if "let go" in r.getMessage()]
    assert lines and all("to c:room (" in line for line in lines), lines
    assert len(lines) <= 3  # one line per look, not one per message


async def test_a_backlog_older_than_the_age_is_still_bridged(new_store):
    # The sync hook is behind by more than journal-age: what it has queued is still its to
    # route, and goes out (the age lets go of what no hook holds, not of a hook's backlog).
    host = immp.Host(store=new_store(), journal=True, journal_age=0.3, close_timeout=1)
    for name in "ab":
        host.add_plug(DemoPlug(name, DEMO, host))
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))

    class Slower(SyncHook):
        async def on_receive(self, sent, source, primary):
            await trio.sleep(0.4)
            await super().on_receive(sent, source, primary)

    host.add_hook(Slower("s", {"channels": {"main": ["a-room", "b-room"]}}, host))
    async with running(host):
        for n in range(4):
            await host.plugs["a"].receive(f"m{n}")
            await host.plugs["a"].taken()
            await trio.sleep(0.15)
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(4)
        got = [str(m.text) for _, m in host.plugs["b"].puts]
    assert got == ["m0", "m1", "m2", "m3"], got


async def test_a_call_cut_off_by_the_hooks_timeout_is_done_with(new_store):
    # The sync hook hangs on a message past its timeout: the host gave up on it, as it does for
    # a prioritised hook, so the entry is not held for ever (nor replayed at every start).
    host = immp.Host(store=new_store(), journal=True, close_timeout=1)
    for name in "ab":
        host.add_plug(DemoPlug(name, DEMO, host))
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))

    class Hangs(SyncHook):
        async def on_receive(self, sent, source, primary):
            if sent.text is not None and str(sent.text) == "hang":
                await trio.sleep_forever()
            await super().on_receive(sent, source, primary)

    hook = Hangs("s", {"channels": {"main": ["a-room", "b-room"]}}, host)
    hook.timeout = 0.2
    host.add_hook(hook)
    async with running(host):
        await host.plugs["a"].receive("hang")
        await host.plugs["a"].receive("after")
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(1)
        await trio.sleep(0.1)
    assert [str(m.text) for _, m in host.plugs["b"].puts] == ["after"]
    assert host.journal.summary() == "every journaled message was delivered"
    assert await load_journal(new_store()) == ([], [])


async def test_a_message_received_while_the_host_closes_is_kept_for_the_next_start(new_store):
    # SIGTERM: the hooks close first, and the plugs go on reading until their turn. A message
    # taken in then reaches no hook; it used to be done at once (no hook held it) while the plug
    # saved its position past it: lost at the next start. Kept, it is bridged then.
    def build():
        host = immp.Host(store=new_store(), journal=True, close_timeout=2)
        for name in "ab":
            host.add_plug(DemoPlug(name, DEMO, host))
            host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
        host.add_hook(SyncHook("s1", {"channels": {"main": ["a-room", "b-room"]}}, host))
        return host

    first = build()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await first.ready.wait()
        first.quit()
        with trio.fail_after(10):
            while first.hooks["s1"].open_state is not immp.OpenState.inactive:
                await trio.lowlevel.checkpoint()
        assert first.plugs["a"].open_state is immp.OpenState.active  # still reading
        await first.plugs["a"].receive("late")
        await first.plugs["a"].taken()  # where a plug saves its position
    assert list(first.plugs["b"].puts) == []
    assert "1 message not yet handled by a hook" in first.journal.summary()
    entries, _ = await load_journal(new_store())
    assert len(entries) == 1
    again = build()
    async with running(again):
        with trio.fail_after(10):
            await again.plugs["b"].wait_puts(1)
    assert [str(m.text) for _, m in again.plugs["b"].puts] == ["late"]
    assert await load_journal(new_store()) == ([], [])


class RenumberingPlug(DemoPlug):
    """A demo plug whose network numbers its messages afresh each run (IDs are reused)."""

    stable_ids = False


async def _left_command(new_store, a: immp.Plug) -> None:
    # As a process killed between the commit of "!ping" and that of the cursor after it left
    # the store: the entry, not yet handled.
    store = new_store()
    await store.open()
    sent = immp.SentMessage("m9", immp.Channel(a, "room"), text="!ping",
                            user=immp.User("u-2", a, username="u-2"))  # fmt: skip
    store.journal_write([("entry", "e9", time.time() - 1, encode(sent))])
    await store.close()


@pytest.mark.parametrize(
    ("plug", "text", "runs"),
    [(DemoPlug, "!ping", False), (DemoPlug, "!ping twice", True), (RenumberingPlug, "!ping", True)],
    ids=["read-again", "new-text-same-id", "ids-not-stable"],
)
async def test_a_message_read_again_after_a_crash_is_not_taken_twice(new_store, plug, text, runs):
    # The network sends "!ping" (m9) again from the old cursor: it is the entry replayed, and
    # the command is not run a second time. The same ID with other text, or from a plug whose
    # IDs are numbered afresh each run, is a new message.
    first = _commands_host(new_store, plug)
    await _left_command(new_store, first.plugs["a"])
    again = _commands_host(new_store, plug)
    a = again.plugs["a"]
    async with running(again):
        await a.receive(text, id="m9", user=immp.User("u-2", a, username="u-2"))
        await trio.sleep(0.3)
        assert bool(a.puts) == runs  # the commands hook answered (pong, or its usage)
    assert again.journal.stats()["repeated"] == (0 if runs else 1)
    assert await load_journal(new_store()) == ([], [])


class SlowCommits(immp.SQLiteStore):
    """A SQLite store each of whose commits takes a quarter of a second (a slow disk)."""

    def write(self, conn, batch):
        time.sleep(0.25)  # in the store's thread, as a slow fsync would
        super().write(conn, batch)


class CursorPlug(DemoPlug):
    """A demo network read from a cursor, as Matrix is: its copies wait for their commit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.has_cursor = True


class PacedPlug(DemoPlug):
    """A demo network that takes 2 ms per message sent (500 a second)."""

    async def put(self, channel, msg):
        await trio.sleep(0.002)
        return await super().put(channel, msg)


async def test_a_target_waiting_for_slow_commits_is_not_taken_for_stuck(tmp_path, caplog):
    # 300 messages a second to a network that takes 500: it keeps up. With the journal on and
    # commits of a quarter of a second, every copy waits for its commit and the target's queue
    # fills; that wait counted as the target being stuck, and it dropped 701 of the 1000
    # copies (kept in the journal, to go out at the next start, out of order).
    host = immp.Host(store=SlowCommits(tmp_path / "bridge.db"), journal=True, close_timeout=1)
    host.add_plug(CursorPlug("a", DEMO, host))
    host.add_plug(PacedPlug("b", DEMO, host))
    for name in "ab":
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
    host.add_hook(SyncHook("sync", {"channels": {"main": ["a-room", "b-room"]}, "queue-size": 20},
                           host))  # fmt: skip
    count = 1000
    with caplog.at_level(logging.WARNING):
        async with running(host):
            with trio.fail_after(30):
                for number in range(count):
                    await host.plugs["a"].receive(f"m{number}")
                    await trio.sleep(0.003)
                await host.plugs["b"].wait_puts(count, timeout=30)
    assert [str(m.text) for _, m in host.plugs["b"].puts] == [f"m{n}" for n in range(count)]
    assert "is stuck" not in caplog.text
    assert host.journal.summary() == "every journaled message was delivered"


class HeldCommits(immp.SQLiteStore):
    """A SQLite store whose commits wait (in its thread) while ``open_commits`` is clear."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_commits = threading.Event()
        self.open_commits.set()

    def write(self, conn, batch):
        self.open_commits.wait(10)
        super().write(conn, batch)


@pytest.mark.parametrize("cursor", [True, False], ids=["cursor", "no-cursor"])
async def test_a_copy_waits_for_its_commit_only_where_the_network_sends_again(tmp_path, cursor):
    # A network read from a cursor (Matrix's sync token) sends again, after a crash, what came
    # after the cursor saved: its copies wait for their entry's commit, so that a replay
    # repeats their delivery keys. One that never sends a message twice (IRC) has no such
    # window, and its copies go out while the commit is still to come.
    store = HeldCommits(tmp_path / "bridge.db")
    host = immp.Host(store=store, journal=True, close_timeout=1)
    host.add_plug((CursorPlug if cursor else DemoPlug)("a", DEMO, host))
    host.add_plug(DemoPlug("b", DEMO, host))
    for name in "ab":
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
    host.add_hook(SyncHook("sync", {"channels": {"main": ["a-room", "b-room"]}}, host))
    async with running(host):
        await store.flush()
        store.open_commits.clear()
        await host.plugs["a"].receive("hello")
        await trio.sleep(0.3)
        assert [str(m.text) for _, m in host.plugs["b"].puts] == ([] if cursor else ["hello"])
        store.open_commits.set()
        await host.plugs["b"].wait_puts(1, timeout=5)
        assert [str(m.text) for _, m in host.plugs["b"].puts] == ["hello"]
    assert host.journal.summary() == "every journaled message was delivered"
    entries, deliveries = await load_journal(immp.SQLiteStore(tmp_path / "bridge.db"))
    if cursor:  # kept, delivered, until the plug saves its cursor past it (see the next test)
        assert [(entry, state) for entry, _, state in deliveries] == [(entries[0][0], DONE)]
    else:
        assert (entries, deliveries) == ([], [])


class DiesAtTheCursor(immp.SQLiteStore):
    """
    A SQLite store that commits nothing from the first round holding the ``src`` plug's input
    offset on: the process as a kill between a read's copies and the commit of its cursor
    leaves it (the writes before that round committed, none after).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.died = threading.Event()

    def write(self, conn, batch):
        if self.died.is_set() or ("src", "input-offset") in batch.state:
            self.died.set()
            raise sqlite3.OperationalError("disk I/O error (the process died here)")
        super().write(conn, batch)


class SlowReader(DemoPlug):
    """A demo network whose messages each take a moment to read (a lookup per event)."""

    async def receive(self, *args, **kwargs):
        await trio.sleep(0.001)
        return await super().receive(*args, **kwargs)


def _reader_host(store, tmp_path) -> immp.Host:
    host = immp.Host(store=store, journal=True, close_timeout=0.5)
    host.add_plug(SlowReader("src", {**DEMO, "channel": "a", "input": str(tmp_path / "in")}, host))
    host.add_plug(DemoPlug("dst", {**DEMO, "channel": "b", "output": str(tmp_path / "out")},
                           host))  # fmt: skip
    host.add_channel("a", immp.Channel(host.plugs["src"], "a"))
    host.add_channel("b", immp.Channel(host.plugs["dst"], "b"))
    host.add_hook(SyncHook("sync", {"channels": {"town": ["a", "b"]}}, host))
    return host


async def test_a_read_larger_than_the_queues_is_not_taken_twice_after_a_crash(
    tmp_path, caplog, monkeypatch
):
    # A long read (2,000 messages, each a moment to read): its first messages are delivered,
    # and done, before the last is taken in and the cursor after them saved. Done, their
    # entries were deleted at once; killed before the cursor's commit, the next start read
    # them again from the old cursor as new messages and sent each a second time (1,999 of
    # these 2,000). Now an entry done before its cursor was saved is deleted only after
    # that write, and the next start knows the messages read again. (With the entries kept at
    # the first crash but not those replayed, the third start here sent 1,999 twice.)
    count = 2000
    (tmp_path / "in").write_text("".join(f"m{n}\n" for n in range(count)))
    # Copies of what the dead store did not commit wait for it (and are cut off as the host
    # stops), as they would in a process killed there, rather than go out after 2 s.
    monkeypatch.setattr(immp._journal, "DURABLE_WAIT", 60.0)
    # Killed so, then again in the same place while reading it all again: the entries replayed
    # are kept as well until the cursor is saved, and the third start still knows them.
    for run in range(2):
        store = DiesAtTheCursor(tmp_path / "bridge.db")
        first = _reader_host(store, tmp_path)
        with caplog.at_level(logging.CRITICAL, "immp.store"):  # (what the dying store says)
            async with running(first):
                with trio.fail_after(30):
                    while not store.died.is_set():
                        await trio.sleep(0.001)
        if run == 0:
            sent = first.plugs["dst"].put_count
            # The read's first copies went out before it ended.
            assert sent > count // 2, (sent, first.journal.stats())
    again = _reader_host(immp.SQLiteStore(tmp_path / "bridge.db"), tmp_path)
    with caplog.at_level(logging.WARNING):
        async with running(again):
            with trio.fail_after(30):  # the input read again, from the start, and delivered
                while (
                    await again.plugs["src"].state.get("input-offset", 0)
                ) == 0 or again.journal.undelivered:
                    await trio.sleep(0.01)
            await again.store.flush()
            await trio.sleep(0.3)  # (nothing more arrives)
    rows = [json.loads(line) for line in (tmp_path / "out").read_text().splitlines()]
    assert [row["text"] for row in rows] == [f"<src> m{n}" for n in range(count)]
    # What the first run had journaled was known when read again (its copies out already, or
    # replayed under the same delivery key, which the output knows).
    assert again.journal.stats()["repeated"] >= sent, (sent, again.journal.stats())
    assert "plug src sent again what the last run had journaled" in caplog.text
    assert await load_journal(immp.SQLiteStore(tmp_path / "bridge.db")) == ([], [])
