"""
IMMP on trio: a modular processing platform for instant messages.

Everything a user or plugin author needs is importable from here::

    import immp

    class EchoHook(immp.Hook):
        async def on_receive(self, sent, source, primary):
            ...
"""

__version__ = "0.1.0"

from ._cache import BoundedCache
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
from ._errors import ConfigError, ConfigWarning, PlugError, SendRefused, describe_error
from ._hook import Hook, ResourceHook
from ._host import Host
from ._journal import Journal
from ._logs import JsonFormatter, Throttle
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
from ._schema import (
    Any_,
    Check,
    Nullable,
    Number,
    Optional,
    Positive,
    Range,
    Ref,
    Required,
    Schema,
    Warn,
)
from ._store import (
    JournalBatch,
    MemoryStore,
    MessageMap,
    State,
    Store,
    StoreError,
    channel_key,
    message_key,
)
from ._store_sqlite import SQLiteStore
from ._store_thread import ThreadedStore, WriteBatch
from ._worker import Worker, take
from .hookspecs import hookimpl

__all__ = [
    "Any_",
    "BoundCommand",
    "BoundedCache",
    "Channel",
    "Check",
    "CommandParser",
    "CommandRole",
    "CommandScope",
    "CommandSpec",
    "CommandUsageError",
    "ConfigError",
    "ConfigWarning",
    "File",
    "FileType",
    "Group",
    "Hook",
    "Host",
    "Journal",
    "JournalBatch",
    "JsonFormatter",
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
    "Range",
    "Receipt",
    "Ref",
    "Required",
    "ResourceHook",
    "RichText",
    "SQLiteStore",
    "Schema",
    "Segment",
    "SendRefused",
    "SentMessage",
    "State",
    "Store",
    "StoreError",
    "ThreadedStore",
    "Throttle",
    "User",
    "Warn",
    "Worker",
    "WriteBatch",
    "build_host",
    "channel_key",
    "command",
    "commands_of",
    "describe_error",
    "dump_config",
    "hookimpl",
    "load_file",
    "message_key",
    "take",
    "write_config",
]  # fmt: skip


def _fix_module_names() -> None:
    # Public names are documented, printed and pickled as immp.Host, not immp._host.Host (as
    # trio does for its re-exports); the private modules stay an implementation detail.
    for name in __all__:
        obj = globals()[name]
        if (getattr(obj, "__module__", None) or "").startswith("immp._"):
            obj.__module__ = __name__


_fix_module_names()
