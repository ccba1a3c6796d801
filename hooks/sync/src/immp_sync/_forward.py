"""The forward hook: one-way copies from channels and groups to other channels."""

from __future__ import annotations

import immp

from ._bridge import COMMON_SCHEMA, BridgeHook, Route

SCHEMA = immp.Schema({
    immp.Optional("channels", {}, doc="source channel name -> list of target channel names"):
        {immp.Ref("channel"): [immp.Ref("channel")]},
    immp.Optional("groups", {}, doc="group name -> list of target channel names (messages from "
                                    "any channel of the group)"):
        {immp.Ref("group"): [immp.Ref("channel")]},
    immp.Optional("users", None, doc="only forward messages from users with these IDs; `null` "
                                     "for everyone"): immp.Nullable([str]),
    **COMMON_SCHEMA,
})  # fmt: skip

# Routes are worked out per source channel on first use (group membership is asynchronous);
# at most this many are cached (bounded, since groups can match any channel; oldest first out).
ROUTE_CACHE = 1024

_UNKNOWN = object()


class ForwardHook(BridgeHook):
    """
    Copies messages one way: from each channel in ``channels``, and each channel of a group in
    ``groups``, to the channels listed for it; ``users`` limits which authors are forwarded.
    """

    schema = SCHEMA

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority)
        self._routes: immp.BoundedCache[immp.Channel, Route | None] = immp.BoundedCache(ROUTE_CACHE)
        self._users = self._read_users()

    def _read_users(self) -> set[str] | None:
        users = self.config["users"]
        return None if users is None else set(users)

    async def open(self) -> None:
        # Cached routes point at targets that closing the hook closed.
        self._routes.clear()
        await super().open()

    async def on_config_change(self, source: object) -> None:
        if source is self:
            self._reset_options()
            self._users = self._read_users()
        self._routes.clear()
        if self.open_state is immp.OpenState.active:
            keep = set()
            for names in [*self.config["channels"].values(), *self.config["groups"].values()]:
                keep.update(c for c in map(self.host.channels.get, names) if c is not None)
            self._retire_targets(keep)

    def wants(self, sent: immp.SentMessage, source: immp.Message, primary: bool) -> bool:
        if not super().wants(sent, source, primary):
            return False
        # ``users``: checked here, before the message is queued for the hook at all.
        if self._users is None or sent.deleted:
            return True
        return sent.user is not None and sent.user.id in self._users

    async def route(self, channel: immp.Channel) -> Route | None:
        route = self._routes.get(channel, _UNKNOWN)
        if route is _UNKNOWN:
            route = await self._work_out(channel)
            self._routes[channel] = route
        return route

    async def _work_out(self, channel: immp.Channel) -> Route | None:
        channels = self.host.channels
        names: list[str] = []
        label = None
        for source, targets in self.config["channels"].items():
            if channels.get(source) == channel:
                names.extend(targets)
                label = source
        for group_name, targets in self.config["groups"].items():
            group = self.host.groups.get(group_name)
            if group is not None and await group.has_channel(channel):
                names.extend(targets)
        found: list[immp.Channel] = []
        for name in names:
            target = channels.get(name)
            if target is None:
                self.log.warning("No channel named %r to forward to", name)
            elif target != channel and target not in found:
                found.append(target)
        if not found:
            return None
        if label is not None:
            channel = channels[label]  # keep the configured object, not the message's copy
        label = label or self.host.named_channel(channel) or channel.source
        return Route(channel, label, tuple(self._target(c) for c in found))
