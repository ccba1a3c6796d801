"""Channels (one room on one plug) and groups (sets of channels)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._host import Host
    from ._message import Message, Receipt, User
    from ._plug import Plug


class Channel(tuple):
    """
    A room on a plug's network, identified by the plug and the network's ``source`` string.
    Two ``Channel`` objects for the same plug and source are equal, named or not.

    A channel is a ``(plug, source)`` tuple underneath: channels key every history and copy map
    on the hot path, and a tuple is hashed and compared in C (methods of our own for either
    were called some twenty times per bridged message). Read it by ``plug`` and ``source``;
    it also equals the plain tuple ``(plug, source)``.
    """

    __slots__ = ()

    def __new__(cls, plug: Plug, source: str) -> Channel:
        return tuple.__new__(cls, (plug, str(source)))

    #: The plug whose network the room is on.
    plug: Plug = property(itemgetter(0))  # type: ignore[assignment]
    #: The network's own ID of the room.
    source: str = property(itemgetter(1))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Channel {self.plug.name}:{self.source}>"

    async def send(self, msg: Message) -> list[Receipt]:
        """
        Send a message here: :meth:`Host.send <immp.Host.send>` runs the ``before_send`` hooks,
        then the plug's :meth:`~immp.Plug.put`. Returns the receipts (empty if a hook dropped
        it); raises what ``put`` raises.
        """
        return await self.plug.host.send(self, msg)

    async def is_private(self) -> bool | None:
        return await self.plug.channel_is_private(self)

    async def title(self) -> str | None:
        return await self.plug.channel_title(self)

    async def link(self) -> str | None:
        return await self.plug.channel_link(self)

    async def members(self) -> list[User] | None:
        return await self.plug.channel_members(self)

    async def admins(self) -> list[User] | None:
        return await self.plug.channel_admins(self)

    async def rename(self, title: str) -> None:
        await self.plug.channel_rename(self, title)


_GROUP_PLUG_KEYS = ("private", "shared", "named", "anywhere")


class Group:
    """
    A set of channels, for hooks to scope what they do. Config keys:

    ``channels`` (list of channel names), ``private``/``shared``/``named``/``anywhere`` (lists of
    plug names: their private, non-private, named-in-config, or all channels), and ``exclude``
    (the same keys again, or a plain list of channel names, taken away from the rest).
    """

    def __init__(self, name: str, config: dict[str, Any], host: Host):
        self.name = name
        self.host = host
        self.config = config

    @staticmethod
    def _parts(spec: dict[str, Any] | Sequence[str] | None) -> dict[str, list[str]]:
        if spec is None:
            return {}
        if isinstance(spec, (list, tuple)):
            return {"channels": list(spec)}
        return {key: list(spec.get(key) or []) for key in ("channels", *_GROUP_PLUG_KEYS)}

    async def _matches(self, spec: dict[str, list[str]], channel: Channel) -> bool:
        host = self.host
        for name in spec.get("channels", ()):
            if host.channels.get(name) == channel:
                return True
        plug_name = channel.plug.name
        if plug_name in spec.get("anywhere", ()):
            return True
        if plug_name in spec.get("named", ()) and channel in host.channels.values():
            return True
        want_private = plug_name in spec.get("private", ())
        want_shared = plug_name in spec.get("shared", ())
        if want_private or want_shared:
            private = await channel.is_private()
            if (private and want_private) or (private is False and want_shared):
                return True
        return False

    async def has_channel(self, channel: Channel) -> bool:
        """Whether the channel belongs to this group (and is not excluded)."""
        if not await self._matches(self._parts(self.config), channel):
            return False
        return not await self._matches(self._parts(self.config.get("exclude")), channel)

    def has_plug(self, plug: Plug, *categories: str) -> bool:
        """Whether the group names this plug in any of ``categories`` (default: all four)."""
        spec = self._parts(self.config)
        return any(plug.name in spec.get(cat, ()) for cat in categories or _GROUP_PLUG_KEYS)

    def check_references(self, host: Host) -> None:
        """Raise :class:`ConfigError` for any channel or plug name the host does not know."""
        for section, spec in (("", self.config), ("exclude.", self.config.get("exclude"))):
            for key, names in self._parts(spec).items():
                known = host.channels if key == "channels" else host.plugs
                for index, name in enumerate(names):
                    if name not in known:
                        kind = "channel" if key == "channels" else "plug"
                        raise ConfigError(
                            f"no {kind} named {name!r}",
                            f"groups.{self.name}.{section}{key}[{index}]",
                        )

    def __repr__(self) -> str:
        return f"<Group {self.name}>"
