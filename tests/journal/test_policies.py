"""
The journal's start-up policies: deliveries in doubt, entries past the age limit, order. Each
test runs on every store that keeps a journal (``new_store`` in conftest.py): what a killed
process left is written by one store object, the host runs on another on the same database.
"""

from __future__ import annotations

import logging
import time

import pytest
import trio

import immp
from immp._journal import WRITING, encode
from immp.testing import running
from immp_demo import DemoPlug
from immp_sync import SyncHook
from tests.journal.helpers import load_journal

DEMO = {"interval": None, "channel": "room", "echo": False}


def _host(store: immp.Store, **journal) -> immp.Host:
    host = immp.Host(store=store, journal=True, **journal)
    for name in ("a", "b"):
        host.add_plug(DemoPlug(name, DEMO, host))
        host.add_channel(f"{name}-room", immp.Channel(host.plugs[name], "room"))
    host.add_hook(SyncHook("sync", {"channels": {"main": ["a-room", "b-room"]}}, host))
    return host


async def _left(store: immp.Store, host: immp.Host, entries) -> None:
    """Journal entries as a killed process would have left them: (key, age, text, state)."""
    ops = []
    for key, age, text, state in entries:
        a = host.plugs["a"]
        user = immp.User("alice", a, username="alice")
        sent = immp.SentMessage(key, immp.Channel(a, "room"), text=text, user=user)
        ops.append(("entry", key, time.time() - age, encode(sent)))
        if state is not None:
            ops.append(("delivery", key, f"{key}/b\x1froom", state))
    await store.open()
    store.journal_write(ops)
    await store.close()


@pytest.mark.parametrize("policy", ["drop", "resend"])
async def test_in_doubt_expired_and_pending_at_start(new_store, policy, caplog):
    host = _host(new_store(), journal_age=60, journal_in_doubt=policy)
    left = [("e1", 1000, "too old", 0), ("e2", 5, "in doubt", WRITING),
            ("e3", 5, "never written", 0), ("e4", 5, "not routed yet", None)]  # fmt: skip
    await _left(new_store(), host, left)
    caplog.set_level(logging.INFO, "immp.journal")
    async with running(host):
        b = host.plugs["b"]
        want = ["in doubt", "never written", "not routed yet"] if policy == "resend" else [
            "never written", "not routed yet"]  # fmt: skip
        with trio.fail_after(10):
            await b.wait_puts(len(want))
        await trio.sleep(0.2)
        assert [str(msg.text) for _, msg in b.puts] == want  # in their order, once
        assert b.put_count == len(want)
    logs = caplog.text
    assert "expired (older than 60" in logs and "too old" in logs
    if policy == "drop":
        assert "in doubt, not sent again" in logs and "in doubt" in logs
    entries, deliveries = await load_journal(new_store())
    assert entries == [] and deliveries == []  # everything done or dropped
    assert host.journal.summary() == "every journaled message was delivered"


async def test_replayed_before_newer_messages_of_the_channel(new_store):
    host = _host(new_store())
    await _left(new_store(), host, [("e1", 1, "old one", 0), ("e2", 1, "old two", 0)])
    async with running(host):
        await host.plugs["a"].receive("new")
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(3)
        assert [str(m.text) for _, m in host.plugs["b"].puts] == ["old one", "old two", "new"]


async def test_journal_off_leaves_no_key_and_writes_nothing(new_store):
    host = _host(new_store())
    host.journal.enabled = False
    async with running(host):
        await host.plugs["a"].receive("hello")
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(1)
        assert host.plugs["b"].puts[0][1].key is None
    assert await load_journal(new_store()) == ([], [])


async def test_a_message_no_hook_routes_is_done_at_once(new_store):
    # A channel that no sync hook bridges: nothing routes its messages, so nothing is left to
    # deliver. They must not stay in the store (and be handed to the hooks at the next start).
    host = _host(new_store())
    async with running(host):
        lonely = immp.Channel(host.plugs["a"], "lonely")
        await host.plugs["a"].receive("nobody bridges this", channel=lonely)
        await host.plugs["a"].receive("bridged")
        with trio.fail_after(10):
            await host.plugs["b"].wait_puts(1)
    assert host.journal.summary() == "every journaled message was delivered"
    assert await load_journal(new_store()) == ([], [])
