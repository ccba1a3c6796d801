"""
Config validation: a small schema language whose errors name the exact key path.

A schema is built from plain Python values::

    Schema({
        "channels": {str: [Ref("channel")]},       # mapping of any string key to a list
        Optional("name-format"): Nullable(str),       # optional key, default None
        Optional("joins", True): bool,                # optional key with a default
        Optional("interval", 10.0): Nullable(Number),
    })

``validate()`` returns the value with defaults filled in, or raises :class:`ConfigError` with a
path such as ``channels.main[1]`` and one line saying what was wrong. :class:`Ref` checks a name
against the channels, groups, plugs or hooks of the config being validated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ConfigError

_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping", list: "a list"}  # fmt: skip


class Optional:
    """
    A mapping key that may be left out; ``default`` is filled in (a copy, if mutable), or with
    ``omit`` nothing is, and the key stays out (for overrides, where absent means "inherit").
    """

    def __init__(self, key: str, default: Any = None, *, omit: bool = False):
        self.key = key
        self.default = default
        self.omit = omit

    def make_default(self) -> Any:
        if isinstance(self.default, (list, dict)):
            import copy

            return copy.deepcopy(self.default)
        return self.default


class Nullable:
    """The inner schema, or null."""

    def __init__(self, inner: Any):
        self.inner = inner


class Any_:
    """The first of several schemas that accepts the value."""

    def __init__(self, *options: Any, describe: str | None = None):
        self.options = options
        self.describe = describe


class Number:
    """An int or float (not a bool)."""


class Positive:
    """A number above zero: ``Positive(int)`` for a whole one, ``Positive()`` for any number."""

    def __init__(self, kind: Any = Number):
        self.kind = kind


class Ref:
    """The name of a channel, group, plug or hook defined in the same config."""

    def __init__(self, *kinds: str):
        self.kinds = kinds


class Check:
    """A function that returns the value (maybe converted) or raises ``ValueError(reason)``."""

    def __init__(self, func: Callable[[Any], Any], describe: str):
        self.func = func
        self.describe = describe


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


_SECRET = re.compile(r"pass|secret|token|key|auth|credential", re.IGNORECASE)


def _describe(value: Any, path: str = "") -> str:
    """How an offending value is shown in an error; values of secret-looking keys are not."""
    if value is None:
        return "null"
    last = re.sub(r"(\[\d+\])+$", "", path).rsplit(".", 1)[-1]
    if _SECRET.search(last):
        kind = type(value).__name__
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} (value hidden)"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


class Schema:
    """A compiled schema; see the module docstring."""

    def __init__(self, spec: Any, *, extra: bool = False):
        self.spec = spec
        self.extra = extra

    def validate(self, value: Any, path: str = "", refs: Mapping[str, set[str]] | None = None):
        """Check and normalise ``value``; ``refs`` maps a kind to the names that exist."""
        return self._check(self.spec, value, path, refs)

    def _check(self, spec: Any, value: Any, path: str, refs: Mapping[str, set[str]] | None):
        if isinstance(spec, Schema):
            return spec._check(spec.spec, value, path, refs)
        if spec is Any or spec is object:
            return value
        if isinstance(spec, Nullable):
            return None if value is None else self._check(spec.inner, value, path, refs)
        if isinstance(spec, Any_):
            for option in spec.options:
                try:
                    return self._check(option, value, path, refs)
                except ConfigError:
                    continue
            what = spec.describe or " or ".join(_TYPE_NAMES.get(o, str(o)) for o in spec.options)
            raise ConfigError(f"expected {what}, got {_describe(value, path)}", path)
        if spec is Number:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"expected a number, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, Positive):
            value = self._check(spec.kind, value, path, refs)
            if value <= 0:
                raise ConfigError(f"must be positive, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, Check):
            try:
                return spec.func(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"expected {spec.describe}: {exc}", path)
        if isinstance(spec, Ref):
            if not isinstance(value, str):
                raise ConfigError(
                    f"expected a {'/'.join(spec.kinds)} name, got {_describe(value, path)}", path
                )
            if refs is not None and not any(value in refs.get(kind, ()) for kind in spec.kinds):
                raise ConfigError(f"no {' or '.join(spec.kinds)} named {value!r}", path)
            return value
        if isinstance(spec, type):
            if spec is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
                what = _TYPE_NAMES.get(spec, spec.__name__)
                raise ConfigError(f"expected {what}, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, list):
            if not isinstance(value, list):
                raise ConfigError(f"expected a list, got {_describe(value, path)}", path)
            item = spec[0] if spec else Any
            return [self._check(item, v, _join(path, i), refs) for i, v in enumerate(value)]
        if isinstance(spec, dict):
            return self._check_mapping(spec, value, path, refs)
        if isinstance(spec, tuple):  # a choice of literal values
            if value not in spec:
                choices = ", ".join(repr(c) for c in spec)
                raise ConfigError(f"expected one of {choices}, got {_describe(value, path)}", path)
            return value
        raise TypeError(f"bad schema node {spec!r}")

    def _check_mapping(self, spec: dict, value: Any, path: str, refs):
        if value is None and all(isinstance(k, Optional) for k in spec):
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {_describe(value, path)}", path)
        out: dict[str, Any] = {}
        fixed: dict[str, tuple[Any, Any]] = {}
        wildcard = None
        for key, sub in spec.items():
            if isinstance(key, Optional):
                fixed[key.key] = (key, sub)
            elif isinstance(key, str):
                fixed[key] = (key, sub)
            else:
                wildcard = (key, sub)
        for name, (key, sub) in fixed.items():
            if name in value:
                out[name] = self._check(sub, value[name], _join(path, name), refs)
            elif isinstance(key, Optional):
                if key.omit:
                    continue
                out[name] = key.make_default()
                if isinstance(out[name], dict) and isinstance(sub, (dict, Schema)):
                    out[name] = self._check(sub, out[name], _join(path, name), refs)
            else:
                raise ConfigError(f"missing required key {name!r}", path or None)
        for name, item in value.items():
            if name in fixed:
                continue
            if wildcard is not None:
                key_spec, sub = wildcard
                self._check(key_spec, name, _join(path, name), refs)
                out[name] = self._check(sub, item, _join(path, name), refs)
            elif self.extra:
                out[name] = item
            else:
                known = ", ".join(sorted(fixed)) or "none"
                raise ConfigError(f"unknown key {name!r} (known keys: {known})", _join(path, name))
        return out
