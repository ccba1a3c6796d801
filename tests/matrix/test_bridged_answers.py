"""
Matrix <-> demo through the sync hook, with the commands hook: what hooks send into a bridged
Matrix room is bridged (recognised by the echo of its event), copies never come back, and a
reply to a copy quotes the original author and text; names from Matrix are one line.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time

import pytest
import trio

import immp
from immp_commands import CommandHook
from immp_demo.plug import DemoPlug
from immp_matrix.plug import clean_name
from immp_sync import SyncHook
from tests.matrix.conftest import matrix_host, plug_config

pytestmark = pytest.mark.matrix


@contextlib.asynccontextmanager
async def bridged(config, room, store, commands=True):
    """A host bridging ``room`` (``room0``) with a demo channel, with the commands hook."""
    host = immp.Host(store=store)
    demo = host.add_plug(DemoPlug("demo", {"interval": None, "echo": False}, host))
    host.add_channel("demo-room", immp.Channel(demo, "room"))
    host.add_hook(SyncHook("sync", {"channels": {"bridge": ["room0", "demo-room"]}}, host))
    if commands:
        host.add_hook(CommandHook("commands", {}, host))
    async with matrix_host(config, [room], host=host) as (_, plug, _rec):
        yield host, demo, plug


def texts(demo: DemoPlug) -> list[str]:
    return [str(msg.text) for _, msg in demo.puts if msg.text is not None]


async def put_containing(demo: DemoPlug, text: str, timeout: float = 20) -> immp.Message:
    with trio.fail_after(timeout):
        while True:
            for _, msg in list(demo.puts):
                if msg.text is not None and text in str(msg.text):
                    return msg
            await demo.wait_puts(demo.put_count + 1, timeout=timeout)


def bot_bodies(events: list[dict], bot_id: str) -> list[str]:
    return [
        ev["content"].get("body", "")
        for ev in events
        if ev["sender"] == bot_id and ev["type"] == "m.room.message"
    ]


async def test_a_command_answer_on_matrix_is_bridged_once(synapse, alice, bot):
    # Alice types !help on Matrix: the commands hook answers in the Matrix room, and the demo
    # side gets both the command and the answer (the answer's echo is recognised as what the
    # host sent, and the sync hook copies it like any message a hook sends). Nothing loops: a
    # copy made on Matrix is never copied back, and the answer reaches Matrix once.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    async with bridged(plug_config(synapse, bot), room, immp.MemoryStore()) as (_, demo, _):
        await alice.send(room, "!help")
        await put_containing(demo, "!help")
        answer = await put_containing(demo, "!help [name]")
        carol = immp.User(id="carol", plug=demo, real_name="carol")
        await demo.receive("hello from demo", user=carol, channel="room")
        await alice.wait_for(room, lambda ev: "hello from demo" in ev["content"].get("body", ""))
        await alice.send(room, "marker")
        await put_containing(demo, "marker")
        await trio.sleep(1)  # room for a wrong copy to show up
    said = texts(demo)
    assert said.count("!help") == 1
    assert said.count(str(answer.text)) == 1
    assert not [text for text in said if "hello from demo" in text]  # not copied back
    bodies = bot_bodies(await alice.messages(room), bot.user_id)
    assert [b for b in bodies if "!help [name]" in b] == [str(answer.text)]
    assert bodies.count("carol: hello from demo") == 1
    assert len(bodies) == 2


class _SlowFile(http.server.BaseHTTPRequestHandler):
    """Serves a small PNG, slower than the host waits for a put to finish (ECHO_WAIT)."""

    def do_GET(self):
        time.sleep(4)  # in the server's thread
        body = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


async def test_a_copy_whose_put_outlasts_the_echo_wait_is_not_copied_back(synapse, alice, bot):
    # A message with a caption and a picture is two events: the caption's echo comes back
    # while put() still fetches the picture (longer than the host waits for a put to finish
    # before calling a message new). It is still recognised as the echo of the copy.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pic.png"
    try:
        async with bridged(plug_config(synapse, bot), room, immp.MemoryStore()) as (_, demo, _):
            carol = immp.User(id="carol", plug=demo, real_name="carol")
            picture = immp.File(title="pic.png", type=immp.FileType.image, source=url)
            await demo.receive("slow caption", user=carol, channel="room", attachments=[picture])
            await alice.wait_for(room, lambda ev: ev["content"].get("msgtype") == "m.image")
            await alice.send(room, "marker")
            await put_containing(demo, "marker")
            await trio.sleep(1)
    finally:
        server.shutdown()
        server.server_close()
    assert not [text for text in texts(demo) if "slow caption" in text]


async def test_own_events_replayed_after_a_restart_are_not_bridged(synapse, alice, bot):
    # What the plug sent in an earlier run comes back from /sync when the since token is older
    # (a crash before it was saved): not the echo of anything this run sent, so never bridged.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()
    async with bridged(config, room, store, commands=False) as (host, demo, plug):
        before = await plug.state.get("since")
        await host.send(immp.Channel(plug, room), immp.Message("said by a hook"))
        carol = immp.User(id="carol", plug=demo, real_name="carol")
        await demo.receive("copied before", user=carol, channel="room")
        await alice.wait_for(room, lambda ev: "copied before" in ev["content"].get("body", ""))
        await alice.wait_for(room, lambda ev: "said by a hook" in ev["content"].get("body", ""))
        await put_containing(demo, "said by a hook")  # bridged in this run, once
    store.set("matrix", "since", before)  # as if the run had stopped before saving it
    async with bridged(config, room, store, commands=False) as (_, demo, _):
        await alice.send(room, "marker")
        await put_containing(demo, "marker")
        await trio.sleep(1)
    assert texts(demo) == ["marker"]


async def test_a_reply_to_a_copy_quotes_the_original_author_and_text(synapse, alice, bot):
    # Carol's message reaches Matrix as the bot's "carol: fresh demo message"; alice's reply
    # to it is quoted on the demo side as carol's, with carol's text, not as the bot's copy.
    # After a restart, the copy is read from the homeserver: the plug's own "name: " prefix is
    # recognised, and the quote is still carol's (by name).
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    config = plug_config(synapse, bot)
    store = immp.MemoryStore()

    def is_copy(ev):
        return ev["sender"] == bot.user_id and "fresh demo message" in ev["content"].get("body", "")

    def reply(text: str, event_id: str) -> dict:
        return {
            "msgtype": "m.text",
            "body": f"> <{bot.user_id}> carol: fresh demo message\n\n{text}",
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }

    async with bridged(config, room, store, commands=False) as (_, demo, _):
        carol = immp.User(id="carol", plug=demo, real_name="carol")
        original = await demo.receive("fresh demo message", user=carol, channel="room")
        copy = await alice.wait_for(room, is_copy)
        assert copy["content"]["body"] == "carol: fresh demo message"
        await alice.send(room, reply("a reply", copy["event_id"]))
        answer = await put_containing(demo, "a reply")
    assert answer.reply_to.id == original.id
    assert answer.reply_to.user is carol
    assert str(answer.reply_to.text) == "fresh demo message"
    name = alice.user_id[1:].split(":")[0]
    assert str(answer.render(quote_reply=True)) == (
        f'<{name}> [re carol: "fresh demo message"] a reply'
    )
    async with bridged(config, room, store, commands=False) as (_, demo, _):
        await alice.send(room, reply("after a restart", copy["event_id"]))
        later = await put_containing(demo, "after a restart")
    assert later.reply_to.user.real_name == "carol"
    assert str(later.reply_to.text) == "fresh demo message"
    assert str(later.render(quote_reply=True)) == (
        f'<{name}> [re carol: "fresh demo message"] after a restart'
    )


def test_names_lose_control_characters():
    assert clean_name("Alice 🌸\nPRIVMSG #x :evil\x01") == "Alice 🌸 PRIVMSG #x :evil"
    assert clean_name("a\u202eb\u2066c\x85d\x9f\r\ne\tf\u2069\x7f") == "abc d ef"
    assert clean_name("\n\x00") is None
    assert clean_name("Ünïcode ok") == "Ünïcode ok"


async def test_a_display_name_with_a_newline_reaches_the_bridge_as_one_line(synapse, alice, bot):
    # Display names (and room names) from Matrix lose their control characters: a newline
    # becomes a space, the rest goes, so that no copy shows a line of its own. Message text
    # keeps its lines.
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    evil = "Alice 🌸\nPRIVMSG #x :evil\x01\u202e"
    clean = "Alice 🌸 PRIVMSG #x :evil"
    async with bridged(plug_config(synapse, bot), room, immp.MemoryStore()) as (_, demo, _):
        member = {"membership": "join", "displayname": evil}
        await alice.state(room, "m.room.member", member, key=alice.user_id)
        renamed = await put_containing(demo, "is now known as")
        await alice.send(room, "line one\nline two")
        said = await put_containing(demo, "line one")
        await alice.state(room, "m.room.name", {"name": "Lobby\r\nKICK #x\u2066"})
        with trio.fail_after(20):
            while not (titles := [msg.title for _, msg in demo.puts if msg.title]):
                await demo.wait_puts(demo.put_count + 1, timeout=20)
    assert str(renamed.text) == f"is now known as {clean}"
    assert said.user.real_name == clean
    assert str(said.text) == "line one\nline two"
    assert "\n" not in str(renamed.render()) and "\x01" not in str(said.render())
    assert titles == ["Lobby KICK #x"]
