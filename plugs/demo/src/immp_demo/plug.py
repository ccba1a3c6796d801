"""
Demo plug: a chat network that lives inside the process.

Config: the keys of ``SCHEMA`` below, each with its ``doc``; the README's table is generated
from it (``hatch run docs``).

Console commands:
    ``/me TEXT`` sends an action; ``/edit ID TEXT`` edits one of your messages (the console's
    messages are numbered from 1 in the order typed); ``/delete ID`` deletes one; ``/join`` and
    ``/part`` announce the console user joining or leaving. End of input (Ctrl-D) closes the
    console, which says so; the host keeps running.

State kept in the store (``self.state``), so that a restarted demo network behaves like a real
one: message numbers go on where they stopped (``next-id``, reserved in blocks), and the
console's numbers of your messages (``console``) still work for ``/edit`` and ``/delete``.

For tests, :meth:`DemoPlug.receive`, :meth:`DemoPlug.edit_message`,
:meth:`DemoPlug.delete_message` and :meth:`DemoPlug.join_part` inject network events, and
:attr:`DemoPlug.puts` / :meth:`DemoPlug.wait_puts` show what was sent to the plug.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections import deque

import trio

import immp

from .console import render

SCHEMA = immp.Schema({
    immp.Optional("interval", 10.0, doc="seconds between timer messages; `null` turns the timer "
                                        "off"): immp.Nullable(immp.Positive()),
    immp.Optional("text", "Test", doc="what the timer posts"): str,
    immp.Optional("user", None, doc="name of the demo user posting timer messages",
                  doc_default="the plug's name"): immp.Nullable(str),
    immp.Optional("channel", "dummy", doc="source of the channel the timer and the console post "
                                          "into"): immp.Any_(str, int, describe="a string"),
    immp.Optional("echo", True, doc="echo what is sent to the plug back into its channel, with a "
                                    "fresh ID, as a network does (so the host's echo "
                                    "recognition is exercised)"): bool,
    immp.Optional("console", False, doc="read standard input as messages from `console-user` in "
                                        "`channel`, and print every message sent to the plug on "
                                        "standard output"): bool,
    immp.Optional("show", False, doc="print every message sent to this plug, prefixed `[name]` "
                                     "(to watch a plug without a console)"): bool,
    immp.Optional("console-user", "you", doc="name of the person at the console"): str,
    immp.Optional("input", None, doc="a file whose lines are posted as messages from `user` "
                                     "in `channel`, as they are appended to it; how far it was "
                                     "read is kept in the store, saved only once the host took "
                                     "the messages in (journaled, with `host: journal: true`), "
                                     "so a process killed while reading neither loses nor "
                                     "repeats a line (each line's ID is `input:` and its "
                                     "offset in the file, the same if it is read again; "
                                     "`user` is the plug's own: the commands "
                                     "hook does not answer these lines, as it does not answer "
                                     "a bot)"): immp.Nullable(str),
    immp.Optional("output", None, doc="a file that every message sent to this plug is appended "
                                      "to, one JSON line each (`key`, `id`, `text`; an edit "
                                      "adds `edited: true`, a deletion is `id` and `deleted: "
                                      "true`); like a network with idempotent sends (Matrix's "
                                      "txnId), a message whose journal delivery key is in the "
                                      "file already is not written again"): immp.Nullable(str),
    immp.Optional("history", 1000, doc="messages remembered, for edits, deletes and the `puts` "
                                       "log"): immp.Positive(int),
})  # fmt: skip

#: Message numbers reserved in the store at a time: a restart goes on after the last block, so
#: a number is never given twice. (The reservation is queued before any message numbered from
#: it, so a store that kept a message's copies kept its block too.)
ID_BLOCK = 1000


class DemoPlug(immp.Plug):
    """A network-free plug: timer messages, echo, an optional console. See the module doc."""

    schema = SCHEMA
    network_name = "Demo"
    can_edit = True
    can_delete = True
    # Numbers never given twice (kept in blocks in the store), the input's lines by offset.
    stable_ids = True

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        self._ids = itertools.count(1)
        self._id_limit: int | None = None  # end of the reserved block, once open
        # The input file's lines are read from the offset saved after them. (A change of the
        # config is a new plug: a reload restarts it.)
        self.has_cursor = bool(self.config["input"])
        self.bot = immp.User(
            id=self.config["user"] or name, plug=self, username=self.config["user"] or name
        )
        # The console user's ID can never equal the bot's, whatever the plug is called.
        self.console_user = immp.User(
            id=f"console:{self.config['console-user']}",
            plug=self,
            username=self.config["console-user"],
        )
        # By ID, and the IDs in the order added: the oldest is forgotten past `history` (a
        # BoundedCache's Python __setitem__ cost more, written for every message in and out).
        self._messages: dict[str, immp.SentMessage] = {}
        self._order: deque[str] = deque()
        #: The latest (channel, message) pairs sent to this plug, oldest first.
        self.puts: deque[tuple[immp.Channel, immp.Message]] = deque(maxlen=self.config["history"])
        self.put_count = 0
        # Set by the put that reaches the count awaited; made only while wait_puts() waits.
        self._put_event: trio.Event | None = None
        self._put_awaited = 0
        self._console_ids: list[str] = []
        # What the console typed, for /edit and /delete after a restart: [id, source, action]
        # ([id, None, None] once deleted).
        self._console_log: list[list] = []
        #: Echoes the network skipped because the host was behind (see open()).
        self.skipped_echoes = 0
        self._on_wire = 0  # echoes on the wire, not yet handed to the host
        self._default_channel: immp.Channel | None = None
        self._output: int | None = None  # the output file's descriptor, while open
        self._written: dict[str, str] = {}  # delivery key -> ID, of what the output file holds

    @property
    def default_channel(self) -> immp.Channel:
        source = str(self.config["channel"])
        if self._default_channel is None or self._default_channel.source != source:
            self._default_channel = immp.Channel(self, source)
        return self._default_channel

    def _next_id(self) -> str:
        number = next(self._ids)
        if self._id_limit is not None and number >= self._id_limit:
            self._id_limit = number + ID_BLOCK
            self.host.store.set(self.name, "next-id", self._id_limit)
        return str(number)

    def _remember(self, sent: immp.SentMessage) -> None:
        self._messages[sent.id] = sent
        self._order.append(sent.id)
        if len(self._order) > self.config["history"]:
            self._messages.pop(self._order.popleft(), None)

    async def open(self):
        first = await self.state.get("next-id", 1)
        self._ids = itertools.count(first)
        self._id_limit = first + ID_BLOCK
        await self.state.set("next-id", self._id_limit)
        self._console_log = await self.state.get("console", [])
        self._console_ids = [id for id, _, _ in self._console_log]
        if self.config["echo"]:
            # Echoes come back without put() ever waiting for the host. (Waiting there for room
            # in the host's inbox would make put() wait for the host's pump while the pump waits
            # for put() to finish, to see if what it holds is its echo.) put() hands an echo
            # straight to the host when it has room and nothing is queued before it; otherwise
            # it goes on this wire, in order, and the network task delivers it. When ``history``
            # echoes wait on the wire, like the IRC plug, the network skips the echo and says
            # so: it only shows us our own message, and nobody's message is lost.
            self._wire, wire = trio.open_memory_channel(self.config["history"])
            self.nursery.start_soon(self._network, wire)
        if self.config["interval"] is not None:
            self.nursery.start_soon(self._timer)
        if self.config["console"]:
            self.nursery.start_soon(self._console)
        if self.config["output"]:
            self._open_output(self.config["output"])
        if self.config["input"]:
            self.nursery.start_soon(self._input, self.config["input"])

    async def close(self):
        if self._output is not None:
            os.close(self._output)
            self._output = None

    def _open_output(self, path: str) -> None:
        self._written = {}
        try:
            with open(path, encoding="utf-8") as lines:
                for line in lines:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a kill: it was never written whole
                    if row.get("key"):
                        self._written[row["key"]] = row["id"]
        except FileNotFoundError:
            pass
        self._output = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def _input(self, path: str) -> None:
        offset = await self.state.get("input-offset", 0)
        while True:
            try:
                with open(path, "rb") as stream:  # noqa: ASYNC230 (a local file, 64 KiB at most)
                    stream.seek(offset)
                    data = stream.read(65536)
            except FileNotFoundError:
                data = b""
            end = data.rfind(b"\n")
            if end < 0:
                await trio.sleep(0.05)
                continue
            at = offset
            for line in data[:end].split(b"\n"):
                text = line.decode("utf-8", "replace").rstrip("\r")
                if text:
                    # The line's ID is where it starts in the file: the same if it is read
                    # again (a crash before the offset below was saved), which the journal
                    # knows it by (see Journal.repeated).
                    await self.receive(text, id=f"input:{at}")
                at += len(line) + 1
            offset += end + 1
            # Only once the host has them (journaled) does the position move past them.
            await self.taken()
            await self.state.set("input-offset", offset)

    # -- the "network" ----------------------------------------------------------------------------

    async def receive(
        self,
        text=None,
        *,
        user: immp.User | None = None,
        channel: immp.Channel | str | None = None,
        id: str | None = None,
        **fields,
    ) -> immp.SentMessage:
        """Inject a message as if someone on the network posted it (with the ID ``id``, else
        the next number); returns it."""
        if isinstance(channel, str):
            channel = immp.Channel(self, channel)
        sent = immp.SentMessage(
            id or self._next_id(),
            channel or self.default_channel,
            text=text,
            user=user or self.bot,
            **fields,
        )
        self._remember(sent)
        if not self.host.offer(self, sent):  # (self.offer(), a call less) full: wait for room
            await self.queue(sent)
        return sent

    async def edit_message(self, id: str, text) -> immp.SentMessage:
        """Report that message ``id`` was edited to ``text``."""
        old = self._known(str(id))
        sent = immp.SentMessage(
            old.id,
            old.channel,
            revision=old.revision + 1,
            text=text,
            user=old.user,
            action=old.action,
            edited=True,
        )
        self._remember(sent)
        await self.queue(sent)
        return sent

    async def delete_message(self, id: str) -> immp.SentMessage:
        """Report that message ``id`` was deleted."""
        old = self._known(str(id))
        self._messages.pop(old.id, None)
        for entry in self._console_log:
            if entry[0] == old.id:
                entry[1:] = [None, None]
                await self.state.set("console", self._console_log)
        sent = immp.SentMessage(
            old.id, old.channel, revision=old.revision + 1, deleted=True, user=old.user
        )
        await self.queue(sent)
        return sent

    def _known(self, id: str) -> immp.SentMessage:
        """A message of this network by ID: remembered, or typed at the console before a restart."""
        if id in self._messages:
            return self._messages[id]
        for known, source, action in self._console_log:
            if known == id and source is not None:  # (None: deleted)
                return immp.SentMessage(
                    id, immp.Channel(self, source), user=self.console_user, action=action
                )
        raise KeyError(id)

    async def join_part(
        self, user: immp.User, *, joined: bool = True, channel: immp.Channel | None = None
    ) -> immp.SentMessage:
        """Report that ``user`` joined (or left) the channel."""
        key = "joined" if joined else "left"
        return await self.receive(user=user, channel=channel, **{key: [user]})

    async def _network(self, wire: trio.MemoryReceiveChannel) -> None:
        async with wire:
            while True:
                # What is on the wire goes without a trip through the scheduler per echo
                # (``async for`` yields after each), or the wire drains slower than it fills.
                try:
                    sent = await immp.take(wire)
                except trio.EndOfChannel:
                    return
                await self.queue(sent)
                self._on_wire -= 1

    async def _timer(self):
        while True:
            await trio.sleep(self.config["interval"])
            await self.receive(self.config["text"])

    # -- sending ----------------------------------------------------------------------------------

    async def put(self, channel, msg):
        if msg.key is not None and msg.key in self._written:
            # Sent before (a replay after a crash): the same message, not a second one.
            return [immp.Receipt(self._written[msg.key], channel)]
        self._record(channel, msg)
        sent = immp.SentMessage.copy_of(msg, self._next_id(), channel)
        if self._output is not None:
            self._write_output({"key": msg.key, "id": sent.id, "text": str(msg.render())})
        self._remember(sent)
        if self.config["echo"]:
            try:
                # Nothing waiting on the wire and room in the host's inbox: hand the echo
                # straight over, in order and without waiting.
                if not (self._on_wire == 0 and self.host.offer(self, sent)):
                    self._wire.send_nowait(sent)
                    self._on_wire += 1
            except immp.PlugError:
                pass  # the plug is closing: its echo goes with the connection, as a network's
            except trio.WouldBlock:
                self.skipped_echoes += 1
                if self.skipped_echoes == 1 or self.skipped_echoes % 1000 == 0:
                    self.log.warning("%d echoes of our own messages skipped: the host is "
                                     "behind", self.skipped_echoes)  # fmt: skip
        return [sent.receipt]

    def _write_output(self, row: dict) -> None:
        # One JSON line per message sent, edit and deletion, appended whole (one write).
        os.write(self._output, (json.dumps(row, ensure_ascii=False) + "\n").encode())
        if row["key"] is not None:
            self._written[row["key"]] = row["id"]

    async def edit(self, receipt, msg):
        if msg.key is not None and msg.key in self._written:
            return receipt  # written before (a replay after a crash)
        old = self._messages.get(receipt.id)
        revision = old.revision + 1 if old else receipt.revision + 1
        sent = immp.SentMessage(
            receipt.id,
            receipt.channel,
            revision=revision,
            text=msg.text,
            user=msg.user,
            action=msg.action,
            edited=True,
        )
        self._remember(sent)
        self._record(receipt.channel, sent)
        if self._output is not None:
            self._write_output({"key": msg.key, "id": receipt.id, "edited": True,
                                "text": str(msg.render())})  # fmt: skip
        return sent.receipt

    async def delete(self, receipt):
        original = self._messages.pop(receipt.id, None)
        deleted = immp.SentMessage(receipt.id, receipt.channel, deleted=True)
        self._record(receipt.channel, deleted, original)
        if self._output is not None:
            self._write_output({"key": None, "id": receipt.id, "deleted": True})

    def _record(
        self, channel: immp.Channel, msg: immp.Message, original: immp.Message | None = None
    ) -> None:
        """Note what was sent to the plug (``puts``, ``wait_puts``) and show it if asked."""
        self.puts.append((channel, msg))
        self.put_count += 1
        if self._put_event is not None and self.put_count >= self._put_awaited:
            self._put_event.set()
            self._put_event = None
        if self.config["console"] or self.config["show"]:
            self._show(msg, original)

    def _show(self, msg: immp.Message, original: immp.Message | None = None) -> None:
        text = render(msg, color=sys.stdout.isatty(), original=original)
        if self.config["console"]:
            _print(text)
        elif self.config["show"]:
            _print(f"[{self.name}] {text}")

    async def wait_puts(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` messages in total were sent to the plug."""
        with trio.fail_after(timeout):
            while self.put_count < count:
                if self._put_event is None:
                    self._put_event = trio.Event()
                    self._put_awaited = count
                else:  # several waiters: woken at the lowest count, each waits on for its own
                    self._put_awaited = min(self._put_awaited, count)
                await self._put_event.wait()

    # -- channels and users -----------------------------------------------------------------------

    async def user_from_id(self, id):
        for user in (self.bot, self.console_user):
            if user.id == id:
                return user
        return None

    async def user_from_username(self, username):
        for user in (self.bot, self.console_user):
            if user.username == username:
                return user
        return None

    async def user_is_system(self, user):
        return user == self.bot

    async def channel_is_private(self, channel):
        return channel.source.startswith("@")

    async def channel_title(self, channel):
        return channel.source

    async def channel_members(self, channel):
        return [self.bot, self.console_user]

    async def channel_admins(self, channel):
        return [self.bot]

    async def public_channels(self):
        return [self.default_channel]

    # -- the console ------------------------------------------------------------------------------

    async def _console(self):
        stream = trio.lowlevel.FdStream(_own_stdin())
        buffer = b""
        async with stream:
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    await self._console_line(line.decode("utf-8", "replace").rstrip("\r"))
            if buffer:
                await self._console_line(buffer.decode("utf-8", "replace"))
        self.log.info("Console input ended")
        _print("(console closed: end of input; IMMP keeps running, Ctrl-C stops it)")

    async def _console_line(self, line: str) -> None:
        if not line.strip():
            return
        user = self.console_user
        command, _, rest = line.partition(" ")
        usage = {"/me": "/me TEXT", "/edit": "/edit N TEXT", "/delete": "/delete N"}
        if command in usage and not (rest.strip() and (command != "/edit" or " " in rest.strip())):
            _print(f"(usage: {usage[command]})")
            return
        try:
            if command == "/me":
                sent = await self.receive(rest, user=user, action=True)
            elif command == "/edit":
                ident, _, text = rest.strip().partition(" ")
                await self.edit_message(self._console_id(ident), text)
                return
            elif command == "/delete":
                await self.delete_message(self._console_id(rest.strip()))
                # The number typed, not the ID the message has here or its copies elsewhere.
                _print(f"(message {rest.strip()} deleted)")
                return
            elif command == "/join":
                await self.join_part(user, joined=True)
                return
            elif command == "/part":
                await self.join_part(user, joined=False)
                return
            else:
                sent = await self.receive(line, user=user)
        except (KeyError, IndexError, ValueError):
            _print(f"(no message {rest.split(' ')[0]!r} of yours to change)")
            return
        self._console_ids.append(sent.id)
        self._console_log.append([sent.id, sent.channel.source, sent.action])
        del self._console_log[: -self.config["history"]]
        await self.state.set("console", self._console_log)

    def _console_id(self, ident: str) -> str:
        return self._console_ids[int(ident) - 1] if int(ident) > 0 else ""


def _own_stdin() -> int:
    """
    A file descriptor for standard input that is ours alone. trio makes the descriptor it
    reads non-blocking, and that flag belongs to the open file, which a terminal usually shares
    between stdin, stdout and the shell that started us: a plain ``dup`` would leave stdout
    non-blocking (a slow terminal makes ``print`` fail) and the shell's terminal broken after
    exit. Opening ``/proc/self/fd/0`` (Linux) gives a new open file; elsewhere, or for a socket,
    fall back to ``dup``.
    """
    fd = sys.stdin.fileno()
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return os.dup(fd)


def _print(text: str) -> None:
    print(text, flush=True)
