"""
``hatch run docs``: write the config tables of every distribution's README.md, and of
docs/config.md, from the schemas (each key's ``doc=``). ``hatch run docs --check`` changes
nothing and exits 1 naming each table that is out of date or key that has no ``doc``.

A README gets one table per plug, hook or store its distribution registers, between
``<!-- config: NAME -->`` and ``<!-- /config -->``; a README without those markers gets a
``## Config`` section at its end. Every folder under plugs/, hooks/ and stores/ with a
pyproject.toml is a distribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
import tomllib
from pathlib import Path

from immp._config.docs import table, undocumented
from immp._config.sections import TABLES
from immp.plugins import Plugins

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("plugs", "hooks", "stores")
MARKED = re.compile(r"(<!-- config: (?P<name>[\w.-]+) -->\n).*?(<!-- /config -->)", re.S)


def schemas_of(distribution: str, plugins: Plugins) -> dict[str, object]:
    """The schema of each name (with one) that an installed distribution registers."""
    entry = next((e for e in plugins.distributions if e.distribution == distribution), None)
    if entry is None:
        raise SystemExit(f"{distribution} is not installed (run this under hatch)")
    found = {}
    for field in dataclasses.fields(entry):
        names = getattr(entry, field.name)
        registry = getattr(plugins, field.name, None)  # plugs, hooks (and stores, ...)
        if not isinstance(names, list) or not isinstance(registry, dict):
            continue
        for name in names:
            cls = registry[name]
            if isinstance(cls, str):
                module, _, attr = cls.rpartition(".")
                cls = getattr(importlib.import_module(module), attr)
            if getattr(cls, "schema", None) is not None:
                found[name] = cls.schema
    return found


def render(text: str, tables: dict[str, str]) -> str:
    """``text`` with each marked table replaced, and a section added for each unmarked one."""
    missing = dict(tables)

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in tables:
            return match[0]
        missing.pop(name, None)
        return f"{match[1]}\n{tables[name]}\n{match[3]}"

    text = MARKED.sub(replace, text)
    for name, body in missing.items():
        text = (
            text.rstrip("\n")
            + f"\n\n## Config: `{name}`\n\n<!-- config: {name} -->\n\n{body}\n<!-- /config -->\n"
        )
    return text


def targets(root: Path) -> list[tuple[Path, dict[str, object]]]:
    """Each file to write and the schemas whose tables go into it."""
    plugins = Plugins()
    found = [(root / "docs" / "config.md", dict(TABLES))]
    for folder in FOLDERS:
        for project in sorted((root / folder).glob("*/pyproject.toml")):
            name = tomllib.loads(project.read_text())["project"]["name"]
            found.append((project.parent / "README.md", schemas_of(name, plugins)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    problems = []
    for path, schemas in targets(ROOT):
        where = path.relative_to(ROOT)
        for name, schema in schemas.items():
            problems += [
                f"{where}: {name}: key {key!r} has no doc=" for key in undocumented(schema)
            ]
        old = path.read_text() if path.exists() else ""
        new = render(old, {name: table(schema) for name, schema in schemas.items()})
        if new == old:
            continue
        if args.check:
            problems.append(f"{where}: config tables out of date (run `hatch run docs`)")
        else:
            path.write_text(new)
            print(f"wrote {where}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
