"""
Config validation: a small schema language whose errors name the exact key path.

A schema is built from plain Python values::

    Schema({
        Required("channels", doc="..."): {str: [Ref("channel")]},  # any string key -> a list
        Optional("name-format", doc="..."): Nullable(str),   # optional key, default None
        Optional("joins", True, doc="..."): bool,            # optional key with a default
        Optional("port", 6667): Range(int, 1, 65535),        # a number within bounds
        Optional("interval", 10.0): Nullable(Positive()),
        "plain": str,                                         # a required key, undocumented
    })

``doc`` is the key's documentation: the config tables in the READMEs and docs/config.md are
generated from it (``hatch run docs``). ``validate()`` returns the value with defaults filled
in, or raises :class:`ConfigError` with a path such as ``channels.main[1]`` and one line saying
what was wrong. :class:`Ref` checks a name against the channels, groups, plugs or hooks of the
config being validated. :class:`Warn` reports a legal but suspicious value as a
:class:`ConfigWarning` without failing.
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ._errors import ConfigError, ConfigWarning

_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "a mapping", list: "a list"}  # fmt: skip


class Required:
    """A mapping key that must be given; ``doc`` says what it is (shown in the generated docs)."""

    def __init__(self, key: str, *, doc: str = ""):
        self.key = key
        self.doc = doc

    def __repr__(self) -> str:
        return f"Required({self.key!r})"


class Optional:
    """
    A mapping key that may be left out; ``default`` is filled in (a copy, if mutable), or with
    ``omit`` nothing is, and the key stays out (for overrides, where absent means "inherit").
    ``doc`` says what the key is, and ``doc_default`` what the default means where the value
    alone does not say it (``port: null`` is "6697 with `ssl`, else 6667"); both are shown in
    the generated docs.
    """

    def __init__(self, key: str, default: Any = None, *, omit: bool = False, doc: str = "",
                 doc_default: str | None = None):  # fmt: skip
        self.key = key
        self.default = default
        self.omit = omit
        self.doc = doc
        self.doc_default = doc_default

    def make_default(self) -> Any:
        if isinstance(self.default, (list, dict)):
            return copy.deepcopy(self.default)
        return self.default

    def __repr__(self) -> str:
        return f"Optional({self.key!r}, {self.default!r})"


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


class Range:
    """
    A number from ``low`` to ``high`` (both included; ``None`` for no bound): ``Range(int, 1,
    65535)`` for a port, ``Range(Number, 0)`` for a timeout that may be zero.
    """

    def __init__(self, kind: Any = Number, low: float | None = None, high: float | None = None):
        self.kind = kind
        self.low = low
        self.high = high

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"from {low} to {high}"
        if self.low is not None:
            return f"at least {low}"
        return f"at most {high}"


def _number(value: float | None) -> str:
    """A bound as a person writes it: 1000000, 0.5 (not 1e+06, 1000000.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class Warn:
    """
    The value as ``inner`` accepts it, then ``test(value)``: ``None`` if all is well, or one
    line saying what looks wrong. That line is a warning (``immp --check`` and the start print
    it), not an error: the value is kept. For what is legal but almost always a mistake.
    """

    def __init__(self, inner: Any, test: Callable[[Any], str | None]):
        self.inner = inner
        self.test = test


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
    text = str(key)
    if not text.isprintable():  # a key with a newline must not break the one-line error
        text = repr(text)
    return f"{path}.{text}" if path else text


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


log = logging.getLogger("immp.config")

#: While a config file is built, the names it defines (for :class:`Ref`) and where warnings go,
#: so that the one validation a plug or hook does of its own config (in its constructor) checks
#: references and reports warnings too, without every constructor passing them along.
_scope: ContextVar[tuple[Mapping[str, set[str]] | None, Callable | None]] = ContextVar(
    "immp_schema_scope", default=(None, None)
)


@contextmanager
def validating(refs: Mapping[str, set[str]] | None, warn: Callable[[ConfigWarning], None] | None):
    """Within this block, validation without explicit ``refs``/``warn`` uses these."""
    token = _scope.set((refs, warn))
    try:
        yield
    finally:
        _scope.reset(token)


def near(name: object, known) -> str | None:
    """The known name that ``name`` is most likely a typo of, if any is close."""
    if not isinstance(name, str):
        return None
    found = difflib.get_close_matches(name, [k for k in known if isinstance(k, str)], 1, 0.75)
    return found[0] if found else None


def _given(missing: str, unknown: list) -> str:
    """For a missing key's error: the unknown keys that were given instead, a near miss first."""
    strings = [n for n in unknown if isinstance(n, str)]
    typo = near(missing, strings) if strings else None
    if typo is not None:
        return f" (unknown key {typo!r} given: did you mean {missing!r}?)"
    if strings:
        return f" (unknown keys given: {', '.join(repr(n) for n in strings)})"
    return ""


def _key_name(key: Any) -> str | None:
    if isinstance(key, (Optional, Required)):
        return key.key
    return key if isinstance(key, str) else None


def mapping_keys(spec: dict) -> tuple[dict[str, tuple[Any, Any]], tuple[Any, Any] | None]:
    """
    A mapping spec's named keys (name -> (the key object, its value's spec)) and its wildcard
    (``(key spec, value spec)`` for a spec like ``{str: int}``), if any.
    """
    fixed: dict[str, tuple[Any, Any]] = {}
    wildcard = None
    for key, sub in spec.items():
        name = _key_name(key)
        if name is not None:
            fixed[name] = (key, sub)
        else:
            wildcard = (key, sub)
    return fixed, wildcard


class Schema:
    """
    A compiled schema; see the module docstring. With ``extra``, the outer mapping keeps keys
    it does not know (unless one is a near miss of a known key: that is a typo and an error);
    nested mappings never do.
    """

    def __init__(self, spec: Any, *, extra: bool = False):
        self.spec = spec
        self.extra = extra

    def validate(
        self,
        value: Any,
        path: str = "",
        refs: Mapping[str, set[str]] | None = None,
        warn: Callable[[ConfigWarning], None] | None = None,
    ):
        """
        Check and normalise ``value``; ``refs`` maps a kind to the names that exist (without
        it, names are not checked), ``warn`` gets each :class:`ConfigWarning` (without it, they
        are logged). Raises :class:`ConfigError`.
        """
        scope_refs, scope_warn = _scope.get()
        refs = refs if refs is not None else scope_refs
        warn = warn or scope_warn or (lambda w: log.warning("%s", w))
        return self._check_top(value, path, refs, warn)

    def _check(self, spec: Any, value: Any, path: str, refs, warn):
        if isinstance(spec, Schema):
            return spec._check_top(value, path, refs, warn)
        if spec is Any or spec is object:
            return value
        if isinstance(spec, Nullable):
            return None if value is None else self._check(spec.inner, value, path, refs, warn)
        if isinstance(spec, Any_):
            for option in spec.options:
                try:
                    return self._check(option, value, path, refs, warn)
                except ConfigError:
                    continue
            what = spec.describe or " or ".join(_TYPE_NAMES.get(o, str(o)) for o in spec.options)
            raise ConfigError(f"expected {what}, got {_describe(value, path)}", path)
        if spec is Number:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"expected a number, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, Positive):
            value = self._check(spec.kind, value, path, refs, warn)
            if value <= 0:
                raise ConfigError(f"must be positive, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, Range):
            value = self._check(spec.kind, value, path, refs, warn)
            if (spec.low is not None and value < spec.low) or (
                spec.high is not None and value > spec.high
            ):
                raise ConfigError(f"must be {spec.describe()}, got {_describe(value, path)}", path)
            return value
        if isinstance(spec, Warn):
            value = self._check(spec.inner, value, path, refs, warn)
            problem = spec.test(value)
            if problem:
                warn(ConfigWarning(problem, path or None))
            return value
        if isinstance(spec, Check):
            try:
                return spec.func(value)
            except ValueError as exc:
                raise ConfigError(f"expected {spec.describe}: {exc}", path)
            except TypeError:  # the value's shape is wrong; Python's words would not help
                raise ConfigError(f"expected {spec.describe}, got {_describe(value, path)}", path)
        if isinstance(spec, Ref):
            if not isinstance(value, str):
                raise ConfigError(
                    f"expected a {'/'.join(spec.kinds)} name, got {_describe(value, path)}", path
                )
            if refs is not None and not any(value in refs.get(kind, ()) for kind in spec.kinds):
                known = set().union(*(refs.get(kind, ()) for kind in spec.kinds))
                hint = near(value, known)
                raise ConfigError(
                    f"no {' or '.join(spec.kinds)} named {value!r}"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                    path,
                )
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
            return [self._check(item, v, _join(path, i), refs, warn) for i, v in enumerate(value)]
        if isinstance(spec, dict):
            return self._check_mapping(spec, value, path, refs, warn, extra=False)
        if isinstance(spec, tuple):  # a choice of literal values
            if value not in spec:
                choices = ", ".join(repr(c) for c in spec)
                raise ConfigError(f"expected one of {choices}, got {_describe(value, path)}", path)
            return value
        raise TypeError(f"bad schema node {spec!r}")

    def _check_top(self, value: Any, path: str, refs, warn):
        if isinstance(self.spec, dict):
            return self._check_mapping(self.spec, value, path, refs, warn, extra=self.extra)
        return self._check(self.spec, value, path, refs, warn)

    def _check_mapping(self, spec: dict, value: Any, path: str, refs, warn, *, extra: bool):
        if value is None and all(isinstance(k, Optional) for k in spec):
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {_describe(value, path)}", path)
        out: dict[str, Any] = {}
        fixed, wildcard = mapping_keys(spec)
        unknown = [name for name in value if name not in fixed]
        for name, (key, _sub) in fixed.items():
            if name not in value and not isinstance(key, Optional):
                given = unknown if wildcard is None else []
                raise ConfigError(f"missing required key {name!r}{_given(name, given)}",
                                  path or None)  # fmt: skip
        if wildcard is None:
            # A typo of a known key is an error, even where other unknown keys are kept.
            for name in unknown:
                hint = near(name, fixed)
                if hint is not None and hint not in value:
                    raise ConfigError(f"unknown key {name!r} (did you mean {hint!r}?)",
                                      _join(path, name))  # fmt: skip
        for name, (key, sub) in fixed.items():
            if name in value:
                out[name] = self._check(sub, value[name], _join(path, name), refs, warn)
            elif not key.omit:
                out[name] = key.make_default()
                if isinstance(out[name], dict) and isinstance(sub, (dict, Schema)):
                    out[name] = self._check(sub, out[name], _join(path, name), refs, warn)
        for name in unknown:
            item = value[name]
            if wildcard is not None:
                key_spec, sub = wildcard
                self._check(key_spec, name, _join(path, name), refs, warn)
                out[name] = self._check(sub, item, _join(path, name), refs, warn)
            elif extra:
                out[name] = item
            else:
                known = ", ".join(sorted(fixed)) or "none"
                raise ConfigError(f"unknown key {name!r} (known keys: {known})", _join(path, name))
        return out
