"""The config tables in the READMEs and docs/config.md are generated from the schemas."""

import re
import runpy
import subprocess
import sys

import immp
from immp._config.docs import table, undocumented
from immp_demo.plug import SCHEMA

from ..conftest import ROOT

GENERATE = ROOT / "docs" / "generate.py"


def test_committed_tables_are_up_to_date_and_every_key_has_a_doc():
    result = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True,
                            text=True, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _generator() -> dict:
    return runpy.run_path(str(GENERATE), run_name="generate")


def test_a_stale_table_is_replaced_and_a_missing_one_is_added():
    render = _generator()["render"]
    text = "# x\n\n<!-- config: a -->\n| old |\n<!-- /config -->\n\nafter\n"
    new = render(text, {"a": "| new |\n", "b": "| b |\n"})
    assert new == (
        "# x\n\n<!-- config: a -->\n\n| new |\n\n<!-- /config -->\n\nafter\n\n"
        "## Config: `b`\n\n<!-- config: b -->\n\n| b |\n\n<!-- /config -->\n"
    )
    assert render(new, {"a": "| new |\n", "b": "| b |\n"}) == new


def test_the_check_fails_when_a_doc_changes(monkeypatch):
    generate = _generator()

    first = next(iter(SCHEMA.spec))
    monkeypatch.setattr(first, "doc", "a doc nobody committed")
    assert generate["main"](["--check"]) == 1


def test_table_rows_show_type_default_and_doc_of_nested_keys():
    spec = {
        immp.Required("server", doc="where"): {
            immp.Required("host", doc="the host"): str,
            immp.Optional("port", None, doc="the port", doc_default="6667"):
                immp.Nullable(immp.Range(int, 1, 65535)),
        },
        immp.Optional("tags", [], doc="labels"): [str],
        "bare": int,
    }  # fmt: skip
    assert table(spec).splitlines() == [
        "| key | type | default | what |",
        "|---|---|---|---|",
        "| `server.host` | string | required | the host |",
        "| `server.port` | int (from 1 to 65535) or null | 6667 | the port |",
        "| `tags` | list of strings | `[]` | labels |",
        "| `bare` | int | required |  |",
    ]
    assert undocumented(spec) == ["bare"]


def test_module_docstrings_point_at_the_schema_instead_of_listing_its_keys():
    # Each key is documented once, next to its schema entry; a module docstring that lists
    # them again ("port (int, default 6667): ...") goes stale when a doc= changes.
    import importlib

    from immp._config.docs import rows
    from immp.plugins import Plugins

    plugins = Plugins()
    restated = []
    for registry, kind in ((plugins.plugs, immp.Plug), (plugins.hooks, immp.Hook)):
        for name in registry:
            cls = plugins.resolve(name, kind, name)
            schema = getattr(cls, "schema", None)
            module = importlib.import_module(cls.__module__)
            if schema is None or not module.__doc__:
                continue
            for key in {row[0].strip("`").rsplit(".", 1)[-1] for row in rows(schema)}:
                if re.search(rf"^\s+{re.escape(key)} \(", module.__doc__, re.M):
                    restated.append(f"{cls.__module__}: {key}")
    assert restated == []
