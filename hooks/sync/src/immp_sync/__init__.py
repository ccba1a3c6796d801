"""
Sync and forward hooks: bridge rooms across networks, or copy messages one way.

``path: sync`` (IMMP's ``immp.hook.sync.SyncHook``) joins channels into bridges: a message
posted in any channel of a bridge is copied to all the others. ``path: forward`` (IMMP's
``immp.hook.sync.ForwardHook``) copies one way.

Config: the keys of each hook's ``SCHEMA`` (``_sync.py``, ``_forward.py``, and
``COMMON_SCHEMA`` in ``_bridge.py``), each with its ``doc``; the README's tables are generated
from them (``hatch run docs``).

Commands (sync hook; run through the commands hook):
    ``sync-list``: the channels in this bridge. ``sync-members``: the members of every channel in
    this bridge. Admin only: ``sync-add LABEL CHANNEL`` and ``sync-remove LABEL CHANNEL`` change
    ``channels`` at once and through ``host.config_changed`` (written back under ``immp -w``).
"""

from ._bridge import BridgeHook, SyncedMessage
from ._copies import Copies, CopyMap, MemoryCopyMap, StoreCopyMap
from ._forward import ForwardHook
from ._plug import SyncPlug
from ._sync import SyncHook

__all__ = [
    "BridgeHook", "Copies", "CopyMap", "ForwardHook", "MemoryCopyMap", "StoreCopyMap", "SyncHook",
    "SyncPlug", "SyncedMessage",
]  # fmt: skip
