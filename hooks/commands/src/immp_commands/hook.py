"""
Commands hook: bot commands with help, scopes and permissions, and host settings managed from
chat. Registered as ``path: commands`` (and as IMMP's ``immp.hook.command.CommandHook``).

Any hook declares commands with ``@immp.command(...)`` (see :mod:`immp._commands`); this hook
finds them with :func:`immp.commands_of` on every open hook, and dispatches.

Config: the keys of ``SCHEMA`` below, each with its ``doc``; the README's table is generated
from it (``hatch run docs``).

Commands (``!`` stands for the prefix):
    ``!help [name]``
        List the commands you can run here (global, private, this channel), or show the usage
        and help text of one.
    Admin only (declared in :mod:`immp_commands.manage`):
    ``!plugs``, ``!hooks``, ``!channels``
        List plugs and hooks with their state, or the named channels.
    ``!enable NAME``, ``!disable NAME``, ``!restart NAME``
        Open, close (and mark disabled), or close and reopen a plug or hook.
    ``!channel-add NAME PLUG SOURCE``, ``!channel-remove NAME``
        Name a channel, or forget a named one (refused while a group or hook uses it).
    ``!reload``
        Read the config file again and apply what changed, as SIGHUP does (answers with what
        changed, or with the one-line error; a file with an error changes nothing).

Every change through these commands takes effect at once and calls ``host.config_changed``,
so that under ``immp -w`` the config file already holds it when the command answers.

Which messages run commands: primary messages with text from people (a user that is not the
network's system user nor one made up by a bridge), never echoes of what IMMP sent, never
edits. Messages that reach the host through a virtual plug (the sync hook's ``plug``, a whole
bridge seen as one channel) only run ``sync_aware`` commands; while such a plug is open,
``sync_aware`` commands run only from it, so that a command runs once per line typed.
"""

from __future__ import annotations

import logging

import immp

from .manage import HostCommands

log = logging.getLogger(__name__)

# A command name longer than this is not a command; the name is looked for in at most this many
# characters after the prefix, so that a huge line costs no more than finding its prefix.
MAX_NAME = 64


def _prefixes(value: str | list[str]) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise TypeError("not a string or a list of strings")
    if not items:
        raise ValueError("at least one prefix is needed")
    for item in items:
        if not item.strip():
            raise ValueError("a prefix cannot be empty")
    return items


SCHEMA = immp.Schema({
    immp.Optional("prefix", ["!"], doc="what commands start with, matched case-insensitively "
                                       "(`[\"!\", \"immp \"]`); one string is a list of one"):
        immp.Check(_prefixes, "a prefix or a list of prefixes"),
    immp.Optional("mapping", {}, doc="which commands are offered where, by label; with no "
                                     "mapping, every command of every open hook is offered "
                                     "everywhere (`help` always is). A command is offered in a "
                                     "channel if an entry whose groups hold the channel offers "
                                     "it"): {str: {
        immp.Optional("groups", [], doc="where this entry applies (empty: every channel)"):
            [immp.Ref("group")],
        immp.Optional("hooks", [], doc="hooks all of whose commands are offered"):
            [immp.Ref("hook")],
        immp.Optional("sets", [], doc="sets (below) of commands offered"): [str],
    }},
    immp.Optional("sets", {}, doc="set name -> hook name -> list of command names, for "
                                  "`mapping.NAME.sets`"): {str: {immp.Ref("hook"): [str]}},
    immp.Optional("return-errors", False, doc="answer a failing command with its error in one "
                                              "line (otherwise it is only logged)"): bool,
    immp.Optional("admins", {}, doc="plug name -> list of user IDs allowed to run admin-only "
                                    "commands. IDs, not names: use an ID that another person "
                                    "cannot take (for IRC, see the IRC plug's README)"):
        {immp.Ref("plug"): [immp.Any_(str, int, describe="a user ID")]},
    immp.Optional("max-length", 4000, doc="longest command line accepted, in characters; longer "
                                          "ones are refused unparsed"): immp.Positive(int),
})  # fmt: skip

_GROUP_TITLES = (
    (immp.CommandScope.anywhere, "Global commands"),
    (immp.CommandScope.private, "Private commands"),
    (immp.CommandScope.shared, "Commands in this channel"),
)


class CommandHook(HostCommands, immp.Hook):
    """Finds the commands every open hook declares and runs them from chat. See the module doc."""

    schema = SCHEMA

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority=priority)
        self.config["prefix"] = _prefixes(self.config["prefix"])
        # Worked out once: lower-cased prefixes, longest first (so "!!" wins over "!"), and how
        # much of a message's start can hold a prefix and a command name.
        self._prefixes = tuple(sorted({p.lower() for p in self.config["prefix"]}, key=len,
                                      reverse=True))  # fmt: skip
        self._head = MAX_NAME + len(self._prefixes[0]) + 2
        for label, entry in self.config["mapping"].items():
            for index, set_name in enumerate(entry["sets"]):
                if set_name not in self.config["sets"]:
                    raise immp.ConfigError(
                        f"no set named {set_name!r} (under sets)", f"mapping.{label}.sets[{index}]"
                    )

    def on_load(self) -> None:
        self.remember_config()

    async def on_ready(self) -> None:
        # What admins changed from chat before a restart (see immp_commands.manage).
        await self.reapply()

    async def on_config_change(self, source: object) -> None:
        if source is self.host:  # the file was reloaded (SIGHUP), or a named channel changed
            await self.follow_config()

    # -- which messages are commands ------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The prefix shown in answers (the first configured)."""
        return self.config["prefix"][0]

    def split(self, text: immp.RichText) -> tuple[str, int] | None:
        """
        If ``text`` starts with a prefix and a plausible command name: the lower-case name and
        the position where its arguments start. Only looks at the start of the text.
        """
        head = str(text[: self._head])
        lowered = head.lower()
        pos = self._prefix_length(lowered)
        if pos is None:
            return None
        while pos < len(head) and head[pos] in " \t":
            pos += 1
        end = pos
        while end < len(head) and not head[end].isspace():
            end += 1
        if end == pos or end - pos > MAX_NAME or (end == len(head) and len(head) < len(text)):
            return None  # no name, or one too long to be a command
        return lowered[pos:end], end

    async def from_person(self, sent: immp.SentMessage) -> bool:
        """Whether a message was written by a person on the network it arrived from."""
        user = sent.user
        if user is None or user.id is None or user.suggested:
            return False
        plug = sent.channel.plug
        if user.plug is not None and user.plug is not plug and not plug.virtual:
            return False  # someone else's message relayed into this channel
        return not await user.is_system()

    def is_admin(self, sent: immp.SentMessage) -> bool:
        """Whether the author is listed under ``admins`` for their plug, by user ID."""
        user = sent.user
        if user is None or user.id is None or user.suggested:
            return False
        plug = user.plug or sent.channel.plug
        allowed = self.config["admins"].get(plug.name) or ()
        return str(user.id) in {str(ident) for ident in allowed}

    # -- which commands apply -------------------------------------------------------------------

    def _open_hooks(self) -> list[immp.Hook]:
        return [h for h in self.host.hooks.values() if h.open_state is immp.OpenState.active]

    async def _mapped(self, channel: immp.Channel) -> list[immp.BoundCommand]:
        """Commands the mapping offers in this channel, in config order (scopes not checked)."""
        hooks = self._open_hooks()
        if not self.config["mapping"]:
            return [cmd for hook in hooks for cmd in immp.commands_of(hook).values()]
        by_name = {hook.name: hook for hook in hooks}
        found = [immp.commands_of(self)["help"]]
        for entry in self.config["mapping"].values():
            if entry["groups"] and not await self._in_groups(channel, entry["groups"]):
                continue
            for hook_name in entry["hooks"]:
                if hook_name in by_name:
                    found.extend(immp.commands_of(by_name[hook_name]).values())
            for set_name in entry["sets"]:
                for hook_name, names in self.config["sets"][set_name].items():
                    if hook_name not in by_name:
                        continue
                    declared = immp.commands_of(by_name[hook_name])
                    found.extend(declared[n] for n in names if n in declared)
        return found

    async def _in_groups(self, channel: immp.Channel, names: list[str]) -> bool:
        for name in names:
            group = self.host.groups.get(name)
            if group is not None and await group.has_channel(channel):
                return True
        return False

    async def available(self, sent: immp.SentMessage) -> dict[str, immp.BoundCommand]:
        """
        The commands that can run from this message's channel, by lower-case name: offered by
        the mapping, in scope, passing their ``test``. Roles are not checked here.
        """
        channel = sent.channel
        private = await channel.is_private()
        bridged = channel.plug.virtual
        bridges_open = any(p.virtual and p.open_state is immp.OpenState.active
                           for p in self.host.plugs.values())  # fmt: skip
        out: dict[str, immp.BoundCommand] = {}
        for cmd in await self._mapped(channel):
            spec = cmd.spec
            key = spec.name.lower()
            if key in out:
                if out[key] is not cmd and out[key].hook is not cmd.hook:
                    log.debug(
                        "Command %s of %s hidden by %s's", key, cmd.hook.name, out[key].hook.name
                    )
                continue
            if bridged and not spec.sync_aware:
                continue
            if not bridged and spec.sync_aware and bridges_open:
                continue
            if spec.scope is immp.CommandScope.private and private is not True:
                continue
            if spec.scope is immp.CommandScope.shared and private is not False:
                continue
            if not await cmd.applicable(sent):
                continue
            out[key] = cmd
        return out

    # -- running a command ----------------------------------------------------------------------

    def _prefix_length(self, lowered: str) -> int | None:
        """The length of the (longest) prefix ``lowered`` starts with, if any."""
        return next((len(p) for p in self._prefixes if lowered.startswith(p)), None)

    def wants(self, sent, source, primary):
        # Only new text from people that starts with a prefix: never echoes of what IMMP sent,
        # edits, deletions, or the ordinary chat that is most of what a room says.
        return (
            primary
            and sent is source
            and not (sent.edited or sent.deleted)
            and bool(sent.text)
            and str(sent.text[: self._head]).lower().startswith(self._prefixes)
        )

    async def on_receive(self, sent, source, primary):
        found = self.split(sent.text)
        if found is None or not await self.from_person(sent):
            return
        name, start = found
        cmd = (await self.available(sent)).get(name)
        if cmd is None:
            return  # unknown here: stay quiet, it may be meant for another bot
        shown = f"{self.prefix}{cmd.name}"
        if cmd.spec.role is immp.CommandRole.admin and not self.is_admin(sent):
            await self.reply(sent, f"{shown} is for admins only.")
            return
        if len(sent.text) > self.config["max-length"]:
            await self.reply(
                sent, f"{shown}: command too long (at most {self.config['max-length']} characters)."
            )
            return
        try:
            args = cmd.spec.parse(sent.text[start:])
        except immp.CommandUsageError as exc:
            await self.reply(sent, f"{exc.reason}; usage: {self.prefix}{cmd.spec.usage}")
            return
        self.log.debug("Running %s from %s for %r", cmd.name, cmd.hook.name, sent.user)
        try:
            await cmd(sent, *args)
        except Exception as exc:
            self.log.error(
                "Command %s (hook %s) failed: %s",
                cmd.name,
                cmd.hook.name,
                immp.describe_error(exc),
                exc_info=exc,
            )
            if self.config["return-errors"]:
                await self.reply(sent, f"{shown} failed: {immp.describe_error(exc, 300)}")

    async def reply(self, sent: immp.SentMessage, text: str) -> None:
        """Answer in the channel the command came from; a failure to send is only logged."""
        try:
            await sent.channel.send(immp.Message(text))
        except Exception as exc:
            self.log.warning("Could not answer in %r: %s", sent.channel, immp.describe_error(exc))

    # -- help -----------------------------------------------------------------------------------

    @immp.command("help")
    async def help(self, msg, name=None):
        """List the commands you can run here, or show how to use one."""
        commands = await self.available(msg)
        if not self.is_admin(msg):
            commands = {
                key: cmd
                for key, cmd in commands.items()
                if cmd.spec.role is not immp.CommandRole.admin
            }
        if name is not None:
            key = name.lower()
            key = key[self._prefix_length(key) or 0 :].strip()
            cmd = commands.get(key)
            if cmd is None:
                await self.reply(msg, f"No command {name!r} here.")
                return
            text = f"{self.prefix}{cmd.spec.usage}"
            if cmd.spec.doc:
                text += "\n" + cmd.spec.doc
            await self.reply(msg, text)
            return
        lines = []
        for scope, title in _GROUP_TITLES:
            group = sorted(
                (c for c in commands.values() if c.spec.scope is scope), key=lambda c: c.name
            )
            if not group:
                continue
            lines.append(f"{title}:")
            for cmd in group:
                summary = cmd.spec.doc.splitlines()[0] if cmd.spec.doc else ""
                usage = f"{self.prefix}{cmd.spec.usage}"
                lines.append(f"  {usage} - {summary}" if summary else f"  {usage}")
        lines.append(f"Send {self.prefix}help NAME for details of one.")
        await self.reply(msg, "\n".join(lines))
