"""The sync hook: channels joined into bridges, each message copied to the rest of its bridge."""

from __future__ import annotations

import immp

from ._bridge import COMMON_SCHEMA, BridgeHook, Route, SyncedMessage
from ._plug import SyncPlug

SCHEMA = immp.Schema({
    immp.Optional("channels", {}, doc="bridge label -> list of channel names"):
        {str: [immp.Ref("channel")]},
    immp.Optional("plug", None, doc="name of a virtual plug to register: one channel per bridge "
                                    "label (source = the label), where other hooks see every "
                                    "message of the bridge and can send, edit and delete into "
                                    "all of it"): immp.Nullable(str),
    immp.Optional("titles", {}, doc="bridge label -> title of its channel on the virtual plug "
                                    "(default: the label)"): {str: str},
    immp.Optional("notify-unreachable", True, doc="while a network of a bridge is unreachable "
                  "(its plug reports its link down, e.g. an IRC server restarting), tell the "
                  "other channels once: \"network X is unreachable; messages to it are held\", "
                  "and once when it is back"): bool,
    **COMMON_SCHEMA,
})  # fmt: skip


def _bridged(hook: SyncHook, msg: immp.SentMessage) -> bool:
    return hook.label_of(msg.channel) is not None


def _is_open(plug: immp.Plug) -> bool:
    return plug.open_state is immp.OpenState.active


class _Reachability:
    """The host's observer for a sync hook with ``notify-unreachable``: links down and up."""

    def __init__(self, hook: SyncHook):
        self.hook = hook

    def plug_connection_changed(self, plug: immp.Plug, connected: bool, reason) -> None:
        self.hook.reachability_changed(plug, connected)


class SyncHook(BridgeHook):
    """
    Joins channels into bridges: ``channels`` maps a label to channel names, and a message
    posted in any of them is copied to all the others (see the package docstring).
    """

    schema = SCHEMA

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority)
        # label -> its channels; channel -> route; the virtual plug's channel -> route.
        self._bridges: dict[str, list[immp.Channel]] = {}
        self._routes: dict[immp.Channel, Route] = {}
        self._virtual_routes: dict[immp.Channel, Route] = {}
        # Plugs the bridges were told are unreachable (by name), and the observer that tells.
        self._unreachable: set[str] = set()
        self._reachability = _Reachability(self)

    def on_load(self) -> None:
        if self.config["plug"] and self.plug is None:
            self.plug = SyncPlug(self.config["plug"], self)
            self.host.add_plug(self.plug)

    async def open(self) -> None:
        self._rebuild()
        if self.config["notify-unreachable"]:
            self.host.add_observer(self._reachability)
            for plug in list(self.host.plugs.values()):  # went down before we were open
                if not plug.connected:
                    self.reachability_changed(plug, False)
        if self.plug is not None:
            await self.host.start(self.plug.name)  # the bridge plug lives while the hook does

    async def close(self) -> None:
        self.host.remove_observer(self._reachability)
        self._unreachable.clear()
        await super().close()
        if self.plug is not None:
            await self.host.stop(self.plug.name)

    async def on_config_change(self, source: object) -> None:
        if source is self:
            self._reset_options()
        if self.open_state is immp.OpenState.active:
            self._rebuild()  # a channel may have been added or removed

    # -- bridges ----------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Work out every route from the config (after open and after each change)."""
        bridges: dict[str, list[immp.Channel]] = {}
        targets: dict[immp.Channel, tuple[str, list[immp.Channel]]] = {}
        for label, names in self.config["channels"].items():
            channels: list[immp.Channel] = []
            for name in names:
                channel = self.host.channels.get(name)
                if channel is None:
                    self.log.warning("Bridge %s: no channel named %r, left out", label, name)
                elif channel not in channels:
                    channels.append(channel)
            bridges[label] = channels
            extra = [self.plug.channel(label)] if self.plug else []
            for channel in channels:
                others = [c for c in channels if c != channel] + extra
                if channel in targets:  # in several bridges: copies go to all of them
                    known = targets[channel][1]
                    known.extend(c for c in others if c not in known)
                else:
                    targets[channel] = (label, others)
        self._bridges = bridges
        self._routes = {
            channel: Route(channel, label, tuple(self._target(c) for c in others))
            for channel, (label, others) in targets.items()
        }
        self._virtual_routes = {}
        if self.plug:
            for label, channels in bridges.items():
                virtual = self.plug.channel(label)
                self._virtual_routes[virtual] = Route(
                    virtual, label, tuple(self._target(c) for c in channels)
                )
        used = {t.channel for route in self._routes.values() for t in route.targets}
        used.update(t.channel for route in self._virtual_routes.values() for t in route.targets)
        self._retire_targets(used)

    def reachability_changed(self, plug: immp.Plug, connected: bool) -> None:
        """
        A plug's link went down or up: tell the other channels of each bridge it is in, once
        per outage ("network X is unreachable; messages to it are held", then "network X is
        back"). A plug that closes is not unreachable; the notices are copies, never synced.
        """
        if connected:
            if plug.name not in self._unreachable:
                return
            self._unreachable.discard(plug.name)
            text = f"network {plug.name} is back"
        else:
            if plug.name in self._unreachable or not _is_open(plug):
                return
            self._unreachable.add(plug.name)
            text = f"network {plug.name} is unreachable; messages to it are held"
        self.nursery.start_soon(self._announce, plug, text)

    async def _announce(self, plug: immp.Plug, text: str) -> None:
        told: set[immp.Channel] = set()
        for channels in self._bridges.values():
            if not any(channel.plug is plug for channel in channels):
                continue
            for channel in channels:
                if channel.plug is plug or channel in told or not channel.plug.connected:
                    continue
                told.add(channel)
                try:
                    await channel.send(SyncedMessage(text))
                except Exception as exc:
                    self.log.warning("Could not tell %r that %s: %s", channel, text, exc)

    async def route(self, channel: immp.Channel) -> Route | None:
        return self._routes.get(channel)

    async def on_receive(self, sent: immp.SentMessage, source: immp.Message, primary: bool):
        # BridgeHook's, with route() inline: a dict lookup needs no coroutine per message.
        route = self._routes.get(sent.channel)
        if route is not None:
            await self.sync(route, sent)

    def label_of(self, channel: immp.Channel) -> str | None:
        """The label of the bridge ``channel`` is in (real or virtual), if any."""
        route = self._routes.get(channel) or self._virtual_routes.get(channel)
        return route.label if route else None

    def channels_of(self, label: str) -> list[immp.Channel]:
        """The (real) channels in the bridge ``label``."""
        return list(self._bridges.get(label, ()))

    async def sync_virtual(self, sent: immp.SentMessage) -> None:
        """Sync what another hook sent, edited or deleted in the virtual plug's channel."""
        if self.open_state is not immp.OpenState.active:
            raise immp.PlugError(f"{self.plug.name}: the {self.name} hook is not running")
        route = self._virtual_routes.get(sent.channel)
        if route is None:
            raise immp.PlugError(f"{self.plug.name}: no bridge labelled {sent.channel.source!r}")
        await self.sync(route, sent)

    async def members(self, label: str) -> list[immp.User]:
        """Everyone in any channel of the bridge, each once (channels that cannot tell skipped)."""
        found: list[immp.User] = []
        for channel in self.channels_of(label):
            try:
                members = await channel.members()
            except Exception as exc:
                self.log.warning("No members for %r: %s", channel, exc)
                continue
            found.extend(user for user in members or () if user not in found)
        return found

    # -- commands ---------------------------------------------------------------------------

    @immp.command("sync-list", test=_bridged)
    async def sync_list(self, msg: immp.SentMessage) -> None:
        """List the channels in this bridge."""
        label = self.label_of(msg.channel)
        title = self.config["titles"].get(label, label)
        lines = [f"Channels in bridge {title}:"]
        for channel in self.channels_of(label):
            name = self.host.named_channel(channel) or channel.source
            try:
                where = await channel.title()
            except Exception:
                where = None
            where = f" ({where})" if where and where != name else ""
            lines.append(f"- {name}{where} on {channel.plug.name} ({channel.plug.network_name})")
        await msg.channel.send(immp.Message("\n".join(lines)))

    @immp.command("sync-members", test=_bridged)
    async def sync_members(self, msg: immp.SentMessage) -> None:
        """List the members of every channel in this bridge."""
        label = self.label_of(msg.channel)
        lines = [f"Members of bridge {self.config['titles'].get(label, label)}:"]
        for channel in self.channels_of(label):
            name = self.host.named_channel(channel) or channel.source
            try:
                members = await channel.members()
            except Exception:
                members = None
            if members is None:
                lines.append(f"- {name}: (unknown)")
            else:
                names = sorted({user.name or "?" for user in members}, key=str.casefold)
                lines.append(f"- {name}: {', '.join(names) or '(nobody)'}")
        await msg.channel.send(immp.Message("\n".join(lines)))

    @immp.command("sync-add", role=immp.CommandRole.admin)
    async def sync_add(self, msg: immp.SentMessage, label: str, channel: str) -> None:
        """Add a named channel to a bridge (a new label starts a new bridge)."""
        if channel not in self.host.channels:
            await msg.channel.send(immp.Message(f"No channel named {channel}."))
            return
        names = self.config["channels"].setdefault(label, [])
        if channel in names:
            await msg.channel.send(immp.Message(f"{channel} is already in bridge {label}."))
            return
        names.append(channel)
        self._rebuild()
        self.host.config_changed(self)
        await msg.channel.send(immp.Message(f"Added {channel} to bridge {label}."))

    @immp.command("sync-remove", role=immp.CommandRole.admin)
    async def sync_remove(self, msg: immp.SentMessage, label: str, channel: str) -> None:
        """Take a channel out of a bridge (a bridge left empty is removed)."""
        names = self.config["channels"].get(label)
        if not names or channel not in names:
            await msg.channel.send(immp.Message(f"{channel} is not in bridge {label}."))
            return
        names.remove(channel)
        if not names:
            del self.config["channels"][label]
        self._rebuild()
        self.host.config_changed(self)
        await msg.channel.send(immp.Message(f"Removed {channel} from bridge {label}."))
