"""
Config files: load (YAML, JSON or TOML by extension), validate every key before anything
connects, build a :class:`Host`, and write the live config back (``immp -w``).
"""

from __future__ import annotations

import copy
import glob
import json
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ._channel import Channel, Group
from ._errors import ConfigError
from ._hook import DEFAULT_TIMEOUT, Hook
from ._host import Host
from ._openable import OpenState
from ._plug import Plug
from ._schema import Any_, Nullable, Number, Optional, Ref, Schema
from ._store import store_from_config
from .plugins import Plugins

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}

_GROUP_SPEC = {
    Optional("channels", []): [Ref("channel")],
    Optional("private", []): [Ref("plug")],
    Optional("shared", []): [Ref("plug")],
    Optional("named", []): [Ref("plug")],
    Optional("anywhere", []): [Ref("plug")],
}

TOP_SCHEMA = Schema(
    {
        Optional("path", []): Any_([str], str, describe="a list of folders"),
        Optional("plugs", {}): Nullable({str: {
            "path": str,
            Optional("config", {}): Nullable(dict),
            Optional("enabled", True): bool,
        }}),
        Optional("channels", {}): Nullable({str: {
            "plug": Ref("plug"),
            "source": Any_(str, int, describe="a string"),
        }}),
        Optional("groups", {}): Nullable({str: {
            **_GROUP_SPEC,
            Optional("exclude", None): Nullable(Any_([Ref("channel")], _GROUP_SPEC,
                                                     describe="a list of channels or a group")),
        }}),
        Optional("hooks", {}): Nullable({str: {
            "path": str,
            Optional("config", {}): Nullable(dict),
            Optional("enabled", True): bool,
            Optional("priority", None): Nullable(int),
            Optional("timeout", DEFAULT_TIMEOUT): Nullable(Number),
        }}),
        Optional("host", {}): {
            Optional("echo-history", 10_000): int,
            Optional("open-timeout", 30.0): Number,
            Optional("close-timeout", 10.0): Number,
            Optional("hook-stuck-after", 5.0): Number,
        },
        Optional("logging", None): Nullable(dict),
    },
    extra=True,
)  # fmt: skip

_KNOWN_TOP = ("path", "plugs", "channels", "groups", "hooks", "host", "logging")


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a config file; a syntax error is a :class:`ConfigError` naming the line."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"unknown config format {path.suffix or '(no extension)'!r}: use .yaml, .json or .toml",
            file=str(path),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(path))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=str(path))
    try:
        if fmt == "yaml":
            data = yaml.safe_load(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", where, str(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}", str(path)
        )
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", None, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping, not a {type(data).__name__}", file=str(path)
        )
    return data


def build_host(
    data: dict[str, Any], *, file: str | None = None, plugins: Plugins | None = None
) -> Host:
    """
    Validate a loaded config completely, then create the host with every plug, channel, group
    and hook (nothing is opened). Raises :class:`ConfigError` with ``file`` set.
    """
    try:
        host = _build(data, plugins)
        host.store = store_from_config(data.get("store"), file, plugins)  # see immp._store
        return host
    except ConfigError as exc:
        exc.file = exc.file or file
        raise


def _build(data: dict[str, Any], plugins: Plugins | None) -> Host:
    config = TOP_SCHEMA.validate(data)
    for section in ("plugs", "channels", "groups", "hooks"):
        config[section] = config[section] or {}
    search = config["path"]
    for folder in [search] if isinstance(search, str) else search:
        if folder not in sys.path:
            sys.path.append(folder)
    plugins = plugins or Plugins()
    seen: dict[str, str] = {}
    for section in ("plugs", "channels", "groups", "hooks"):
        for name in config[section]:
            if name in seen:
                raise ConfigError(
                    f"name {name!r} is used by both {seen[name]} and {section}.{name}",
                    f"{section}.{name}",
                )
            seen[name] = f"{section}.{name}"
    refs = {
        kind: set(config[section])
        for kind, section in (
            ("plug", "plugs"),
            ("channel", "channels"),
            ("group", "groups"),
            ("hook", "hooks"),
        )
    }
    TOP_SCHEMA.validate(data, refs=refs)  # now that names are known, check references
    classes: dict[str, type] = {}
    for section, kind in (("plugs", Plug), ("hooks", Hook)):
        for name, spec in config[section].items():
            cls = plugins.resolve(spec["path"], kind, f"{section}.{name}.path")
            cls.validate_config(spec["config"], f"{section}.{name}.config", refs)
            classes[name] = cls
    options = config["host"]
    host = Host(
        echo_history=options["echo-history"],
        open_timeout=options["open-timeout"],
        close_timeout=options["close-timeout"],
        hook_stuck_after=options["hook-stuck-after"],
    )
    host.extra_config = {k: v for k, v in data.items() if k not in _KNOWN_TOP}
    host.settings = {key: data[key] for key in ("path", "host", "logging") if data.get(key)}
    for name, spec in config["plugs"].items():
        try:
            plug = classes[name](name, spec["config"], host)
        except ConfigError as exc:
            exc.path = f"plugs.{name}.config" + (f".{exc.path}" if exc.path else "")
            raise
        _remember(plug, spec)
        host.add_plug(plug, enabled=spec["enabled"])
    for name, spec in config["channels"].items():
        host.add_channel(name, Channel(host.plugs[spec["plug"]], str(spec["source"])))
    for name, spec in config["groups"].items():
        host.add_group(Group(name, spec, host))
    for name, spec in config["hooks"].items():
        try:
            hook = classes[name](name, spec["config"], host, priority=spec["priority"])
        except ConfigError as exc:
            exc.path = f"hooks.{name}.config" + (f".{exc.path}" if exc.path else "")
            raise
        hook.timeout = spec["timeout"]
        _remember(hook, spec)
        host.add_hook(hook, enabled=spec["enabled"])
    return host


def _remember(item: Plug | Hook, spec: dict[str, Any]) -> None:
    item.path = spec["path"]
    item.raw_config = copy.deepcopy(spec["config"] or {})


# -- writing back ------------------------------------------------------------------------------


def _defaults(cls: type) -> dict[str, Any]:
    schema = cls.schema.spec if isinstance(cls.schema, Schema) else cls.schema
    if not isinstance(schema, dict):
        return {}
    return {k.key: k.default for k in schema if isinstance(k, Optional)}


def _minimal(item: Plug | Hook) -> dict[str, Any]:
    """The item's live config, leaving out keys the user never wrote that still hold defaults."""
    raw = getattr(item, "raw_config", {}) or {}
    defaults = _defaults(type(item))
    return {
        k: copy.deepcopy(v)
        for k, v in item.config.items()
        if k in raw or k not in defaults or v != defaults[k]
    }


def dump_config(host: Host, plugins: Plugins | None = None) -> dict[str, Any]:
    """The live state of the host as a config mapping, ready to write."""
    out: dict[str, Any] = {k: v for k, v in host.settings.items() if k != "logging"}

    found = plugins

    def path_of(item):
        nonlocal found
        if item.path:
            return item.path
        if found is None:
            found = Plugins()  # discovery once per dump, only for items added without a path
        return found.name_of(type(item))

    def entry(item, **more):
        data = {"path": path_of(item)}
        data.update(more)
        config = _minimal(item)
        if config:
            data["config"] = config
        if item.open_state is OpenState.disabled:
            data["enabled"] = False
        return data

    out["plugs"] = {name: entry(plug) for name, plug in host.plugs.items() if not plug.virtual}
    out["channels"] = {
        name: {"plug": ch.plug.name, "source": ch.source}
        for name, ch in host.channels.items()
        if not ch.plug.virtual
    }
    out["groups"] = {
        name: {k: v for k, v in group.config.items() if v} for name, group in host.groups.items()
    }
    hooks = {}
    for name, hook in host.hooks.items():
        more = {} if hook.priority is None else {"priority": hook.priority}
        if hook.timeout != DEFAULT_TIMEOUT:
            more["timeout"] = hook.timeout
        hooks[name] = entry(hook, **more)
    out["hooks"] = hooks
    if "logging" in host.settings:
        out["logging"] = host.settings["logging"]
    out.update(host.extra_config)
    return out


def serialise(data: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return _toml_dump(data)


def write_config(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """
    Write ``data`` to ``path`` atomically: a temporary file in the same folder, flushed to disk,
    then renamed over the old one, with the old file's permission bits. A crash at any moment
    leaves either the old or the new content, never a mix.
    """
    path = Path(path)
    text = serialise(data, FORMATS[path.suffix.lower()])
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """
    Delete temporary files that :func:`write_config` left next to ``path`` when the process
    was killed mid-write (the config file itself is never damaged by that). Returns them.
    """
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for item in stale:
        item.unlink(missing_ok=True)
    return stale


def _toml_dump(data: dict[str, Any]) -> str:
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(i) for i in v if i is not None) + "]"
        if isinstance(v, dict):
            items = ", ".join(f"{key(k)} = {value(i)}" for k, i in v.items() if i is not None)
            return "{ " + items + " }" if items else "{}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def key(k: str) -> str:
        bare = k and all(c.isalnum() or c in "-_" for c in k)
        return k if bare else json.dumps(k, ensure_ascii=False)

    def table(prefix: str, mapping: dict[str, Any]) -> None:
        scalars = {k: v for k, v in mapping.items() if not isinstance(v, dict) and v is not None}
        tables = {k: v for k, v in mapping.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{key(k)} = {value(v)}")
        for k, v in tables.items():
            table(f"{prefix}.{key(k)}" if prefix else key(k), v)

    table("", data)
    return "\n".join(lines).lstrip("\n") + "\n"
