"""
Admin commands that look at and change the running host: plugs, hooks and named channels.

Each change takes effect at once and then calls ``host.config_changed(...)``, whose listeners run
synchronously (under ``immp -w`` the runner writes the config file there), so the file already
holds the change when the command answers. A later start from that file gives the same state:
a disabled plug or hook is written ``enabled: false``, an added channel under ``channels``.

Without ``-w`` the file keeps what it said, so the hook also keeps each change in its state in
the store (``switched``: name -> [enabled in the config, enabled now]; ``channels``: name ->
[plug, source] added, or null removed) and applies it again once everything is open after a
restart, as long as the config still says what it said when the change was made: an item or
channel the config file changed since (edited by hand, or written by ``-w``) follows the file,
and its record is dropped. A reload (SIGHUP, ``reload``) is the file read again: what it says
then is what later changes are kept against, and the records of what it changed are dropped
(:meth:`HostCommands.follow_config`).
"""

from __future__ import annotations

from types import SimpleNamespace

import immp

_ADMIN = immp.CommandRole.admin


class HostCommands:
    """Mixed into :class:`~immp_commands.hook.CommandHook`: the host management commands."""

    host: immp.Host
    name: str

    state: immp.State

    async def reply(self, sent: immp.SentMessage, text: str) -> None:
        raise NotImplementedError

    # -- changes kept across restarts ----------------------------------------------------------

    def remember_config(self) -> None:
        """Note what the config says before anything changes it (call from on_load)."""
        items = {**self.host.plugs, **self.host.hooks}
        self._configured = {
            "items": {name: item.enabled for name, item in items.items()},
            "channels": {n: [c.plug.name, c.source] for n, c in self.host.channels.items()},
        }
        # The objects: a reload replaces what it adds or changes (see follow_config).
        self._items = items

    async def follow_config(self) -> None:
        """
        The config file was read again (a reload): what it says now is what later changes are
        kept against. A reload makes a new object of each plug and hook it adds or changes:
        those follow the file, and their records are dropped, as a restart would; the others
        keep what commands changed in them, and their records.
        """
        if not hasattr(self, "_configured"):
            self.remember_config()
            return
        switched = await self.state.get("switched", {})
        configured = self._configured["items"]
        known = self._items
        self._items = items = {**self.host.plugs, **self.host.hooks}
        kept = {}
        for name, item in items.items():
            if known.get(name) is item and name in configured:
                if name in switched:
                    kept[name] = switched[name]
            else:
                configured[name] = item.enabled  # as the file says
        for name in [n for n in configured if n not in items]:
            del configured[name]
        if kept != switched:
            await self.state.set("switched", kept)

    async def _switched(self, item, enabled: bool) -> None:
        switched = await self.state.get("switched", {})
        configured = getattr(self, "_configured", {}).get("items", {}).get(item.name, True)
        was = switched.get(item.name, [configured])[0]
        switched[item.name] = [was, enabled]
        await self.state.set("switched", switched)

    async def _channel_changed(self, name: str, where: list | None) -> None:
        channels = await self.state.get("channels", {})
        channels[name] = where
        await self.state.set("channels", channels)

    async def reapply(self) -> None:
        """Apply the changes kept in the state that the config has not overridden since."""
        configured = getattr(self, "_configured", {"items": {}, "channels": {}})
        switched = await self.state.get("switched", {})
        for name, (was, enabled) in list(switched.items()):
            item = self._item(name)
            if item is None or configured["items"].get(name) != was:
                del switched[name]  # gone, or the config changed it since: the config wins
            elif was != enabled:
                # The file says otherwise (the change was not written to it: no -w, or held back
                # over an edit): said, so that what runs is not a mystery.
                self.log.warning("%s %s %s, as a command left it (the config file says %s); "
                                 "a command or an edit of the file changes it", _kind(item),
                                 name, "enabled" if enabled else "disabled",
                                 "enabled: false" if not was else "it is enabled")  # fmt: skip
                if enabled:
                    await self.host.start(name)
                else:
                    await self.host.stop(name, disable=True)
        await self.state.set("switched", switched)
        channels = await self.state.get("channels", {})
        for name, where in list(channels.items()):
            known = configured["channels"].get(name)
            if where is None and known is not None and name in self.host.channels:
                if self._channel_user(name) is None:
                    await self.host.remove(name)
            elif where is not None and known is None and self.host.section_of(name) is None:
                plug = self.host.plugs.get(where[0])
                if plug is not None:
                    self.host.add_channel(name, immp.Channel(plug, where[1]))
            else:
                del channels[name]
        await self.state.set("channels", channels)

    # -- looking -------------------------------------------------------------------------------

    @immp.command("plugs", role=_ADMIN)
    async def list_plugs(self, msg):
        """List plugs with their state."""
        await self.reply(msg, _listing("Plugs", self.host.plugs.values()))

    @immp.command("hooks", role=_ADMIN)
    async def list_hooks(self, msg):
        """List hooks with their state."""
        await self.reply(msg, _listing("Hooks", self.host.hooks.values()))

    @immp.command("channels", role=_ADMIN)
    async def list_channels(self, msg):
        """List the named channels."""
        if not self.host.channels:
            await self.reply(msg, "No named channels.")
            return
        lines = [f"  {name}: {ch.plug.name} {ch.source}" for name, ch in self.host.channels.items()]
        await self.reply(msg, "\n".join(["Channels:", *lines]))

    # -- plugs and hooks -----------------------------------------------------------------------

    def _item(self, name: str) -> immp.Plug | immp.Hook | None:
        item = self.host.plugs.get(name) or self.host.hooks.get(name)
        if item is None or (isinstance(item, immp.Plug) and item.virtual):
            return None  # virtual plugs belong to the hook that made them
        return item

    async def _check_item(self, msg, name: str, verb: str) -> immp.Plug | immp.Hook | None:
        item = self._item(name)
        if item is None:
            await self.reply(msg, f"No plug or hook named {name!r}.")
        elif item is self:
            await self.reply(msg, f"The commands hook cannot {verb} itself from chat.")
            item = None
        return item

    @immp.command("enable", role=_ADMIN)
    async def enable(self, msg, name):
        """Enable and open a plug or hook."""
        item = await self._check_item(msg, name, "enable")
        if item is None:
            return
        if item.open_state is immp.OpenState.active:
            await self.reply(msg, f"{_kind(item)} {name} is already running.")
            return
        opened = await self.host.start(name)
        self.host.config_changed(item)
        await self._switched(item, True)
        if opened:
            await self.reply(
                msg, f"Enabled {_kind(item)} {name}: {item.open_state.value}.{self._unsaved()}"
            )
        else:
            await self.reply(
                msg,
                f"Enabled {_kind(item)} {name}, but it did not open: "
                f"{item.open_state.value} (see the log).{self._unsaved()}",
            )

    @immp.command("disable", role=_ADMIN)
    async def disable(self, msg, name):
        """Close a plug or hook and keep it disabled."""
        item = await self._check_item(msg, name, "disable")
        if item is None:
            return
        await self.host.stop(name, disable=True)
        self.host.config_changed(item)
        await self._switched(item, False)
        await self.reply(msg, f"Disabled {_kind(item)} {name}.{self._unsaved()}")

    @immp.command("restart", role=_ADMIN)
    async def restart(self, msg, name):
        """Close and reopen a plug or hook."""
        item = await self._check_item(msg, name, "restart")
        if item is None:
            return
        if item.open_state is immp.OpenState.disabled:
            await self.reply(msg, f"{_kind(item)} {name} is disabled: enable it instead.")
            return
        opened = await self.host.restart(name)
        result = "running" if opened else f"{item.open_state.value} (see the log)"
        await self.reply(msg, f"Restarted {_kind(item)} {name}: {result}.")

    @immp.command("reload", role=_ADMIN)
    async def reload(self, msg):
        """Read the config file again and apply what changed (what SIGHUP does)."""
        # A reload that changes this hook restarts it, which ends this task (and waits for it
        # to end): the reload and its answer run in a task of the host's, not waited for here.
        self.host.start_soon(self._reload_and_answer, msg)

    async def _reload_and_answer(self, msg) -> None:
        try:
            summary = await self.host.reload()
        except immp.ConfigError as exc:
            await self.reply(msg, f"Reload failed, nothing changed: {exc}")  # as logged
            return
        except RuntimeError as exc:
            await self.reply(msg, f"Cannot reload: {exc}.")
            return
        if self.host.hooks.get(self.name) is self:  # (else its successor follows the file)
            await self.follow_config()  # (on_config_change does it too, in the background)
        await self.reply(msg, f"Reloaded: {summary}.")

    # -- named channels ------------------------------------------------------------------------

    @immp.command("channel-add", role=_ADMIN)
    async def channel_add(self, msg, name, plug, source):
        """Name a channel: the plug and the network's source for the room."""
        taken = self.host.section_of(name)
        if taken:
            await self.reply(msg, f"The name {name!r} is already used by a {taken[:-1]}.")
            return
        target = self.host.plugs.get(plug)
        if target is None or target.virtual:
            await self.reply(msg, f"No plug named {plug!r}.")
            return
        if target.source_schema is not None:  # as the config file's channels are checked
            try:
                immp.Schema(target.source_schema).validate(
                    source, f"channels.{name}.source", warn=lambda w: self.log.warning("%s", w)
                )
            except immp.ConfigError as exc:
                await self.reply(msg, f"Not added: {exc}.")
                return
        self.host.add_channel(name, immp.Channel(target, source))
        self.host.config_changed(self.host)
        await self._channel_changed(name, [plug, source])
        await self.reply(msg, f"Added channel {name}: {plug} {source}.{self._unsaved()}")

    @immp.command("channel-remove", role=_ADMIN)
    async def channel_remove(self, msg, name):
        """Forget a named channel (refused while a group or hook uses it)."""
        if name not in self.host.channels:
            await self.reply(msg, f"No channel named {name!r}.")
            return
        user = self._channel_user(name)
        if user:
            await self.reply(msg, f"Channel {name} is still used by {user}.")
            return
        await self.host.remove(name)
        self.host.config_changed(self.host)
        await self._channel_changed(name, None)
        await self.reply(msg, f"Removed channel {name}.{self._unsaved()}")

    def _unsaved(self) -> str:
        """What an answer adds when ``immp -w`` could not write the change to the file."""
        note = self.host.config_unsaved
        return f" Not written to the config file: {note}." if note else ""

    def _channel_user(self, name: str) -> str | None:
        """The config key that refers to channel ``name``, if any (from the config schemas)."""
        host = self.host
        others = {n: c for n, c in host.channels.items() if n != name}
        refs = {"plug": set(host.plugs), "channel": set(others), "group": set(host.groups),
                "hook": set(host.hooks)}  # fmt: skip
        without = SimpleNamespace(channels=others, plugs=host.plugs)
        try:
            for group in host.groups.values():
                group.check_references(without)
        except immp.ConfigError as exc:
            return exc.path or str(exc)
        for section, items in (("plugs", host.plugs), ("hooks", host.hooks)):
            for item_name, item in items.items():
                where = f"{section}.{item_name}.config"
                try:
                    type(item).validate_config(item.config, where, refs)
                except immp.ConfigError as exc:
                    return exc.path or where
                except Exception:
                    continue  # a live config the schema cannot re-read; not a reference problem
        return None


def _kind(item: immp.Plug | immp.Hook) -> str:
    return "plug" if isinstance(item, immp.Plug) else "hook"


def _listing(title: str, items) -> str:
    lines = [f"{title}:"]
    for item in items:
        if getattr(item, "virtual", False):
            continue
        path = item.path or type(item).__name__
        lines.append(f"  {item.name} ({path}): {item.open_state.value}")
    if len(lines) == 1:
        lines.append("  (none)")
    return "\n".join(lines)
