"""
The schema of a config file's top-level sections. Each key is documented here once; the tables
in docs/config.md are generated from these ``doc=`` strings (``hatch run docs``).
"""

from __future__ import annotations

import inspect
from typing import Any

from .._hook import DEFAULT_TIMEOUT
from .._host import Host
from .._schema import (
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
)

#: The sections the loader knows; any other top-level key is kept as it is (and written back),
#: unless it is a near miss of one of these.
KNOWN_SECTIONS = ("path", "plugs", "channels", "groups", "hooks", "host", "logging", "store")


# The host's own defaults are the only copy: the schema shows and fills in the same values.
def _in_doubt(value: Any) -> str:
    if value not in ("drop", "resend"):
        raise ValueError("must be drop or resend")
    return value


_HOST = {p.name: p.default for p in inspect.signature(Host).parameters.values()}

PLUG_ENTRY = {
    Required("path", doc="which plug: a registered name (`demo`, `irc`), or a dotted Python path "
                         "`package.module.Class`"): str,
    Optional("config", {}, doc="the plug's own options, described in its README"):
        Nullable(dict),
    Optional("enabled", True, doc="`false` keeps the plug in the config without opening it"):
        bool,
}  # fmt: skip

CHANNEL_ENTRY = {
    Required("plug", doc="the plug the room is on"): Ref("plug"),
    Required("source", doc="the network's own identifier of the room: `#my-project` on IRC (a "
                           "number is turned into a string)"):
        Any_(str, int, describe="a string"),
}  # fmt: skip

_GROUP_PARTS = {
    Optional("channels", [], doc="exactly these channels"): [Ref("channel")],
    Optional("private", [], doc="every private channel (a conversation with one person) of "
                                "these plugs"): [Ref("plug")],
    Optional("shared", [], doc="every channel of these plugs that is not private"): [Ref("plug")],
    Optional("named", [], doc="every channel of these plugs that has a name in `channels`"):
        [Ref("plug")],
    Optional("anywhere", [], doc="every channel of these plugs"): [Ref("plug")],
}  # fmt: skip

GROUP_ENTRY = {
    **_GROUP_PARTS,
    Optional("exclude", None, doc="channels taken out again: a list of channel names, or a "
                                  "mapping with the keys above"):
        Nullable(Any_([Ref("channel")], _GROUP_PARTS, describe="a list of channels or a group")),
}  # fmt: skip

HOOK_ENTRY = {
    Required("path", doc="which hook: a registered name (`sync`, `forward`, `commands`) or a "
                         "dotted path"): str,
    Optional("config", {}, doc="the hook's own options, described in its README"):
        Nullable(dict),
    Optional("enabled", True, doc="`false` keeps the hook in the config without running it"):
        bool,
    Optional("priority", None, doc="the order in which hooks see each message, lowest first "
                                   "(below)"): Nullable(int),
    Optional("timeout", DEFAULT_TIMEOUT, doc="seconds one call of the hook on one message may "
                                             "take; `null` for no limit"):
        Nullable(Positive()),
}  # fmt: skip

HOST_SECTION = {
    Optional("echo-history", _HOST["echo_history"], doc=(
        "how many sent messages each plug remembers, so that the network's copy of a message "
        "IMMP sent is recognised as such (an \"echo\") and not treated as new")):
        Range(int, 0),
    Optional("open-timeout", _HOST["open_timeout"], doc=(
        "seconds a plug or hook may take to open (connect) before it is marked failed")):
        Positive(),
    Optional("close-timeout", _HOST["close_timeout"], doc=(
        "seconds a plug or hook may take to close politely before it is stopped anyway")):
        Range(Number, 0),
    Optional("journal", _HOST["journal"], doc=(
        "keep every received message and where it must go in the store's journal until the "
        "target networks confirmed it, so that a process that dies (kill -9, a reboot) delivers "
        "the rest at its next start, in order, and nothing twice where the network allows it "
        "(docs/journal.md)")):
        bool,
    Optional("journal-age", _HOST["journal_age"], doc=(
        "seconds a journaled message may wait: older ones are not delivered at start (a long "
        "downtime gives no old backlog) and are logged as expired; one that no hook routed "
        "(nothing bridges its channel) is let go once this old")):
        Positive(),
    Optional("journal-in-doubt", _HOST["journal_in_doubt"], doc=(
        "at start, what happens to a delivery written to a network without idempotent sends "
        "(IRC) and not acknowledged before the process died: `drop` (at most once: not sent "
        "again, logged with its text) or `resend` (at least once: sent again)")):
        Check(_in_doubt, "`drop` or `resend`"),
    Optional("hook-stuck-after", _HOST["hook_stuck_after"], doc=(
        "a hook whose inbox is full and that takes no message for this long is taken to be "
        "stuck: messages for it are dropped (counted and logged) until it catches up, so one "
        "hung hook cannot stall the others; a hook that is only slow is waited for and loses "
        "nothing")):
        Positive(),
}  # fmt: skip

TOP_SCHEMA = Schema(
    {
        Optional("path", [], doc="folders to add to Python's module search path"):
            Any_([str], str, describe="a list of folders"),
        Optional("plugs", {}): Nullable({str: PLUG_ENTRY}),
        Optional("channels", {}): Nullable({str: CHANNEL_ENTRY}),
        Optional("groups", {}): Nullable({str: GROUP_ENTRY}),
        Optional("hooks", {}): Nullable({str: HOOK_ENTRY}),
        Optional("host", {}): HOST_SECTION,
        Optional("logging", None): Nullable(dict),
        # The store's own keys are the store's to check; the loader only knows the section.
        Optional("store", None): Any,
    },
    extra=True,
)  # fmt: skip

#: Each table of docs/config.md: its name and the schema of one entry.
TABLES = {
    "plugs": PLUG_ENTRY,
    "channels": CHANNEL_ENTRY,
    "groups": GROUP_ENTRY,
    "hooks": HOOK_ENTRY,
    "host": HOST_SECTION,
}
