"""
The sync hook's virtual plug: one channel per bridge label, so that other hooks can listen to a
whole bridge, and send into it, as if it were one channel.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import immp

if TYPE_CHECKING:
    from ._sync import SyncHook


class SyncPlug(immp.Plug):
    """
    A plug with no network of its own. Every message synced in a bridge is received here too,
    in the channel whose ``source`` is the bridge label; what other hooks send, edit or delete
    here is synced to every channel in that bridge.
    """

    network_name = "Sync"
    virtual = True
    can_edit = True
    can_delete = True

    def __init__(self, name: str, hook: SyncHook):
        super().__init__(name, {}, hook.host)
        self.hook = hook
        self._ids = itertools.count(1)

    @property
    def network_id(self) -> str:
        return f"sync:{self.hook.name}"

    # -- what other hooks send into the bridge ----------------------------------------------

    async def put(self, channel: immp.Channel, msg: immp.Message) -> list[immp.Receipt]:
        sent = immp.SentMessage.copy_of(msg, str(next(self._ids)), channel)
        await self.hook.sync_virtual(sent)
        return [sent.receipt]

    async def edit(self, receipt: immp.Receipt, msg: immp.Message) -> immp.Receipt:
        sent = immp.SentMessage.copy_of(
            msg, receipt.id, receipt.channel, revision=receipt.revision + 1, edited=True
        )
        await self.hook.sync_virtual(sent)
        return sent.receipt

    async def delete(self, receipt: immp.Receipt) -> None:
        await self.hook.sync_virtual(immp.SentMessage(receipt.id, receipt.channel, deleted=True))

    # -- what the bridge shows here ---------------------------------------------------------

    async def announce(
        self, channel: immp.Channel, msg: immp.Message, id: str | None = None
    ) -> list[immp.Receipt]:
        """Show a copy here, as a message received from the "network" (an edit if ``id``)."""
        edited = msg.edited or id is not None
        if id is None:
            id = str(next(self._ids))
        sent = immp.SentMessage.copy_of(msg, id, channel, edited=edited)
        await self.queue(sent)
        return [sent.receipt]

    async def announce_delete(self, channel: immp.Channel, id: str) -> None:
        await self.queue(immp.SentMessage(id, channel, deleted=True))

    # -- channels ---------------------------------------------------------------------------

    def channel(self, label: str) -> immp.Channel:
        """The channel standing for the bridge ``label``."""
        return immp.Channel(self, label)

    async def public_channels(self) -> list[immp.Channel]:
        return [self.channel(label) for label in self.hook.config["channels"]]

    async def channel_is_private(self, channel: immp.Channel) -> bool:
        return False

    async def channel_title(self, channel: immp.Channel) -> str | None:
        return self.hook.config["titles"].get(channel.source, channel.source)

    async def channel_members(self, channel: immp.Channel) -> list[immp.User] | None:
        return await self.hook.members(channel.source)
