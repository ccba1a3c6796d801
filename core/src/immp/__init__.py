"""
IMMP on trio: a modular processing platform for instant messages.

Everything a user or plugin author needs is importable from here::

    import immp

    class EchoHook(immp.Hook):
        async def on_receive(self, sent, source, primary):
            ...
"""

from ._channel import Channel, Group
from ._commands import (
    BoundCommand,
    CommandParser,
    CommandRole,
    CommandScope,
    CommandSpec,
    CommandUsageError,
    command,
    commands_of,
)
from ._config import build_host, dump_config, load_file, write_config
from ._errors import ConfigError, HookError, PlugError
from ._hook import Hook, ResourceHook
from ._host import Host
from ._message import (
    File,
    FileType,
    Location,
    Message,
    Receipt,
    RichText,
    Segment,
    SentMessage,
    User,
)
from ._openable import Openable, OpenState
from ._plug import Plug
from ._schema import Any_, Check, Nullable, Number, Optional, Positive, Ref, Schema
from ._store import MemoryStore, MessageMap, State, Store, StoreError, channel_key
from ._worker import Worker, take
from .hookspecs import hookimpl

__all__ = [
    "Any_",
    "BoundCommand",
    "Channel",
    "Check",
    "CommandParser",
    "CommandRole",
    "CommandScope",
    "CommandSpec",
    "CommandUsageError",
    "ConfigError",
    "File",
    "FileType",
    "Group",
    "Hook",
    "HookError",
    "Host",
    "Location",
    "MemoryStore",
    "Message",
    "MessageMap",
    "Nullable",
    "Number",
    "OpenState",
    "Openable",
    "Optional",
    "Plug",
    "PlugError",
    "Positive",
    "Receipt",
    "Ref",
    "ResourceHook",
    "RichText",
    "Schema",
    "Segment",
    "SentMessage",
    "State",
    "Store",
    "StoreError",
    "User",
    "Worker",
    "build_host",
    "channel_key",
    "command",
    "commands_of",
    "dump_config",
    "hookimpl",
    "load_file",
    "take",
    "write_config",
]  # fmt: skip
