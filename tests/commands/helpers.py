"""What the commands tests share: a hook full of test commands, a relay, and a chat helper."""

from __future__ import annotations

import immp
import immp_commands.plugin
import immp_demo.plugin
from immp.plugins import Plugins


def plugins() -> Plugins:
    """Only the plugins these tests use, so that another distribution's state cannot break them."""
    found = Plugins(discover=False)
    found.add(immp_demo.plugin, "immp-plug-demo")
    found.add(immp_commands.plugin, "immp-hook-commands")
    return found


class ToolHook(immp.Hook):
    """Declares one command per parser, scope, role and failure the tests need."""

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority=priority)
        self.calls: list[tuple[str, tuple]] = []

    async def answer(self, msg, name, *args, text=None):
        self.calls.append((name, args))
        await msg.channel.send(immp.Message(text if text is not None else f"{name} {args!r}"))

    @immp.command("ping")
    async def ping(self, msg):
        """Answer pong."""
        await self.answer(msg, "ping", text="pong")

    @immp.command("say")
    async def say(self, msg, first, second=None, *more):
        """Repeat words.

        Split on white space."""
        await self.answer(msg, "say", first, second, *more)

    @immp.command("quote", parser=immp.CommandParser.shlex)
    async def quote(self, msg, a, b=None):
        """Shell-like quoting."""
        await self.answer(msg, "quote", a, b)

    @immp.command("raw", parser=immp.CommandParser.none)
    async def raw(self, msg, text):
        """Take the rest as rich text."""
        self.calls.append(("raw", (text,)))
        await msg.channel.send(immp.Message(text))

    @immp.command("hyb", parser=immp.CommandParser.hybrid)
    async def hyb(self, msg, who, text=None):
        """One word, then the rest."""
        self.calls.append(("hyb", (who, text)))
        await msg.channel.send(immp.Message(f"{who}: {text}"))

    @immp.command("secret", scope=immp.CommandScope.private)
    async def secret(self, msg):
        """Private only."""
        await self.answer(msg, "secret", text="psst")

    @immp.command("room", scope=immp.CommandScope.shared)
    async def room(self, msg):
        """Shared channels only."""
        await self.answer(msg, "room", text="everyone")

    @immp.command("shut", role=immp.CommandRole.admin)
    async def shut(self, msg):
        """Admins only."""
        await self.answer(msg, "shut", text="shut done")

    @immp.command("boom")
    async def boom(self, msg):
        """Always fails."""
        self.calls.append(("boom", ()))
        raise ValueError("kaput\nat line two")

    @immp.command("hidden", test=lambda hook, msg: False)
    async def hidden(self, msg):
        """Never applicable."""
        await self.answer(msg, "hidden")

    @immp.command("whole", sync_aware=True)
    async def whole(self, msg):
        """Runs on the bridge as a whole."""
        await self.answer(msg, "whole", text=f"whole from {msg.channel.plug.name}")


class WatchHook(immp.Hook):
    """A hook whose config names a channel, as the sync hook's does."""

    schema = immp.Schema({"channel": immp.Ref("channel")})


class VirtualPlug(immp.Plug):
    """A plug with no network of its own, like the sync hook's bridge plug."""

    virtual = True
    network_name = "Bridge"

    def __init__(self, name, config, host, targets=()):
        super().__init__(name, config, host)
        self.targets = list(targets)
        self.relay: RelayHook | None = None

    async def put(self, channel, msg):
        if self.relay is not None:
            self.relay.mine.append(msg)  # what the bridge sends is the bridge's own
        receipts = []
        for target in self.targets:
            receipts.extend(await target.send(msg))
        return receipts


class RelayHook(immp.Hook):
    """
    A tiny bridge: copies every message in ``channels`` that it did not send itself to the
    others (keeping the author, like the sync hook), and also shows it on ``bridge``'s channel
    when given. Other hooks' answers are bridged too.
    """

    def __init__(self, name, host, channels, bridge=None):
        super().__init__(name, {}, host)
        self.channels = channels
        self.bridge = bridge
        self.mine: list[immp.Message] = []
        if bridge is not None:
            bridge.relay = self
        self._ids = 0

    async def on_receive(self, sent, source, primary):
        if sent.channel not in self.channels or any(source is m for m in self.mine):
            return
        for channel in self.channels:
            if channel != sent.channel:
                copy = immp.Message(sent.text, sent.user)
                self.mine.append(copy)
                await channel.send(copy)
        if self.bridge is not None and self.bridge.open_state is immp.OpenState.active:
            self._ids += 1
            await self.bridge.queue(immp.SentMessage(
                f"b{self._ids}", immp.Channel(self.bridge, "bridge"), text=sent.text,
                user=sent.user))  # fmt: skip


def said(plug, since: int = 0) -> list[str]:
    """The plain text of what was sent to a demo plug, from the ``since``-th message on."""
    return [str(msg.text) for _, msg in list(plug.puts)[since:]]
