"""
Config tables from schemas: each documented key (``Optional(..., doc=...)``,
``Required(..., doc=...)``) becomes one row of a Markdown table: key, type, default, what.
Nested mappings with named keys become dotted rows (``server.host``). ``hatch run docs``
(docs/generate.py) writes these tables into the READMEs and docs/config.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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
    Warn,
    mapping_keys,
)

_NAMES = {str: "string", int: "int", float: "number", bool: "bool", dict: "mapping",
          list: "list", Number: "number", Any: "any"}  # fmt: skip
_PLURALS = {str: "strings", int: "ints", float: "numbers", bool: "bools", dict: "mappings",
            Number: "numbers"}  # fmt: skip


def describe(spec: Any, plural: bool = False) -> str:
    """A short English name of the values ``spec`` accepts: ``int, 1 to 65535``."""
    if isinstance(spec, Schema):
        return describe(spec.spec, plural)
    if isinstance(spec, Warn):
        return describe(spec.inner, plural)
    if isinstance(spec, Nullable):
        return f"{describe(spec.inner, plural)} or null"
    if isinstance(spec, Any_):
        if spec.describe:
            return _bare(spec.describe)
        return " or ".join(describe(o, plural) for o in spec.options)
    if isinstance(spec, Range):
        return f"{describe(spec.kind, plural)} ({spec.describe()})"
    if isinstance(spec, Positive):
        return f"{describe(spec.kind, plural)} above 0"
    if isinstance(spec, Check):
        return _bare(spec.describe)
    if isinstance(spec, Ref):
        return " or ".join(spec.kinds) + (" names" if plural else " name")
    if isinstance(spec, list):
        return f"list of {describe(spec[0], True)}" if spec else "list"
    if isinstance(spec, tuple):
        return "one of " + ", ".join(f"`{json.dumps(c)}`" for c in spec)
    if isinstance(spec, dict):
        fixed, wildcard = mapping_keys(spec)
        if fixed:
            return "`{" + ", ".join(fixed) + "}`"
        if wildcard is not None:
            key, value = wildcard
            return f"mapping: {'name' if key is str else describe(key)} -> {describe(value)}"
        return "mapping"
    if spec in _NAMES:
        return (_PLURALS if plural else _NAMES).get(spec, _NAMES[spec])
    return getattr(spec, "__name__", str(spec))


def _bare(text: str) -> str:
    """An error's "a string" as a table's "string"."""
    for article in ("a ", "an "):
        if text.startswith(article):
            return text[len(article) :]
    return text


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _expands(spec: Any) -> dict | None:
    """The mapping a key's spec is, if its keys get rows of their own (not for null-ables)."""
    if isinstance(spec, Schema):
        spec = spec.spec
    if isinstance(spec, dict) and mapping_keys(spec)[0] and mapping_keys(spec)[1] is None:
        return spec
    return None


def rows(spec: Any, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, doc) for each key of a mapping spec, nested keys dotted."""
    if isinstance(spec, Schema):
        spec = spec.spec
    fixed, _wildcard = mapping_keys(spec)
    for name, (key, sub) in fixed.items():
        dotted = f"{prefix}{name}"
        doc = getattr(key, "doc", "")
        nested = _expands(sub)
        if nested is not None:
            yield from rows(nested, f"{dotted}.")
            continue
        each = _each(sub)
        if each is not None:  # a mapping of names to mappings: a row, then each inner key
            yield (
                f"`{dotted}`",
                f"mapping of names to the `{dotted}.NAME` keys below",
                _default(key),
                doc,
            )
            yield from rows(each, f"{dotted}.NAME.")
            continue
        yield f"`{dotted}`", describe(sub), _default(key), doc


def _default(key: Any) -> str:
    if not isinstance(key, Optional):
        return "required"
    if key.doc_default is not None:
        return key.doc_default
    return "not set" if key.omit else _value(key.default)


def _each(spec: Any) -> dict | None:
    """The inner mapping of a mapping of names to mappings (``{str: {...}}``), if it is one."""
    while isinstance(spec, (Nullable, Schema)):
        spec = spec.inner if isinstance(spec, Nullable) else spec.spec
    if isinstance(spec, dict):
        fixed, wildcard = mapping_keys(spec)
        if not fixed and wildcard is not None:
            return _expands(wildcard[1])
    return None


def undocumented(spec: Any, prefix: str = "") -> list[str]:
    """The keys of a mapping spec, nested ones dotted, that have no ``doc``."""
    if isinstance(spec, Schema):
        spec = spec.spec
    missing = []
    for name, (key, sub) in mapping_keys(spec)[0].items():
        nested = _expands(sub)
        if nested is not None:
            missing += undocumented(nested, f"{prefix}{name}.")
            continue
        if not isinstance(key, (Optional, Required)) or not key.doc:
            missing.append(f"{prefix}{name}")
        each = _each(sub)
        if each is not None:
            missing += undocumented(each, f"{prefix}{name}.NAME.")
    return missing


def table(spec: Any) -> str:
    """A Markdown table of the keys of a mapping spec."""
    lines = ["| key | type | default | what |", "|---|---|---|---|"]
    for cells in rows(spec):
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
