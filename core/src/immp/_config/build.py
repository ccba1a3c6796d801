"""
Building a host from a loaded config: the file is validated once against the section schemas
(with the names it defines, so references are checked in the same pass), then every plug,
channel, group and hook is created. Each plug and hook validates its own ``config`` once, in
its constructor; the names and the warning sink reach that validation through
:func:`~immp._schema.validating`. Name clashes are the host's to find (``Host.add_*``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from .._channel import Channel, Group
from .._errors import ConfigError, ConfigWarning
from .._hook import Hook
from .._host import Host
from .._plug import Plug
from .._schema import Schema, validating
from .._store import store_from_config
from ..plugins import Plugins
from .sections import KNOWN_SECTIONS, TOP_SCHEMA

log = logging.getLogger("immp.config")

# The sections kept as written, for -w to write back (the others are rebuilt from the host).
SETTINGS = ("path", "host", "logging", "store")

_KINDS = (("plug", "plugs"), ("channel", "channels"), ("group", "groups"), ("hook", "hooks"))


def build_host(
    data: dict[str, Any],
    *,
    file: str | None = None,
    plugins: Plugins | None = None,
    warn: Callable[[ConfigWarning], None] | None = None,
) -> Host:
    """
    Validate a loaded config completely, then create the host with every plug, channel, group
    and hook (nothing is opened). Raises :class:`ConfigError` with ``file`` set. Each
    :class:`ConfigWarning` (with ``file`` set) goes to ``warn``, else to the ``immp.config`` log.
    """

    def warned(warning: ConfigWarning) -> None:
        warning.file = warning.file or file
        if warn is not None:
            warn(warning)
        else:
            log.warning("%s", warning)

    plugins = plugins or Plugins()
    try:
        host = _build(data, plugins, warned)
        host.store = store_from_config(data.get("store"), file, plugins)  # see immp._store
        return host
    except ConfigError as exc:
        exc.file = exc.file or file
        raise


def validate_sections(data: dict[str, Any], warn: Callable) -> tuple[dict, dict]:
    """
    Validate the top-level sections of a loaded config (with the names it defines, so that
    references are checked in the same pass). Returns ``(refs, config)``: the names by kind,
    and the sections with defaults filled in (``plugs``, ``channels``, ``groups`` and ``hooks``
    always mappings).
    """
    # The names each section defines, read before validation so that references are checked
    # in the one pass (a section that is not a mapping fails that pass anyway).
    refs = {kind: set(_mapping(data.get(section))) for kind, section in _KINDS}
    config = TOP_SCHEMA.validate(data, refs=refs, warn=warn)
    for section in ("plugs", "channels", "groups", "hooks"):
        config[section] = config[section] or {}
    return refs, config


def create_item(section: str, name: str, spec: dict, host: Host, refs: dict, plugins: Plugins,
                warn: Callable) -> Plug | Hook:  # fmt: skip
    """
    A new plug (``section`` is ``plugs``) or hook (``hooks``) from its validated entry, made for
    ``host`` but not added to it. Raises :class:`ConfigError` naming the key.
    """
    kind = Plug if section == "plugs" else Hook
    cls = plugins.resolve(spec["path"], kind, f"{section}.{name}.path")
    more = {} if kind is Plug else {"priority": spec["priority"]}
    item = _create(f"{section}.{name}", refs, warn, cls, name, spec["config"], host, **more)
    item.path = spec["path"]
    if kind is Hook:
        item.timeout = spec["timeout"]
    return item


def create_channel(name: str, spec: dict, host: Host, refs: dict, warn: Callable) -> Channel:
    """A channel from its validated entry, on the host's plug of that name (not added)."""
    plug, source = host.plugs[spec["plug"]], str(spec["source"])
    if plug.source_schema is not None:
        Schema(plug.source_schema).validate(source, f"channels.{name}.source", refs, warn)
    return Channel(plug, source)


def _build(data: dict[str, Any], plugins: Plugins, warn: Callable) -> Host:
    refs, config = validate_sections(data, warn)
    search = config["path"]
    for folder in [search] if isinstance(search, str) else search:
        if folder not in sys.path:
            sys.path.append(folder)
    # Every path first: a wrong one is reported before any constructor runs.
    for section, kind in (("plugs", Plug), ("hooks", Hook)):
        for name, spec in config[section].items():
            plugins.resolve(spec["path"], kind, f"{section}.{name}.path")
    options = config["host"]
    host = Host(
        echo_history=options["echo-history"],
        open_timeout=options["open-timeout"],
        close_timeout=options["close-timeout"],
        hook_stuck_after=options["hook-stuck-after"],
        journal=options["journal"],
        journal_age=options["journal-age"],
        journal_in_doubt=options["journal-in-doubt"],
    )
    host.extra_config = {k: v for k, v in data.items() if k not in KNOWN_SECTIONS}
    host.settings = {key: data[key] for key in SETTINGS if data.get(key)}
    for name, spec in config["plugs"].items():
        plug = create_item("plugs", name, spec, host, refs, plugins, warn)
        _add(f"plugs.{name}", host.add_plug, plug, enabled=spec["enabled"])
    for name, spec in config["channels"].items():
        channel = create_channel(name, spec, host, refs, warn)
        _add(f"channels.{name}", host.add_channel, name, channel)
    for name, spec in config["groups"].items():
        _add(f"groups.{name}", host.add_group, Group(name, spec, host))
    for name, spec in config["hooks"].items():
        hook = create_item("hooks", name, spec, host, refs, plugins, warn)
        _add(f"hooks.{name}", host.add_hook, hook, enabled=spec["enabled"])
    return host


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _create(where: str, refs: dict, warn: Callable, cls: type, *args: Any, **kwargs: Any) -> Any:
    """
    Run a plug's or hook's constructor (which validates its config) so that what it reports,
    error or warning, names the key from the top of the file (``plugs.NAME.config.KEY``).
    """

    def relocate(path: str | None) -> str:
        # The constructor validates under the path "config"; its own checks name keys inside it.
        if path == "config" or (path or "").startswith(("config.", "config[")):
            return f"{where}.{path}"
        return f"{where}.config" + (f".{path}" if path else "")

    def warned(warning: ConfigWarning) -> None:
        warning.path = relocate(warning.path)
        warn(warning)

    try:
        with validating(refs, warned):
            return cls(*args, **kwargs)
    except ConfigError as exc:
        exc.path = relocate(exc.path)
        raise


def _add(where: str, add: Callable, *args: Any, **kwargs: Any) -> None:
    """Add to the host; a clash of names (the host's check) is reported at this entry."""
    try:
        add(*args, **kwargs)
    except ConfigError as exc:
        exc.path = exc.path or where
        raise
