"""
Turning a live host back into a config mapping (``immp -w``), and a mapping into text.

What is written is what was set: the keys the user wrote (even where they hold the default),
and whatever changed at runtime; an option nobody wrote that still holds its default stays out,
at every depth (``server: {host: ...}`` does not come back with ``ssl: false`` beside it).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import tomli_w
import yaml

from .._hook import DEFAULT_TIMEOUT, Hook
from .._host import Host
from .._openable import OpenState
from .._plug import Plug
from .._schema import Nullable, Optional, Schema, mapping_keys
from ..plugins import Plugins


def dump_config(host: Host, plugins: Plugins | None = None) -> dict[str, Any]:
    """The live state of the host as a config mapping, ready to write."""
    out: dict[str, Any] = {k: v for k, v in host.settings.items() if k != "logging"}
    found = plugins

    def path_of(item: Plug | Hook) -> str:
        nonlocal found
        if item.path:
            return item.path
        if found is None:
            found = Plugins()  # discovery once per dump, only for items added without a path
        return found.name_of(type(item))

    def entry(item: Plug | Hook, **more: Any) -> dict[str, Any]:
        data = {"path": path_of(item), **more}
        config = written(type(item).schema, item.config, item.given_config)
        if config:
            data["config"] = config
        if item.open_state is OpenState.disabled:
            data["enabled"] = False
        return data

    plugs = {name: entry(plug) for name, plug in host.plugs.items() if not plug.virtual}
    channels = {
        name: {"plug": ch.plug.name, "source": ch.source}
        for name, ch in host.channels.items()
        if not ch.plug.virtual
    }
    groups = {
        name: {k: v for k, v in group.config.items() if v} for name, group in host.groups.items()
    }
    hooks = {}
    for name, hook in host.hooks.items():
        more: dict[str, Any] = {} if hook.priority is None else {"priority": hook.priority}
        if hook.timeout != DEFAULT_TIMEOUT:
            more["timeout"] = hook.timeout
        hooks[name] = entry(hook, **more)
    for section, items in (("plugs", plugs), ("channels", channels), ("groups", groups),
                           ("hooks", hooks)):  # fmt: skip
        if items:
            out[section] = items
    if "logging" in host.settings:
        out["logging"] = host.settings["logging"]
    out.update(host.extra_config)
    return out


def written(spec: Any, live: Any, given: Any) -> Any:
    """
    The part of ``live`` (a validated value of ``spec``) worth writing back: everything but the
    optional keys that ``given`` (what the user wrote) leaves out and that hold their default.
    """
    if isinstance(spec, Schema):
        spec = spec.spec
    while isinstance(spec, Nullable):
        spec = spec.inner
    if not isinstance(spec, dict) or not isinstance(live, dict):
        return copy.deepcopy(live)
    fixed, wildcard = mapping_keys(spec)
    given = given if isinstance(given, dict) else {}
    out = {}
    for name, value in live.items():
        if name in fixed:
            key, sub = fixed[name]
            if name not in given and isinstance(key, Optional) and value == _default(key, sub):
                continue
        else:
            sub = wildcard[1] if wildcard else None
        out[name] = written(sub, value, given.get(name))
    return out


def _default(key: Optional, sub: Any) -> Any:
    """An optional key's default as validation fills it in (a mapping gets its own defaults)."""
    value = key.make_default()
    if isinstance(value, dict) and isinstance(sub, (dict, Schema)):
        value = Schema(sub).validate(value, warn=lambda _warning: None)
    return value


def serialise(data: dict[str, Any], fmt: str) -> str:
    """``data`` as the text of a file in ``fmt`` (``yaml``, ``json`` or ``toml``)."""
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return tomli_w.dumps(_without_nulls(data))


def _without_nulls(value: Any) -> Any:
    """TOML has no null: a key whose value is null, and a null in a list, are left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value
