"""Matrix <-> Matrix through the sync hook, on a real Synapse: edits, replies, redactions."""

from __future__ import annotations

import contextlib
import logging
import signal
import urllib.parse

import pytest
import trio
import yaml

import immp
from immp_demo.plug import DemoPlug
from immp_sync import SyncHook
from tests.faults.helpers import ImmpProcess
from tests.matrix.conftest import matrix_host, plug_config

pytestmark = pytest.mark.matrix


@contextlib.asynccontextmanager
async def bridged(config, room_a, room_b, store):
    host = immp.Host(store=store)
    host.add_hook(SyncHook("sync", {"channels": {"bridge": ["room0", "room1"]}}, host))
    async with matrix_host(config, [room_a, room_b], host=host) as running:
        yield running


def _relation(event: dict) -> dict:
    return event["content"].get("m.relates_to") or {}


async def test_edits_replies_redactions_reach_the_copies(synapse, alice, bob, bot):
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()
    name = alice.user_id[1:].split(":")[0]  # Synapse's default display name

    def copy_of(text):
        return lambda ev: ev["sender"] == bot.user_id and ev["content"].get("body") == text

    async with bridged(config, room_a, room_b, store):
        original = await alice.send(room_a, "question from A")
        copy = await bob.wait_for(room_b, copy_of(f"{name}: question from A"))
        # A reply on B to the copy becomes, on A, a reply to the original.
        await bob.send(
            room_b,
            {
                "msgtype": "m.text",
                "body": "answer from B",
                "m.relates_to": {"m.in_reply_to": {"event_id": copy["event_id"]}},
            },
        )
        answer = await alice.wait_for(
            room_a, lambda ev: "answer from B" in ev["content"].get("body", "")
        )
        assert _relation(answer) == {"m.in_reply_to": {"event_id": original}}
        # An edit on A edits the copy on B.
        await alice.send(
            room_a,
            {
                "msgtype": "m.text",
                "body": "* question, edited",
                "m.new_content": {"msgtype": "m.text", "body": "question, edited"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        edit = await bob.wait_for(room_b, lambda ev: _relation(ev).get("rel_type") == "m.replace")
        assert _relation(edit)["event_id"] == copy["event_id"]
        assert edit["content"]["m.new_content"]["body"] == f"{name}: question, edited"
        # A redaction on A redacts the copy on B.
        await alice.redact(room_a, original)
        await bob.wait_for(
            room_b,
            lambda ev: (
                ev["type"] == "m.room.redaction"
                and ev.get("redacts", ev["content"].get("redacts")) == copy["event_id"]
            ),
        )
        # Nothing looped: B has exactly the two copies the bot made, A the one.
    assert (
        len(
            [
                ev
                for ev in await bob.messages(room_b)
                if ev["sender"] == bot.user_id and ev["type"] == "m.room.message"
            ]
        )
        == 2
    )
    assert (
        len(
            [
                ev
                for ev in await alice.messages(room_a)
                if ev["sender"] == bot.user_id and ev["type"] == "m.room.message"
            ]
        )
        == 1
    )


async def test_copies_found_after_a_restart(synapse, alice, bob, bot):
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()
    async with bridged(config, room_a, room_b, store):
        original = await alice.send(room_a, "before the restart")
        copy = await bob.wait_for(
            room_b,
            lambda ev: (
                ev["sender"] == bot.user_id
                and "before the restart" in ev["content"].get("body", "")
            ),
        )
    async with bridged(config, room_a, room_b, store):
        await alice.send(
            room_a,
            {
                "msgtype": "m.text",
                "body": "* after",
                "m.new_content": {"msgtype": "m.text", "body": "after"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        edit = await bob.wait_for(room_b, lambda ev: _relation(ev).get("rel_type") == "m.replace")
        assert _relation(edit)["event_id"] == copy["event_id"]
        await bob.send(
            room_b,
            {
                "msgtype": "m.text",
                "body": "reply after restart",
                "m.relates_to": {"m.in_reply_to": {"event_id": copy["event_id"]}},
            },
        )
        answer = await alice.wait_for(
            room_a, lambda ev: "reply after restart" in ev["content"].get("body", "")
        )
        assert _relation(answer) == {"m.in_reply_to": {"event_id": original}}
        await alice.redact(room_a, original)
        await bob.wait_for(
            room_b,
            lambda ev: (
                ev["type"] == "m.room.redaction"
                and ev.get("redacts", ev["content"].get("redacts")) == copy["event_id"]
            ),
        )


async def test_real_process_restarted_on_its_sqlite_store(
    synapse, alice, bob, bot, tmp_path, immp_exe, clean_env
):
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    config = {
        "plugs": {"matrix": {"path": "matrix", "config": plug_config(synapse, bot)}},
        "channels": {
            "a": {"plug": "matrix", "source": room_a},
            "b": {"plug": "matrix", "source": room_b},
        },
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"bridge": ["a", "b"]}}}},
        "store": f"sqlite:///{tmp_path / 'immp.db'}",
        "logging": {
            "version": 1,
            "root": {"level": "INFO", "handlers": ["err"]},
            "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        },
    }
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(config))

    def copy(text):
        return lambda ev: ev["sender"] == bot.user_id and text in ev["content"].get("body", "")

    async def stop(proc):
        proc.proc.send_signal(signal.SIGTERM)
        await trio.to_thread.run_sync(proc.proc.wait, 20)
        assert "Traceback" not in "".join(proc.err), "".join(proc.err)[-3000:]

    async def ready(proc):
        with trio.fail_after(40):
            while not any("Ready" in line for line in proc.err):
                await trio.sleep(0.1)

    proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
    try:
        await ready(proc)  # a first start takes rooms as they are: no history
        original = await alice.send(room_a, "first run")
        first = await bob.wait_for(room_b, copy("first run"), timeout=40)
    finally:
        await stop(proc)
    await alice.send(room_a, "while stopped")  # the since token picks this up after the start
    proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
    try:
        await bob.wait_for(room_b, copy("while stopped"), timeout=40)
        await alice.send(
            room_a,
            {
                "msgtype": "m.text",
                "body": "* edited after restart",
                "m.new_content": {"msgtype": "m.text", "body": "edited after restart"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": original},
            },
        )
        edit = await bob.wait_for(room_b, lambda ev: _relation(ev).get("rel_type") == "m.replace")
        assert _relation(edit)["event_id"] == first["event_id"]
        await alice.redact(room_a, original)
        await bob.wait_for(
            room_b,
            lambda ev: (
                ev["type"] == "m.room.redaction"
                and ev.get("redacts", ev["content"].get("redacts")) == first["event_id"]
            ),
        )
    finally:
        await stop(proc)
    bodies = [
        ev["content"].get("body")
        for ev in await bob.messages(room_b)
        if ev["sender"] == bot.user_id and ev["type"] == "m.room.message"
    ]
    # The first copy (redacted now), the one made after the restart, and the edit: nothing
    # twice, nothing lost.
    assert len(bodies) == 3
    assert [b for b in bodies if b and "while stopped" in b] == [bodies[1]]


async def test_a_reply_to_a_message_from_before_a_restart_quotes_it(synapse, alice, bot, caplog):
    # The plug remembers recent events for reply quotes; one from before the restart is asked
    # of the homeserver (once), so that the copy on the other side still quotes its text and
    # author. Matrix's own fallback in the reply (body and <mx-reply>) stays out of the copy.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()
    name = alice.user_id[1:].split(":")[0]  # Synapse's default display name

    @contextlib.asynccontextmanager
    async def with_demo():
        host = immp.Host(store=store)
        demo = host.add_plug(DemoPlug("demo", {"interval": None, "echo": False}, host))
        host.add_channel("demo-room", immp.Channel(demo, "room"))
        host.add_hook(SyncHook("sync", {"channels": {"bridge": ["room0", "demo-room"]}}, host))
        async with matrix_host(config, [room], host=host):
            yield demo

    async def copy_of(demo, text):
        with trio.fail_after(20):
            while True:
                for _, msg in list(demo.puts):
                    if msg.text is not None and text in str(msg.text):
                        return msg
                await demo.wait_puts(demo.put_count + 1, timeout=20)

    async with with_demo() as demo:
        original = await alice.send(room, "question\nbefore the restart")
        await copy_of(demo, "before the restart")
    fallback = f"> <{alice.user_id}> question\n> before the restart"
    replies = [
        {  # as clients send it: the fallback in both bodies
            "msgtype": "m.text",
            "body": f"{fallback}\n\nanswer after the restart",
            "format": "org.matrix.custom.html",
            "formatted_body": f'<mx-reply><blockquote><a href="https://matrix.to/#/{room}/'
            f'{original}">In reply to</a> <a href="https://matrix.to/#/{alice.user_id}">'
            f"{alice.user_id}</a><br>question<br>before the restart</blockquote></mx-reply>"
            "answer after the restart",
            "m.relates_to": {"m.in_reply_to": {"event_id": original}},
        },
        {  # plain, the same event again: not asked again
            "msgtype": "m.text",
            "body": f"{fallback}\n\nplain answer",
            "m.relates_to": {"m.in_reply_to": {"event_id": original}},
        },
        {  # an event the homeserver does not have, twice: asked once, no quote
            "msgtype": "m.text",
            "body": "> <@nobody:localhost> lost\n\nreply to nothing 1",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$missing"}},
        },
        {
            "msgtype": "m.text",
            "body": "reply to nothing 2",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$missing"}},
        },
    ]
    with caplog.at_level(logging.DEBUG):
        async with with_demo() as demo:
            for content in replies:
                await alice.send(room, content)
            answer = await copy_of(demo, "answer after the restart")
            plain = await copy_of(demo, "plain answer")
            lost = [await copy_of(demo, f"reply to nothing {n}") for n in (1, 2)]
    for reply in (answer, plain):
        assert str(reply.text) in ("answer after the restart", "plain answer")
        assert str(reply.reply_to.text) == "question\nbefore the restart"
        assert reply.reply_to.user.id == alice.user_id
        assert reply.reply_to.user.real_name == name
    assert [str(msg.text) for msg in lost] == ["reply to nothing 1", "reply to nothing 2"]
    assert all(not (msg.reply_to and msg.reply_to.text) for msg in lost)
    asked = [r for r in caplog.records if "No quote for a reply to $missing" in r.getMessage()]
    assert [r.levelno for r in asked] == [logging.DEBUG]
    assert "M_NOT_FOUND" in asked[0].getMessage()

    def path_of(event_id: str) -> str:
        parts = (urllib.parse.quote(part, safe="") for part in (room, "event", event_id))
        return "/_matrix/client/v3/rooms/" + "/".join(parts)

    def asked_by(user_id: str, event_id: str) -> int:
        request = f'"GET {path_of(event_id)} HTTP'
        with synapse.log_path.open(errors="replace") as log:  # one access line per request
            return sum(1 for line in log if request in line and f"{{{user_id}}}" in line)

    # Synapse writes its log in batches, in order: once alice's request is there, so is the bot's.
    await alice.http.get(path_of("$missing"))  # 404
    with trio.fail_after(20):
        while not asked_by(alice.user_id, "$missing"):
            await trio.sleep(0.2)
    assert asked_by(bot.user_id, original) == 1
    assert asked_by(bot.user_id, "$missing") == 1


async def test_names_survive_a_restart(synapse, alice, bob, bot):
    # Members are lazy-loaded: after a restart on the same device and since token, the
    # homeserver does not send alice's member event again. Her copies keep her display name
    # all the same (asked of the homeserver once), not her raw Matrix ID.
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()
    name = alice.user_id[1:].split(":")[0]  # Synapse's default display name

    def copy_of(text):
        return lambda ev: ev["sender"] == bot.user_id and text in ev["content"].get("body", "")

    async with bridged(config, room_a, room_b, store):
        await alice.send(room_a, "first run")
        assert (await bob.wait_for(room_b, copy_of("first run")))["content"]["body"] == (
            f"{name}: first run"
        )
    async with bridged(config, room_a, room_b, store):
        await alice.send(room_a, "second run")
        copy = await bob.wait_for(room_b, copy_of("second run"))
    assert copy["content"]["body"] == f"{name}: second run"


async def test_refused_redaction_is_one_line(synapse, alice, bob, bot, caplog):
    # Bob (admin of B) redacts the bot's copy there; the sync hook passes the deletion on to
    # alice's original in A, where the bot has no power to redact: one ERROR line that says
    # what was refused and why, no traceback.
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    config = plug_config(synapse, bot)
    with caplog.at_level(logging.INFO):
        async with bridged(config, room_a, room_b, immp.MemoryStore()):
            original = await alice.send(room_a, "redact my copy")
            copy = await bob.wait_for(
                room_b,
                lambda ev: (
                    ev["sender"] == bot.user_id
                    and "redact my copy" in ev["content"].get("body", "")
                ),
            )
            await bob.redact(room_b, copy["event_id"])
            with trio.fail_after(20):
                while not (
                    refusals := [r for r in caplog.records if "cannot redact" in r.getMessage()]
                ):
                    await trio.sleep(0.1)
    [record] = refusals
    assert record.levelno == logging.ERROR and record.exc_info is None
    line = record.getMessage()
    assert "\n" not in line and "Traceback" not in caplog.text
    assert f"cannot redact {original} in {room_a}: 403 M_FORBIDDEN" in line, line


async def test_unsafe_links_are_not_bridged(synapse, alice, bob, bot):
    room_a = await alice.create_room(invite=[bot.user_id])
    room_b = await bob.create_room(invite=[bot.user_id])
    await bot.join(room_a)
    await bot.join(room_b)
    async with bridged(plug_config(synapse, bot), room_a, room_b, immp.MemoryStore()):
        await alice.send(
            room_a,
            {
                "msgtype": "m.text",
                "body": "js link and site",
                "format": "org.matrix.custom.html",
                "formatted_body": '<a href="javascript:alert(3)">js link</a> and '
                '<a href=" JavaScript:alert(4)">another</a> and '
                '<a href="https://example.org/">site</a>',
            },
        )
        copy = await bob.wait_for(
            room_b,
            lambda ev: ev["sender"] == bot.user_id and "js link" in ev["content"].get("body", ""),
        )
    content = copy["content"]
    assert "javascript" not in content["formatted_body"].lower()
    assert "javascript" not in content["body"].lower()
    assert "js link and another and " in content["formatted_body"]
    assert '<a href="https://example.org/">site</a>' in content["formatted_body"]
