"""
Reloading a running host from its config file (``SIGHUP``, the ``reload`` command).

:func:`plan_reload` validates the new file completely, exactly as ``immp --check`` does (a
throwaway host is built from it), and compares it with the *base*: the file as IMMP last read
or wrote it. Nothing has changed yet; a :class:`ConfigError` there leaves the host as it was.
:meth:`Reload.apply` then changes the running host entry by entry:

- an entry the file adds starts, one it removes stops, one it changed is closed and started
  again from the file (a plug that restarts reconnects);
- an entry the file did not change keeps running untouched, with whatever commands changed in
  it at runtime: the IRC connection of an unchanged plug stays up, and a channel added to it
  is joined through :meth:`Plug.on_channel_added <immp.Plug.on_channel_added>`;
- a hook whose own entry is unchanged restarts too when its config names a plug, channel or
  group that changed or went (it may hold channels of the old plug); a channel of a plug that
  restarts is named again on the new plug.

So where the file and a runtime change disagree, the file wins for the entries the file
changed since IMMP last read or wrote it, and the runtime change stays everywhere else.

The ``store`` section cannot change on a running host (plugs' and hooks' state and the message
map live there): a file whose ``store`` differs from the base is refused whole, with one line,
and needs a restart. ``host`` settings apply to what opens from then on. ``logging`` is the
runner's to apply (:mod:`immp._runner`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._channel import Group
from .._errors import ConfigError
from .._hook import ResourceHook
from .._host import Host
from .._openable import OpenState
from ..plugins import Plugins
from .build import SETTINGS, build_host, create_channel, create_item, validate_sections
from .sections import KNOWN_SECTIONS

_SECTIONS = ("plugs", "channels", "groups", "hooks")


@dataclass
class Reload:
    """What a reload will do: per section, the names to add, remove and restart."""

    host: Host
    data: dict[str, Any]
    refs: dict[str, set]
    config: dict[str, Any]
    plugins: Plugins
    warn: Callable
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any((*self.added.values(), *self.removed.values(), *self.changed.values()))

    def describe(self) -> str:
        """One line: ``added channel c; restarted hook sync`` (or ``no changes``)."""
        parts = []
        for verb, table in (("added", self.added), ("removed", self.removed),
                            ("restarted", self.changed)):  # fmt: skip
            for section in _SECTIONS:
                names = table.get(section)
                if names:
                    kind = section[:-1] + ("s" if len(names) > 1 else "")
                    parts.append(f"{verb} {kind} {', '.join(names)}")
        # Applied: a plug or hook that did not open is not "added" or "restarted" and nothing
        # more (its error was logged when it failed).
        items = {**self.host.plugs, **self.host.hooks}
        failed = [name for section in ("plugs", "hooks")
                  for table in (self.added, self.changed) for name in table.get(section, ())
                  if name in items and items[name].open_state is OpenState.failed]  # fmt: skip
        if failed:
            parts.append(f"FAILED to open {', '.join(failed)} (see the error above)")
        return "; ".join(parts) or "no changes"

    async def apply(self) -> None:
        """
        Change the running host: stop what goes and what changed, then add and open what
        comes and what changed (resources first, then plugs and, beside them, hooks). Returns when
        each has opened or failed (a failure is logged, as at start, and does not undo the
        rest). Where hooks stop or restart, received messages wait in the plugs' inboxes until
        the new hooks are open (:meth:`Host.holding_messages <immp.Host.holding_messages>`):
        they handle them, in order, and none passes by while no hook is there to see it. The
        hooks open beside the plugs still opening, not after them: a plug that takes its
        time (a network slow to answer, or down until ``open-timeout``) holds back only what
        is sent to it, which waits for it as for a plug's restart, and not every bridge.
        """
        with contextlib.ExitStack() as hold:
            if self.removed.get("hooks") or self.changed.get("hooks"):
                hold.enter_context(self.host.holding_messages())
            await self._apply(hold)

    async def _open_plug(self, name: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # What is sent to the plug while it opens waits for it (see Pipeline.send), as while
        # a plug restarts, rather than reaching a plug that is not open yet.
        with self.host._restarting(name):
            task_status.started()
            await self.host.start(name)

    async def _apply(self, hold: contextlib.ExitStack) -> None:
        host, config = self.host, self.config
        going = {s: self.removed.get(s, []) + self.changed.get(s, []) for s in _SECTIONS}
        coming = {s: self.added.get(s, []) + self.changed.get(s, []) for s in _SECTIONS}
        for section in ("hooks", "channels", "groups", "plugs"):
            for name in going[section]:
                if name in getattr(host, section):
                    await host.remove(name)
        options = config["host"]
        host.open_timeout = options["open-timeout"]
        host.close_timeout = options["close-timeout"]
        host.hook_stuck_after = options["hook-stuck-after"]
        host.echo_history = options["echo-history"]  # for plugs opened from now on
        host.settings = {key: self.data[key] for key in SETTINGS if self.data.get(key)}
        host.extra_config = {k: v for k, v in self.data.items() if k not in KNOWN_SECTIONS}
        opening = []

        def add_items(section: str, add: Callable) -> None:
            for name in coming[section]:
                spec = config[section][name]
                item = create_item(section, name, spec, host, self.refs, self.plugins, self.warn)
                # Added closed, so that a plug's channels are named before it opens (open()
                # joins them); opened below, in the order of a start.
                add(item, enabled=False)
                if spec["enabled"]:
                    opening.append(item)

        add_items("plugs", host.add_plug)
        for name in coming["channels"]:
            spec = config["channels"][name]
            host.add_channel(name, create_channel(name, spec, host, self.refs, self.warn))
        for name in coming["groups"]:
            host.add_group(Group(name, config["groups"][name], host))
        add_items("hooks", host.add_hook)
        resources = [i for i in opening if isinstance(i, ResourceHook)]
        plugs = [i for i in opening if i.name in host.plugs]
        hooks = [i for i in opening if i not in resources and i not in plugs]
        async with trio.open_nursery() as nursery:
            for item in resources:
                nursery.start_soon(host.start, item.name)
        async with trio.open_nursery() as opening_plugs:
            for item in plugs:
                await opening_plugs.start(self._open_plug, item.name)
            async with trio.open_nursery() as nursery:
                for item in hooks:
                    nursery.start_soon(host.start, item.name)
            hold.close()  # the hooks are open: messages go on while plugs still open


def plan_reload(
    host: Host,
    data: dict[str, Any],
    base: dict[str, Any],
    *,
    file: str | None = None,
    plugins: Plugins | None = None,
    warn: Callable | None = None,
) -> Reload:
    """
    Validate ``data`` (the file just read) completely, as ``immp --check`` does, and work out
    what changed since ``base`` (the file as last read or written). Changes nothing. Raises
    :class:`ConfigError` (with ``file`` set) if ``data`` is not a usable config, or if its
    ``store`` section differs from the base's (a store cannot change on a running host).
    """
    plugins = plugins or Plugins()
    warn = warn or (lambda _warning: None)
    build_host(data, file=file, plugins=plugins, warn=warn)  # the whole check; thrown away
    if data.get("store") != base.get("store"):
        raise ConfigError("changed; a running IMMP keeps its store: restart it to use the new "
                          "one (nothing was reloaded)", "store", file)  # fmt: skip
    refs, config = validate_sections(data, warn)
    try:
        _, old = validate_sections(base, lambda _warning: None)
    except ConfigError:
        old = {section: {} for section in _SECTIONS}  # cannot happen: the base was valid
    plan = Reload(host, data, refs, config, plugins, warn)
    for section in _SECTIONS:
        before, after = old[section], config[section]
        plan.added[section] = [n for n in after if n not in before]
        plan.removed[section] = [n for n in before if n not in after]
        plan.changed[section] = [n for n in after if n in before and after[n] != before[n]]
    _follow_dependencies(plan, config)
    _check_names(plan, host, file)
    for folder in [config["path"]] if isinstance(config["path"], str) else config["path"]:
        if folder not in sys.path:
            sys.path.append(folder)
    return plan


def _follow_dependencies(plan: Reload, config: dict[str, Any]) -> None:
    """Channels of a restarting plug, and hooks that name what changed, restart too."""
    host = plan.host
    restarting = set(plan.changed["plugs"])
    for name, spec in config["channels"].items():
        if spec["plug"] in restarting and name not in plan.added["channels"]:
            if name not in plan.changed["channels"]:
                plan.changed["channels"].append(name)
    touched = {name for section in _SECTIONS if section != "hooks"
               for name in (*plan.changed[section], *plan.removed[section])}  # fmt: skip
    if not touched:
        return
    for name, spec in config["hooks"].items():
        if name in plan.added["hooks"] or name in plan.changed["hooks"]:
            continue
        if name in host.hooks and touched & _strings(spec["config"]):
            plan.changed["hooks"].append(name)


def _strings(value: Any) -> set[str]:
    """Every string in a config value, keys included (names are unique across sections)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(k) | _strings(v) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_strings(v) for v in value))
    return set()


def _check_names(plan: Reload, host: Host, file: str | None) -> None:
    """
    A name the file adds may already be taken at runtime: in the same section the file wins
    (the runtime one is replaced); in another section the reload is refused.
    """
    for section in _SECTIONS:
        for name in list(plan.added[section]):
            taken = host.section_of(name)
            if taken == section:
                plan.added[section].remove(name)
                plan.changed[section].append(name)
            elif taken is not None and name not in plan.removed.get(taken, ()):
                raise ConfigError(
                    f"name {name!r} is taken by {taken}.{name}, added while running; remove "
                    "that first (nothing was reloaded)",
                    f"{section}.{name}",
                    file,
                )
