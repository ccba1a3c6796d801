"""The demo plug driven through a real host: timer, echo, edits, deletes, joins, channels."""

from __future__ import annotations

import json

import pytest
import trio

import immp
from immp.testing import Recorder, running
from immp_demo import DemoPlug
from immp_sync import SyncHook

from .helpers import demo_host

# -- the timer ---------------------------------------------------------------------------------


async def test_timer_posts_the_default_text_as_the_plug_in_the_dummy_channel(mock_clock):
    mock_clock.autojump_threshold = 0
    host = immp.Host()
    plug = host.add_plug(DemoPlug("ticker", {}, host))
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        await trio.sleep(35)  # default interval 10: three messages by now
    assert recorder.texts() == ["Test", "Test", "Test"]
    for sent in recorder.messages:
        assert sent.user.username == "ticker"
        assert sent.channel == immp.Channel(plug, "dummy")
        assert not await sent.channel.is_private()
    assert len({sent.id for sent in recorder.messages}) == 3


async def test_timer_text_user_channel_and_interval_options(mock_clock):
    mock_clock.autojump_threshold = 0
    host, _plug, recorder = demo_host(interval=2.5, text="tick", user="clock", channel="hall")
    async with running(host):
        await trio.sleep(11)
    assert recorder.texts() == ["tick"] * 4
    assert {sent.user.username for sent in recorder.messages} == {"clock"}
    assert {sent.channel.source for sent in recorder.messages} == {"hall"}
    # Timer messages come from the network's own (system) user.
    assert await recorder.messages[0].user.is_system()


async def test_interval_null_turns_the_timer_off(mock_clock):
    mock_clock.autojump_threshold = 0
    host, _plug, recorder = demo_host(interval=None)
    async with running(host):
        await trio.sleep(3600)
    assert recorder.seen == []


async def test_the_timer_stops_when_the_plug_is_disabled(mock_clock):
    mock_clock.autojump_threshold = 0
    host, _plug, recorder = demo_host(interval=1)
    async with running(host):
        await trio.sleep(2.5)
        await host.stop("demo", disable=True)
        await trio.sleep(100)
    assert recorder.texts() == ["Test", "Test"]


@pytest.mark.parametrize(("key", "value"), [("interval", 0), ("interval", -5), ("history", -1)])
def test_the_interval_and_history_must_be_positive(key, value):
    config = {"plugs": {"timer": {"path": "demo", "config": {key: value}}}}
    with pytest.raises(immp.ConfigError) as caught:
        immp.build_host(config)
    assert caught.value.path == f"plugs.timer.config.{key}"
    assert "positive" in str(caught.value)


# -- echo --------------------------------------------------------------------------------------


class Echoes(Recorder):
    """Sends every text that starts with 'say ' back into the same channel."""

    def __init__(self, host):
        super().__init__("echoes", host=host)
        self.receipts: list[immp.Receipt] = []

    async def on_receive(self, sent, source, primary):
        await super().on_receive(sent, source, primary)
        if sent is source and str(sent.text).startswith("say "):
            reply = immp.Message(text=str(sent.text)[4:])
            self.receipts += await sent.channel.send(reply)


async def test_what_is_sent_comes_back_with_a_fresh_id_as_the_hosts_echo():
    host = immp.Host()
    plug = host.add_plug(DemoPlug("demo", {"interval": None}, host))
    hook = host.add_hook(Echoes(host))
    async with running(host):
        said = await plug.receive("say hello")
        seen = await hook.wait_for(2)
    (first, source1, _), (echo, source2, _) = hook.seen
    assert first is said and source1 is first  # a message from the network: not an echo
    assert str(echo.text) == "hello"
    assert echo is not source2 and str(source2.text) == "hello"  # recognised as our own
    assert echo.id != said.id
    assert [r.id for r in hook.receipts] == [echo.id]
    assert echo.channel == said.channel
    assert plug.puts[-1][1] is source2
    assert len(seen) == 2


async def test_echo_false_posts_without_echoing():
    host = immp.Host()
    plug = host.add_plug(DemoPlug("demo", {"interval": None, "echo": False}, host))
    hook = host.add_hook(Echoes(host))
    async with running(host):
        await plug.receive("say quietly")
        await plug.wait_puts(1)
        await plug.receive("after")
        await hook.wait_for(2)
    assert hook.texts() == ["say quietly", "after"]
    assert str(plug.puts[0][1].text) == "quietly"


async def test_what_is_sent_to_a_show_plug_is_printed_with_its_name(capsys):
    host, plug, _recorder = demo_host(show=True)
    bob = immp.User(id="bob", plug=plug, username="bob")
    async with running(host):
        await plug.default_channel.send(immp.Message(text="hi there", user=bob))
        await plug.default_channel.send(immp.Message(text="waves", user=bob, action=True))
        await plug.default_channel.send(
            immp.Message(
                text=immp.RichText([immp.Segment("plain "), immp.Segment("bold", bold=True)])
            )
        )
    assert capsys.readouterr().out.splitlines() == [
        "[demo] <bob> hi there",
        "[demo] * bob waves",
        "[demo] plain bold",  # not a terminal: no ANSI styles
    ]


# -- edits and deletes -------------------------------------------------------------------------


async def test_edit_message_and_delete_message_report_network_events():
    host, plug, recorder = demo_host()
    async with running(host):
        sent = await plug.receive("teh typo")
        await plug.edit_message(sent.id, "the typo")
        await plug.edit_message(sent.id, "no typo")
        await plug.delete_message(sent.id)
        first, edit1, edit2, deleted = await recorder.wait_for(4)
    assert {m.id for m in (first, edit1, edit2, deleted)} == {sent.id}
    assert [m.revision for m in (first, edit1, edit2, deleted)] == [0, 1, 2, 3]
    assert (str(edit1.text), edit1.edited) == ("the typo", True)
    assert str(edit2.text) == "no typo"
    assert deleted.deleted and not first.deleted
    assert deleted.user == first.user


async def test_a_deleted_message_cannot_be_edited_or_deleted_again():
    host, plug, _recorder = demo_host()
    async with running(host):
        sent = await plug.receive("gone soon")
        await plug.delete_message(sent.id)
        with pytest.raises(KeyError):
            await plug.edit_message(sent.id, "too late")
        with pytest.raises(KeyError):
            await plug.delete_message(sent.id)


async def test_hooks_edit_and_delete_what_they_sent(capsys):
    host, plug, recorder = demo_host(show=True)
    async with running(host):
        [receipt] = await plug.default_channel.send(immp.Message(text="draft"))
        edited = await plug.edit(receipt, immp.Message(text="final"))
        await plug.delete(receipt)
        await recorder.wait_for(1)  # the echo of the first send
    assert edited.id == receipt.id and edited.revision > receipt.revision
    assert [(ch, str(m.text), m.edited) for ch, m in plug.puts][:2] == [
        (plug.default_channel, "draft", False),
        (plug.default_channel, "final", True),
    ]
    assert plug.puts[2][1].deleted
    assert capsys.readouterr().out.splitlines() == [
        "[demo] draft",
        "[demo] final (edited)",
        "[demo] (deleted: final (edited))",
    ]


async def test_the_demo_plug_says_it_can_edit_and_delete():
    assert DemoPlug.can_edit and DemoPlug.can_delete


# -- joins and parts ---------------------------------------------------------------------------


async def test_join_part_reports_users_joining_and_leaving(capsys):
    host, plug, recorder = demo_host()
    async with running(host):
        await plug.join_part(plug.console_user)
        await plug.join_part(plug.console_user, joined=False, channel=immp.Channel(plug, "side"))
        joined, left = await recorder.wait_for(2)
    assert joined.joined == [plug.console_user] and not joined.left
    assert left.left == [plug.console_user] and not left.joined
    assert joined.channel == plug.default_channel
    assert left.channel.source == "side"
    assert str(joined.render()) == "you joined"
    assert str(left.render()) == "you left"


# -- channels and users ------------------------------------------------------------------------


async def test_channels_users_titles_and_members():
    _host, plug, _recorder = demo_host(user="bot", **{"console-user": "alice"})
    room, dm = immp.Channel(plug, "lobby"), immp.Channel(plug, "@alice")
    assert await room.is_private() is False
    assert await dm.is_private() is True
    assert await room.title() == "lobby"
    members = await room.members()
    assert [m.username for m in members] == ["bot", "alice"]
    assert plug.console_user.id != plug.bot.id
    assert await plug.user_from_id(plug.console_user.id) is plug.console_user
    assert await plug.user_from_username("bot") is plug.bot
    assert await plug.user_from_username("nobody") is None
    assert await plug.public_channels() == [immp.Channel(plug, "dummy")]


async def test_private_channels_are_those_starting_with_at_for_groups():
    host = immp.Host()
    plug = host.add_plug(DemoPlug("demo", {"interval": None}, host))
    private = immp.Group("dms", {"private": ["demo"]}, host)
    shared = immp.Group("rooms", {"shared": ["demo"]}, host)
    assert await private.has_channel(immp.Channel(plug, "@bob"))
    assert not await private.has_channel(immp.Channel(plug, "lobby"))
    assert await shared.has_channel(immp.Channel(plug, "lobby"))
    assert not await shared.has_channel(immp.Channel(plug, "@bob"))


def test_the_original_immp_dummy_plug_path_means_the_demo_plug():
    config = {
        "plugs": {
            "old": {"path": "immp.plug.dummy.DummyPlug"},
            "new": {"path": "demo", "config": {"interval": None}},
        }
    }
    host = immp.build_host(config)
    assert type(host.plugs["old"]) is DemoPlug and type(host.plugs["new"]) is DemoPlug


async def test_a_hook_answering_on_the_same_plug_keeps_up_with_a_flood():
    # Each message makes a reply whose echo comes back into the same plug: the echo must not
    # make put() wait for the host while the host waits for put().
    host = immp.Host()
    plug = host.add_plug(DemoPlug("d", {"interval": None}, host))

    class Answer(immp.Hook):
        async def on_receive(self, sent, source, primary):
            if sent is source:
                await sent.channel.send(immp.Message(f"re: {sent.text}"))

    host.add_hook(Answer("answer", {}, host))
    async with running(host):
        for n in range(3000):
            await plug.receive(str(n))
        await plug.wait_puts(3000, timeout=30)
    assert [str(m.text) for _, m in list(plug.puts)[-3:]] == ["re: 2997", "re: 2998", "re: 2999"]


async def test_the_output_file_has_every_message_edit_and_deletion_sent(tmp_path):
    # A bridge from a to b: what a user does on a reaches b's output file, one line each.
    out = tmp_path / "b.jsonl"
    host = immp.Host()
    a = host.add_plug(DemoPlug("a", {"interval": None, "channel": "room"}, host))
    b = host.add_plug(DemoPlug("b", {"interval": None, "channel": "room", "output": str(out)},
                               host))  # fmt: skip
    host.add_channel("ra", immp.Channel(a, "room"))
    host.add_channel("rb", immp.Channel(b, "room"))
    host.add_hook(SyncHook("sync", {"channels": {"main": ["ra", "rb"]}}, host))
    alice = immp.User("alice", a, username="alice")
    async with running(host):
        sent = await a.receive("hello", user=alice)
        await b.wait_puts(1)
        await a.edit_message(sent.id, "hello, edited")
        await b.wait_puts(2)
        await a.delete_message(sent.id)
        await b.wait_puts(3)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [{k: v for k, v in row.items() if k != "key"} for row in rows] == [
        {"id": rows[0]["id"], "text": "<alice> hello"},
        {"id": rows[0]["id"], "edited": True, "text": "<alice> hello, edited (edited)"},
        {"id": rows[0]["id"], "deleted": True},
    ]
