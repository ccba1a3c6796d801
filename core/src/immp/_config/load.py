"""
Reading a config file into a mapping: the format follows the extension. Every problem is a
:class:`~immp.ConfigError` of one line naming the file (and the line, where there is one),
including a key written twice in one mapping, which YAML and JSON parsers otherwise accept by
keeping the last.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import os
import tomllib
from pathlib import Path
from typing import Any

import yaml

from .._errors import ConfigError

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a config file; a syntax error is a :class:`ConfigError` naming the line."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("is a folder, not a config file", file=str(path))
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
    data = _PARSERS[fmt](text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping, not a {type(data).__name__}", file=str(path)
        )
    return data


# -- YAML ---------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, message: str):
        self.message = message


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; a later key may override what it brings
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    taken = first.get(key)
                except TypeError:
                    continue  # an unhashable key: the base loader says what is wrong with it
                if taken is not None:
                    lines = f"line {line}" if taken == line else f"lines {taken} and {line}"
                    raise _DuplicateKey(
                        f"duplicate key {key!r} ({lines}): the second would silently replace "
                        "the first"
                    )
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except _DuplicateKey as exc:
        raise ConfigError(f"invalid YAML: {exc.message}", None, file)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML: {problem}", where, file)


# -- JSON ---------------------------------------------------------------------------------------


def _load_json(text: str, file: str) -> Any:
    decoder = json.JSONDecoder()
    parse_object = decoder.parse_object

    def strict_object(state, *args):
        # The pure-Python scanner tells us where each object starts; keep its pairs as a list,
        # so that a key given twice is still there to see.
        s, start = state
        pairs, end = parse_object(state, *args[:2], None, lambda items: items, *args[4:])
        seen: dict[str, None] = {}
        for key, _value in pairs:
            if key in seen:
                lines = _json_key_lines(s, start, end, key)
                where = f" (lines {lines[0]} and {lines[1]})" if len(lines) == 2 else ""
                raise _DuplicateKey(
                    f"duplicate key {key!r}{where}: the second would silently replace the first"
                )
            seen[key] = None
        return dict(pairs), end

    decoder.parse_object = strict_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    try:
        return decoder.decode(text)
    except _DuplicateKey as exc:
        raise ConfigError(f"invalid JSON: {exc.message}", None, file)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}",
                          file)  # fmt: skip


def _json_key_lines(text: str, start: int, end: int, key: str) -> list[int]:
    """The lines where ``key`` appears as a key directly in the object at ``text[start:end]``."""
    lines, depth, pos = [], 0, start
    scan = json.decoder.scanstring
    while pos < end:
        char = text[pos]
        if char == '"':
            value, after = scan(text, pos + 1)
            rest = text[after:end].lstrip()
            if depth == 0 and value == key and rest.startswith(":"):
                lines.append(text.count("\n", 0, pos) + 1)
            pos = after
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        pos += 1
    return lines


# -- TOML ---------------------------------------------------------------------------------------


def _load_toml(text: str, file: str) -> Any:
    try:
        return tomllib.loads(text)  # TOML itself forbids a key given twice
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", None, file)


_PARSERS = {"yaml": _load_yaml, "json": _load_json, "toml": _load_toml}
