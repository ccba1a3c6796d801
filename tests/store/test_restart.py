"""
Edits, deletions and replies of messages bridged before a restart reach the copies: a real
``immp`` process stopped and started again on its SQLite file, and two host lifetimes in-process.
"""

from __future__ import annotations

import immp
from immp.testing import running
from tests.demo.console import Console, console_config
from tests.sync.helpers import settle


def test_edit_and_delete_after_a_real_restart_reach_the_copies(tmp_path, immp_exe, clean_env):
    config = console_config(tmp_path)  # chat (console) <-> peer (shows what it is sent)
    chat = Console(immp_exe, config, clean_env, stderr=tmp_path / "first.err")
    try:
        chat.type("before the restart")
        chat.expect("[peer] <alice> before the restart")
        chat.type("and another")
        chat.expect("[peer] <alice> and another")
        assert chat.stop() == 0, chat.stderr
    finally:
        chat.kill()
    assert (tmp_path / "console.db").exists()
    chat = Console(immp_exe, config, clean_env, stderr=tmp_path / "second.err")
    try:
        chat.type("/edit 1 before the restart, edited after it")
        seen = chat.expect("[peer] <alice> before the restart, edited after it (edited)")
        chat.type("/delete 2")
        # The deletion reached peer's copy of "and another" (what that copy said is not kept
        # across the restart, so the console cannot show it).
        seen = chat.expect("[peer] (a message was deleted)")
        chat.type("after the restart")
        seen = chat.expect("[peer] <alice> after the restart", after=len(chat.output) - 1)
        assert not [line for line in seen if "after the restart (edited)" in line]
        assert chat.stop() == 0, chat.stderr
    finally:
        chat.kill()
    assert "Traceback" not in chat.stderr


DEMO = {"interval": None, "channel": "room", "echo": True}


def _config(db) -> dict:
    return {
        "store": f"sqlite:///{db}",
        "plugs": {name: {"path": "demo", "config": DEMO} for name in ("a", "b")},
        "channels": {
            "a-room": {"plug": "a", "source": "room"},
            "b-room": {"plug": "b", "source": "room"},
        },
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"main": ["a-room", "b-room"]}}}},
    }


async def test_a_reply_to_a_message_bridged_before_a_restart_points_at_its_copy(tmp_path):
    config = _config(tmp_path / "bridge.db")
    host = immp.build_host(config, file=str(tmp_path / "bridge.yaml"))
    async with running(host):
        question = await host.plugs["a"].receive("question?")
        await host.plugs["b"].wait_puts(1)
        await settle()
    [(_, copy)] = list(host.plugs["b"].puts)
    assert str(copy.text) == "question?"  # b numbered its copy "1", its first message

    host = immp.build_host(config, file=str(tmp_path / "bridge.yaml"))  # a new process, in effect
    async with running(host):
        a, b = host.plugs["a"], host.plugs["b"]
        old = immp.SentMessage(question.id, immp.Channel(a, "room"), text="question?")
        await a.receive("answer!", reply_to=old)
        await b.wait_puts(1)
        await settle()
        fresh = await a.receive("new after restart")
        await b.wait_puts(2)
    answer = b.puts[0][1]
    assert str(answer.text) == "answer!"
    assert isinstance(answer.reply_to, immp.SentMessage)
    assert answer.reply_to.id == "1" and answer.reply_to.channel == immp.Channel(b, "room")
    # Numbers go on after the restart: the new message is not taken for the old one.
    assert int(fresh.id) > int(question.id) and str(b.puts[1][1].text) == "new after restart"


async def test_after_a_restart_a_copy_leads_back_to_its_origin_and_a_deletion_is_not_repeated(
    tmp_path,
):
    # The stored entry leaves out what reading it back implies (the origin's own ID among the
    # IDs, "deleted" while false): both must come back after a restart.
    config = _config(tmp_path / "bridge.db")
    host = immp.build_host(config, file=str(tmp_path / "bridge.yaml"))
    async with running(host):
        a, b = host.plugs["a"], host.plugs["b"]
        question = await a.receive("question?")
        await b.wait_puts(1)
        gone = await a.receive("soon gone")
        await b.wait_puts(2)
        await a.delete_message(gone.id)
        await b.wait_puts(3)
        await settle()
    assert b.puts[2][1].deleted

    host = immp.build_host(config, file=str(tmp_path / "bridge.yaml"))
    async with running(host):
        a, b = host.plugs["a"], host.plugs["b"]
        # A reply on b to b's copy: found by the copy's ID, it points at the origin on a.
        # (b numbered its copy "1", its first message)
        copy = immp.SentMessage("1", immp.Channel(b, "room"), text="question?")
        await b.receive("answer!", reply_to=copy)
        await a.wait_puts(1)
        # The network reports the old deletion again: the copy was deleted already.
        await a.queue(immp.SentMessage(gone.id, immp.Channel(a, "room"), deleted=True))
        marker = await a.receive("after the repeat")
        await b.wait_puts(1)
        await settle()
    answer = a.puts[0][1]
    assert str(answer.text) == "answer!"
    assert isinstance(answer.reply_to, immp.SentMessage)
    assert answer.reply_to.id == question.id
    assert answer.reply_to.channel == immp.Channel(a, "room")
    assert [str(m.text) for _, m in b.puts] == [str(marker.text)]  # no second deletion
