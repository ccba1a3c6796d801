"""The sync hook with demo plugs through a real host: fan-out, names, edits, loops, order."""

from __future__ import annotations

import logging
import time

import pytest
import trio

import immp
from immp.testing import Recorder, running
from immp_demo.plug import DemoPlug
from immp_sync import SyncedMessage, SyncHook

from .helpers import BrokenPlug, NoEditPlug, make_host, settle, texts


def add_sync(host, channels, name="sync", **config) -> SyncHook:
    return host.add_hook(SyncHook(name, {"channels": channels, **config}, host))


async def test_fan_out_to_every_other_channel():
    host = make_host("a", "b", "c", "d")
    add_sync(host, {"main": ["#a", "#b", "#c", "#d"]})
    alice = immp.User("alice", host.plugs["a"], username="alice")
    async with running(host):
        await host.plugs["a"].receive("hello", user=alice)
        for name in "bcd":
            await host.plugs[name].wait_puts(1)
        await settle()
    for name in "bcd":
        plug = host.plugs[name]
        assert texts(plug) == ["hello"]
        channel, msg = plug.puts[0]
        assert channel == host.channels[f"#{name}"]
        assert msg.user.name == "alice"
    # The echoes of the three copies are not synced back anywhere.
    assert host.plugs["a"].puts == type(host.plugs["a"].puts)()


async def test_channels_outside_bridges_are_left_alone():
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b"]})
    async with running(host):
        await host.plugs["c"].receive("nobody hears this")
        await host.plugs["a"].receive("hi b")
        await host.plugs["b"].wait_puts(1)
        await settle()
    assert texts(host.plugs["b"]) == ["hi b"]
    assert texts(host.plugs["c"]) == []


async def test_two_bridges_are_separate():
    host = make_host("a", "b", "c", "d")
    add_sync(host, {"one": ["#a", "#b"], "two": ["#c", "#d"]})
    async with running(host):
        await host.plugs["a"].receive("to b")
        await host.plugs["c"].receive("to d")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["d"].wait_puts(1)
        await settle()
    assert texts(host.plugs["b"]) == ["to b"]
    assert texts(host.plugs["d"]) == ["to d"]
    assert texts(host.plugs["a"]) == texts(host.plugs["c"]) == []


async def test_bridge_within_one_plug_does_not_loop():
    host = make_host("p", other=("p", "other"))
    add_sync(host, {"main": ["#p", "other"]})
    async with running(host):
        await host.plugs["p"].receive("ping")
        await host.plugs["p"].receive("back", channel="other")
        await host.plugs["p"].wait_puts(2)
        await settle()
    assert texts(host.plugs["p"], "other") == ["ping"]
    assert texts(host.plugs["p"], "room") == ["back"]
    assert host.plugs["p"].put_count == 2


async def test_two_hooks_sharing_a_channel_do_not_loop():
    host = make_host("a", "b", "c")
    add_sync(host, {"left": ["#a", "#b"]}, name="sync1")
    add_sync(host, {"right": ["#b", "#c"]}, name="sync2")
    async with running(host):
        await host.plugs["b"].receive("from the middle")
        await host.plugs["a"].receive("from the left")
        await host.plugs["a"].wait_puts(1)
        await host.plugs["c"].wait_puts(1)
        await settle()
    assert texts(host.plugs["a"]) == ["from the middle"]
    assert texts(host.plugs["b"]) == ["from the left"]
    # A copy is never copied again, so the second bridge does not pass on the first's copy.
    assert texts(host.plugs["c"]) == ["from the middle"]


async def test_two_hooks_bridging_the_same_channels_do_not_loop():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, name="sync1")
    add_sync(host, {"main": ["#a", "#b"]}, name="sync2")
    async with running(host):
        await host.plugs["a"].receive("once")
        await host.plugs["b"].wait_puts(2)
        await settle()
    # Each hook makes its copy (a config mistake, but a finite one); nothing comes back.
    assert texts(host.plugs["b"]) == ["once", "once"]
    assert texts(host.plugs["a"]) == []


async def test_unrecognised_echo_of_a_copy_is_not_synced_again():
    host = make_host("a", "b")
    hook = add_sync(host, {"main": ["#a", "#b"]})
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        await host.plugs["a"].receive("hello")
        await host.plugs["b"].wait_puts(1)
        await settle()
        # The network delivers the copy again, this time not flagged as our echo.
        copy = recorder.in_channel(host.channels["#b"])[0]
        await host.plugs["b"].queue(immp.SentMessage(copy.id, copy.channel, text=copy.text))
        await settle()
    assert hook.copies.find(host.channels["#b"], copy.id) is not None
    assert texts(host.plugs["a"]) == []
    assert texts(host.plugs["b"]) == ["hello"]


async def test_messages_other_hooks_send_into_a_bridge_are_synced():
    class Greeter(immp.Hook):
        async def on_receive(self, sent, source, primary):
            if sent.channel == host.channels["#a"] and str(sent.text) == "hi bot":
                await sent.channel.send(immp.Message("hello human"))

    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]})
    host.add_hook(Greeter("greeter", {}, host))
    async with running(host):
        await host.plugs["a"].receive("hi bot")
        await host.plugs["b"].wait_puts(2)
        await settle()
    assert texts(host.plugs["b"]) == ["hi bot", "hello human"]
    assert texts(host.plugs["a"]) == ["hello human"]


# -- names --------------------------------------------------------------------------------------


async def synced_author(config, user=None, **plugs):
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b", "#c"]}, **config, **plugs)
    user = user or immp.User("u1", host.plugs["a"], username="alice", real_name="Alice 🐱")
    async with running(host):
        await host.plugs["a"].receive("hi", user=user)
        await host.plugs["b"].wait_puts(1)
        await host.plugs["c"].wait_puts(1)
    return host.plugs["b"].puts[0][1].user, host.plugs["c"].puts[0][1].user


async def test_author_is_kept_by_default():
    b, c = await synced_author({})
    assert b.name == c.name == "Alice 🐱"
    assert b.id == "u1"


async def test_name_format_renders_user_title_and_plug():
    fmt = "{{ user.username }} on {{ plug.name }}/{{ title }} [{{ label }}]"
    b, _ = await synced_author({"name-format": fmt})
    assert b.name == "alice on a/room [main]"
    assert b.id == "u1"  # the author is kept, with the new name


async def test_reset_author_keeps_only_the_name():
    b, _ = await synced_author({"reset-author": True, "name-format": "{{ user.real_name }}!"})
    assert b.name == "Alice 🐱!"
    assert b.id is None and b.plug is None


async def test_strip_name_emoji():
    b, _ = await synced_author({"strip-name-emoji": True})
    assert b.name == "Alice"


async def test_per_plug_overrides():
    b, c = await synced_author(
        {"name-format": "{{ user.username }}"},
        plugs={"c": {"name-format": None, "strip-name-emoji": True}},
    )
    assert b.name == "alice"
    assert c.name == "Alice"


async def test_name_format_error_falls_back_to_the_name():
    b, _ = await synced_author({"name-format": "{{ user.nothing.deeper }}"})
    assert b.name == "Alice 🐱"


def test_bad_template_is_a_config_error():
    host = make_host("a", "b")
    with pytest.raises(immp.ConfigError, match="template"):
        SyncHook("sync", {"channels": {"main": ["#a", "#b"]}, "name-format": "{{ user"}, host)
    with pytest.raises(immp.ConfigError, match="template"):
        SyncHook("sync", {"channels": {}, "plugs": {"a": {"name-format": "{% if %}"}}}, host)


def test_template_is_sandboxed():
    host = make_host("a", "b")
    hook = SyncHook("sync", {"channels": {}, "name-format": "{{ user.__class__.__mro__ }}"}, host)
    style = hook._options[""].style
    name = style.name(
        immp.User("x", username="x"), {"title": None, "label": "l", "channel": None, "plug": None}
    )
    assert "object" not in (name or "")


# -- joins, renames, edits ----------------------------------------------------------------------


@pytest.mark.parametrize("joins", [True, False])
async def test_joins(joins):
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, joins=joins)
    bob = immp.User("bob", host.plugs["a"], username="bob")
    async with running(host):
        await host.plugs["a"].join_part(bob, joined=True)
        await host.plugs["a"].join_part(bob, joined=False)
        await host.plugs["a"].receive("after")
        await host.plugs["b"].wait_puts(3 if joins else 1)
        await settle()
    puts = [msg for _, msg in host.plugs["b"].puts]
    if joins:
        assert [u.name for u in puts[0].joined] == ["bob"]
        assert [u.name for u in puts[1].left] == ["bob"]
    assert str(puts[-1].text) == "after"
    assert len(puts) == (3 if joins else 1)


@pytest.mark.parametrize("renames", [True, False])
async def test_renames(renames):
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, renames=renames)
    async with running(host):
        await host.plugs["a"].receive(title="New title")
        await host.plugs["a"].receive("after")
        await host.plugs["b"].wait_puts(2 if renames else 1)
        await settle()
    titles = [msg.title for _, msg in host.plugs["b"].puts if msg.title]
    assert titles == (["New title"] if renames else [])


async def test_rename_updates_the_title_in_names():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, **{"name-format": "{{ user.name }} @ {{ title }}"})
    async with running(host):
        await host.plugs["a"].receive("before")
        await host.plugs["a"].receive(title="lounge")
        await host.plugs["a"].receive("after")
        await host.plugs["b"].wait_puts(3)
    names = [msg.user.name for _, msg in host.plugs["b"].puts if msg.text]
    assert names == ["a @ room", "a @ lounge"]


async def test_edits_and_deletes_reach_the_copies():
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b", "#c"]})
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        original = await host.plugs["a"].receive("tpyo")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["c"].wait_puts(1)
        await settle()
        copies = {name: recorder.in_channel(host.channels[f"#{name}"])[0].id for name in "bc"}
        await host.plugs["a"].edit_message(original.id, "typo")
        await host.plugs["b"].wait_puts(2)
        await host.plugs["c"].wait_puts(2)
        await host.plugs["a"].delete_message(original.id)
        await host.plugs["b"].wait_puts(3)
        await host.plugs["c"].wait_puts(3)
        await settle()
    for name in "bc":
        _, edit, delete = [msg for _, msg in host.plugs[name].puts]
        assert isinstance(edit, immp.SentMessage) and edit.id == copies[name]
        assert edit.edited and str(edit.text) == "typo"
        assert delete.deleted and delete.id == copies[name]
        assert host.plugs[name].put_count == 3
    assert host.plugs["a"].put_count == 0


async def test_edit_where_the_plug_cannot_edit_is_a_new_message_marked_edited():
    host = make_host("a", "b", classes={"b": NoEditPlug})
    add_sync(host, {"main": ["#a", "#b"]})
    async with running(host):
        original = await host.plugs["a"].receive("first")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["a"].edit_message(original.id, "second")
        await host.plugs["b"].wait_puts(2)
        await host.plugs["a"].delete_message(original.id)
        await host.plugs["a"].receive("marker")
        await host.plugs["b"].wait_puts(3)
        await settle()
    msgs = [msg for _, msg in host.plugs["b"].puts]
    assert [str(m.text) for m in msgs] == ["first", "second", "marker"]
    assert [m.edited for m in msgs] == [False, True, False]
    assert "(edited)" in str(msgs[1].render())


async def test_edits_off_drops_edits_and_deletes():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, edits=False)
    async with running(host):
        original = await host.plugs["a"].receive("first")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["a"].edit_message(original.id, "second")
        await host.plugs["a"].delete_message(original.id)
        await host.plugs["a"].receive("marker")
        await host.plugs["b"].wait_puts(2)
        await settle()
    msgs = [msg for _, msg in host.plugs["b"].puts]
    assert [str(m.text) for m in msgs] == ["first", "marker"]
    assert not any(getattr(m, "deleted", False) for m in msgs)


async def test_deleting_a_copy_deletes_the_origin_and_other_copies_once():
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b", "#c"]})
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        original = await host.plugs["a"].receive("oops")
        await host.plugs["c"].wait_puts(1)
        await host.plugs["b"].wait_puts(1)
        await settle()
        copy_b = recorder.in_channel(host.channels["#b"])[0]
        await host.plugs["b"].delete_message(copy_b.id)
        await host.plugs["a"].wait_puts(1)
        await host.plugs["c"].wait_puts(2)
        await settle()
    assert host.plugs["a"].puts[0][1].deleted and host.plugs["a"].puts[0][1].id == original.id
    assert host.plugs["c"].puts[1][1].deleted
    assert host.plugs["b"].put_count == 1


async def test_messages_memory_forgot_are_read_back_from_the_store():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, history=2)
    async with running(host):
        old = await host.plugs["a"].receive("old")
        for text in ("x", "y", "z"):
            await host.plugs["a"].receive(text)
        await host.plugs["b"].wait_puts(4)
        await host.plugs["a"].edit_message(old.id, "old, edited")
        await host.plugs["b"].wait_puts(5)
        await host.plugs["a"].delete_message("2")  # "x"
        await host.plugs["a"].receive("marker")
        await host.plugs["b"].wait_puts(7)
        await settle()
    msgs = [msg for _, msg in host.plugs["b"].puts]
    assert [m.text and str(m.text) for m in msgs] == [
        "old",
        "x",
        "y",
        "z",
        "old, edited",
        None,
        "marker",
    ]
    # The edit and the deletion reached the copies ("1" and "2" on b), not new messages.
    assert isinstance(msgs[4], immp.SentMessage) and msgs[4].edited and msgs[4].id == "1"
    assert msgs[5].deleted and msgs[5].id == "2"


@pytest.mark.parametrize("mode", ["raise", "hang"])
async def test_a_failing_target_does_not_keep_the_others_copies_from_the_store(monkeypatch, mode):
    # The store gets a message's entry once all its deliveries are done: one that failed, was
    # cut off, or was dropped unrun for a stuck target ("hang": 0.05 s each, queue of 1, stuck
    # after 1 s) must not keep the entry, with the copies made on b, out of it.
    monkeypatch.setattr(BrokenPlug, "mode", mode)
    host = make_host("a", "b", "bad", classes={"bad": BrokenPlug})
    add_sync(host, {"main": ["#a", "#b", "#bad"]}, **{"queue-size": 1, "send-timeout": 0.05})
    a, b = host.channels["#a"], host.channels["#b"]
    async with running(host):
        sent = [await host.plugs["a"].receive(f"m{i}") for i in range(30)]
        await host.plugs["b"].wait_puts(30, timeout=10)
        missing = list(sent)
        with trio.fail_after(10):
            while missing:
                entry = await host.store.messages.find("sync", immp.channel_key(a), missing[0].id)
                if entry is not None and immp.channel_key(b) in entry["ids"]:
                    missing.pop(0)
                else:
                    await trio.sleep(0.01)
    assert host.hooks["sync"]._targets == {}  # (closed with the host)


async def test_forgotten_messages_are_treated_as_new():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]}, history=2)
    async with running(host):
        old = await host.plugs["a"].receive("old")
        for text in ("x", "y", "z"):
            await host.plugs["a"].receive(text)
        await host.plugs["b"].wait_puts(4)
        await settle()
        assert host.store.prune(before=time.time() + 1) == 4  # past the store's retention
        await host.plugs["a"].edit_message(old.id, "old, edited")
        await host.plugs["b"].wait_puts(5)
        await host.plugs["a"].delete_message("2")  # "x": forgotten too, nothing to delete
        await host.plugs["a"].receive("marker")
        await host.plugs["b"].wait_puts(6)
        await settle()
    msgs = [msg for _, msg in host.plugs["b"].puts]
    assert [str(m.text) for m in msgs] == ["old", "x", "y", "z", "old, edited", "marker"]
    assert msgs[4].edited and not isinstance(msgs[4], immp.SentMessage)


# -- replies ------------------------------------------------------------------------------------


async def test_replies_point_at_the_copy_on_each_target():
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b", "#c"]})
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        question = await host.plugs["a"].receive("question?")
        await host.plugs["b"].wait_puts(1)
        await host.plugs["c"].wait_puts(1)
        await settle()
        copy_b = recorder.in_channel(host.channels["#b"])[0]
        copy_c = recorder.in_channel(host.channels["#c"])[0]
        await host.plugs["b"].receive("answer!", reply_to=copy_b)
        await host.plugs["a"].wait_puts(1)
        await host.plugs["c"].wait_puts(2)
    on_a = host.plugs["a"].puts[0][1]
    on_c = host.plugs["c"].puts[1][1]
    assert on_a.reply_to.id == question.id and on_a.reply_to.channel == host.channels["#a"]
    assert on_c.reply_to.id == copy_c.id and on_c.reply_to.channel == host.channels["#c"]


async def test_reply_to_an_unknown_message_keeps_only_its_content():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]})
    elsewhere = immp.SentMessage("999", immp.Channel(host.plugs["a"], "room"), text="ancient")
    async with running(host):
        await host.plugs["a"].receive("re", reply_to=elsewhere)
        await host.plugs["b"].wait_puts(1)
    reply = host.plugs["b"].puts[0][1].reply_to
    assert not isinstance(reply, immp.SentMessage)
    assert str(reply.text) == "ancient"


# -- order, failures ----------------------------------------------------------------------------


async def test_burst_of_1000_keeps_order_on_every_target():
    host = make_host("a", "b", "c", "d")
    add_sync(host, {"main": ["#a", "#b", "#c", "#d"]})
    expected = [f"message {i}" for i in range(1000)]
    async with running(host):
        for text in expected:
            await host.plugs["a"].receive(text)
        for name in "bcd":
            await host.plugs[name].wait_puts(1000, timeout=60)
        await settle()
    for name in "bcd":
        assert texts(host.plugs[name]) == expected
    assert host.plugs["a"].put_count == 0


async def test_interleaved_sources_keep_their_own_order():
    host = make_host("a", "b", "c")
    add_sync(host, {"main": ["#a", "#b", "#c"]})
    async with running(host):
        for i in range(200):
            await host.plugs["a"].receive(f"a{i}")
            await host.plugs["b"].receive(f"b{i}")
        await host.plugs["c"].wait_puts(400, timeout=30)
        await host.plugs["a"].wait_puts(200, timeout=30)
        await host.plugs["b"].wait_puts(200, timeout=30)
    on_c = texts(host.plugs["c"])
    assert [t for t in on_c if t[0] == "a"] == [f"a{i}" for i in range(200)]
    assert [t for t in on_c if t[0] == "b"] == [f"b{i}" for i in range(200)]
    assert texts(host.plugs["a"]) == [f"b{i}" for i in range(200)]


async def test_a_failing_target_does_not_stop_the_others(caplog):
    host = make_host("a", "b", "bad", "c", classes={"bad": BrokenPlug})
    add_sync(host, {"main": ["#a", "#b", "#bad", "#c"]})
    expected = [f"m{i}" for i in range(50)]
    async with running(host):
        for text in expected:
            await host.plugs["a"].receive(text)
        await host.plugs["b"].wait_puts(50)
        await host.plugs["c"].wait_puts(50)
        await settle()
    assert texts(host.plugs["b"]) == texts(host.plugs["c"]) == expected
    assert host.stats()["plugs"]["bad"]["send_failures"] == 50  # each one counted
    failures = [r for r in caplog.records if "Sending to #bad failed" in r.getMessage()]
    # Said once, not once per message: the same reason again within REPEAT_AFTER is counted.
    assert [(r.levelno, r.getMessage()) for r in failures] == [
        (logging.ERROR, "Sending to #bad failed: PlugError: the network is down")
    ]


async def test_a_failing_target_says_when_it_fails_anew_and_when_it_works_again(
    caplog, monkeypatch
):
    monkeypatch.setattr("immp_sync._fanout.REPEAT_AFTER", 0.3)
    host = make_host("a", "bad", classes={"bad": BrokenPlug})
    add_sync(host, {"main": ["#a", "#bad"]})
    bad = host.plugs["bad"]

    async def post(*texts_: str) -> None:
        for text in texts_:
            await host.plugs["a"].receive(text)
        await settle()

    def said() -> list[str]:
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        caplog.clear()
        return [line for line in lines if "#bad" in line]

    async with running(host):
        await post("m1", "m2", "m3")
        assert said() == ["Sending to #bad failed: PlugError: the network is down"]
        await trio.sleep(0.35)  # REPEAT_AFTER later, still failing: said again, with a count
        await post("m4")
        assert said() == [
            "Sending to #bad failed: PlugError: the network is down (2 more failures like the "
            "last one since it was logged)"
        ]
        bad.reason = "unknown channel"  # a new reason: said at once
        await post("m5")
        assert said() == ["Sending to #bad failed: PlugError: unknown channel"]
        bad.mode = "ok"
        await post("m6", "m7")
        assert said() == ["Sending to #bad works again, after 5 failed sends"]
        assert texts(bad) == ["m6", "m7"]
        bad.mode = "raise"  # a new run of failures starts afresh
        await post("m8")
        assert said() == ["Sending to #bad failed: PlugError: unknown channel"]


async def test_a_hanging_target_does_not_stop_the_others(caplog, monkeypatch):
    monkeypatch.setattr(BrokenPlug, "mode", "hang")
    caplog.set_level(logging.WARNING)
    host = make_host("a", "b", "bad", "c", classes={"bad": BrokenPlug})
    add_sync(host, {"main": ["#a", "#b", "#bad", "#c"]}, **{"queue-size": 5, "send-timeout": 0.05})
    expected = [f"m{i}" for i in range(300)]
    async with running(host):
        for text in expected:
            await host.plugs["a"].receive(text)
        await host.plugs["b"].wait_puts(300, timeout=30)
        await host.plugs["c"].wait_puts(300, timeout=30)
    assert texts(host.plugs["b"]) == texts(host.plugs["c"]) == expected
    log = [r.getMessage() for r in caplog.records]
    assert any("Sending to #bad timed out" in line for line in log)
    assert any("Target #bad is stuck" in line for line in log)
    # Every message for the stuck target is accounted for: sent (timed out) or dropped.
    hook = host.hooks["sync"]
    assert hook._targets == {}  # closed with the host
    dropped = [line for line in log if "messages for it were dropped" in line]
    assert dropped and all("Target #bad" in line for line in dropped)


# -- the echo marker ----------------------------------------------------------------------------


async def test_copies_are_marked_as_synced():
    host = make_host("a", "b")
    add_sync(host, {"main": ["#a", "#b"]})
    async with running(host):
        await host.plugs["a"].receive("hi")
        await host.plugs["b"].wait_puts(1)
    assert isinstance(host.plugs["b"].puts[0][1], SyncedMessage)


async def test_sync_hook_added_while_running():
    host = make_host("a", "b")
    async with running(host):
        add_sync(host, {"main": ["#a", "#b"]})
        await settle()
        assert host.hooks["sync"].open_state is immp.OpenState.active
        await host.plugs["a"].receive("late")
        await host.plugs["b"].wait_puts(1)
    assert texts(host.plugs["b"]) == ["late"]


async def test_a_long_burst_never_comes_back_to_its_source_with_small_histories():
    # Echoes must come back while they are still remembered: a copy whose echo arrived after
    # the echo history and the copy map forgot it would be bridged again, back to its source.
    names = ["src", "out1", "out2"]
    demo = {"interval": None, "channel": "room", "history": 100}
    host = immp.build_host({
        "host": {"echo-history": 100},
        "plugs": {name: {"path": "demo", "config": demo} for name in names},
        "channels": {f"{name}-room": {"plug": name, "source": "room"} for name in names},
        "hooks": {"sync": {"path": "sync", "config": {
            "channels": {"all": [f"{name}-room" for name in names]}, "history": 100}}},
    })  # fmt: skip
    src, outs = host.plugs["src"], [host.plugs["out1"], host.plugs["out2"]]
    async with running(host):
        for n in range(3000):
            if n % 50 == 0:
                for out in outs:
                    await out.wait_puts(n - 50, timeout=30)
            await src.receive(f"m{n}")
        for out in outs:
            await out.wait_puts(3000, timeout=30)
        await settle()
    assert src.put_count == 0
    assert [out.put_count for out in outs] == [3000, 3000]


async def test_a_disabled_plug_is_skipped_quietly_and_gets_copies_again_once_enabled(caplog):
    # `!disable c` (or `enabled: false`) is the operator's choice, not a failure: no error per
    # message, no send-failure count; one line when it starts and one when it ends.
    caplog.set_level(logging.INFO)
    host = make_host("a", "b", "c")
    host.add_hook(SyncHook("sync", {"channels": {"main": ["#a", "#b", "#c"]}}, host))
    a, b, c = (host.plugs[name] for name in "abc")
    async with running(host):
        await host.stop("c", disable=True)
        for n in range(20):
            await a.receive(f"while off {n}")
        await b.wait_puts(20)
        await settle()
        assert texts(c) == []
        stats = host.stats()
        assert stats["hooks"]["sync"]["extra"]["targets"]["#c"]["skipped"] == 20
        assert stats["plugs"]["c"]["send_failures"] == 0
        await host.start("c")
        await a.receive("back on")
        await c.wait_puts(1)
        await b.wait_puts(21)
    assert texts(c) == ["back on"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("immp_sync")]
    assert lines.count("Not sending to #c while plug c is disabled") == 1
    assert "Sending to #c again (20 messages not sent while plug c was disabled)" in lines


class SlowPlug(DemoPlug):
    """A demo network that takes 0.3 s per message (a rate-limited homeserver)."""

    async def put(self, channel, msg):
        await trio.sleep(0.3)
        return await super().put(channel, msg)


@pytest.mark.parametrize(("close_timeout", "delivered"), [(12.0, 25), (2.0, None)])
async def test_a_stop_lets_queued_copies_go_out_within_close_timeout_and_says_what_is_left(
    autojump_clock, caplog, close_timeout, delivered
):
    # 25 copies at 0.3 s each need 7.5 s: within a close-timeout of 12 s all go out (the hook
    # used to give up after 5 s whatever the setting, and said nothing); within 2 s some are left,
    # and the log says how many and that they are lost without the journal.
    caplog.set_level(logging.WARNING)
    host = make_host("a", "b", classes={"b": SlowPlug})
    host.close_timeout = close_timeout
    host.add_hook(SyncHook("sync", {"channels": {"main": ["#a", "#b"]}}, host))
    b = host.plugs["b"]
    async with running(host):
        for n in range(25):
            await host.plugs["a"].receive(f"m{n}")
        await trio.sleep(0.1)
    warnings = [r.getMessage() for r in caplog.records if "not sent within close-timeout" in
                r.getMessage()]  # fmt: skip
    if delivered:
        assert texts(b) == [f"m{n}" for n in range(25)]
        assert warnings == []
    else:
        sent = len(texts(b))
        assert 3 <= sent < 25
        [warning] = warnings
        assert (
            f"up to {25 - sent} copies not sent within close-timeout (2.0s): {25 - sent} to #b"
            in warning
        )
        assert warning.endswith("lost (`host: journal: true` keeps them across a stop)")
