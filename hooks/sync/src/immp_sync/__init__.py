"""
Sync and forward hooks: bridge rooms across networks, or copy messages one way.

``path: sync`` (IMMP's ``immp.hook.sync.SyncHook``) joins channels into bridges: a message
posted in any channel of a bridge is copied to all the others. ``path: forward`` (IMMP's
``immp.hook.sync.ForwardHook``) copies one way.

Config of both:
    joins (bool, default true):
        Copy join and part messages.
    renames (bool, default true):
        Copy channel title changes.
    edits (bool, default true):
        Copy edits and deletions: an edit is applied to the copies where the target plug can
        edit (elsewhere it is sent as a new message marked edited), a deletion deletes the
        copies where the target plug can delete.
    reset-author (bool, default false):
        Replace the author of each copy with a plain user that has only the (rendered) name.
    name-format (str or null, default null):
        Jinja2 template for the author's name on copies; variables ``user``, ``title``,
        ``plug``, ``channel``, ``label`` (see :mod:`immp_sync._names`). Null keeps the name.
    strip-name-emoji (bool, default false):
        Remove emoji from author names on copies.
    plugs (mapping, default empty):
        Plug name -> overrides of ``joins``, ``renames``, ``reset-author``, ``name-format`` and
        ``strip-name-emoji`` for copies sent to channels of that plug.
    history (int, default 10000):
        How many synced messages are remembered, with their copies, for edits, deletions and
        replies. A message forgotten is treated as new.
    queue-size (int, default 1000):
        Copies waiting per target channel. A target whose queue stays full for a second is
        taken to be stuck: copies for it are then dropped (counted in the log) until it catches
        up, and the other targets carry on.
    send-timeout (float or null, default 30):
        Seconds before one send to a target is given up (logged with the target's name).

Config of the sync hook:
    channels (mapping, default empty):
        Bridge label -> list of channel names.
    plug (str or null, default null):
        Name of a virtual plug to register, with one channel per bridge label (source = the
        label): other hooks can listen to a whole bridge there, and send into it.
    titles (mapping, default empty):
        Bridge label -> title of that virtual channel (default: the label).
    notify-unreachable (bool, default true):
        While a network of a bridge is unreachable (its plug reports its link down, e.g. an IRC
        server restarting), tell the other channels of the bridge once ("network X is
        unreachable; messages to it are held"), and once when it is back.

Config of the forward hook:
    channels (mapping, default empty):
        Source channel name -> list of target channel names.
    groups (mapping, default empty):
        Group name -> list of target channel names: messages from any channel in the group.
    users (list of str or null, default null):
        Only forward messages from users with these IDs (null: everyone).

Commands (sync hook; run through the commands hook):
    ``sync-list``: the channels in this bridge. ``sync-members``: the members of every channel in
    this bridge. Admin only: ``sync-add LABEL CHANNEL`` and ``sync-remove LABEL CHANNEL`` change
    ``channels`` at once and through ``host.config_changed`` (written back under ``immp -w``).
"""

from ._bridge import BridgeHook, SyncedMessage
from ._copies import Copies, CopyMap, MemoryCopyMap
from ._forward import ForwardHook
from ._plug import SyncPlug
from ._sync import SyncHook

__all__ = [
    "BridgeHook", "Copies", "CopyMap", "ForwardHook", "MemoryCopyMap", "SyncHook", "SyncPlug",
    "SyncedMessage",
]  # fmt: skip
