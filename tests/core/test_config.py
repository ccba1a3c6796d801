"""Config files: formats, validation before anything connects, write-back."""

import json
import os
import stat
import tomllib

import pytest
import yaml

import immp
from immp import ConfigError, build_host, dump_config, load_file, write_config

DEMO = {
    "plugs": {"one": {"path": "demo", "config": {"interval": None}},
              "two": {"path": "immp.plug.dummy.DummyPlug", "enabled": False}},
    "channels": {"main": {"plug": "one", "source": 12345}},
    "groups": {"everywhere": {"anywhere": ["one", "two"], "exclude": ["main"]}},
    "hooks": {},
    "custom": {"kept": True},
}  # fmt: skip


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json", ".toml"])
def test_every_format_loads_to_the_same_host(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    write_config(path, DEMO)
    host = build_host(load_file(path), file=str(path))
    assert list(host.plugs) == ["one", "two"]
    assert host.channels["main"].source == "12345"
    assert host.plugs["two"].open_state is immp.OpenState.disabled
    assert type(host.plugs["two"]).__name__ == "DemoPlug"  # the original IMMP path maps


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("plugs: [\n", ".yaml", "config.yaml: line 2, column 1: invalid YAML"),
        ('{"plugs": }', ".json", "config.json: line 1, column 11: invalid JSON"),
        ("[plugs\n", ".toml", "config.toml: invalid TOML"),
        ("- a\n- b\n", ".yaml", "config.yaml: the top level must be a mapping, not a list"),
        ("x: 1", ".ini", "unknown config format '.ini'"),
    ],
)
def test_syntax_errors_name_the_file_and_line(tmp_path, text, suffix, message):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config: No such file"):
        load_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"plugs": {"one": {"path": "nope"}}}, "plugs.one.path", "unknown plug 'nope' (installed:"),
        (
            {"plugs": {"one": {"path": "no.such.Module"}}},
            "plugs.one.path",
            "cannot import 'no.such.Module': no module named 'no'",
        ),
        (
            {"plugs": {"one": {"path": "demo", "config": {"interval": "often"}}}},
            "plugs.one.config.interval",
            "expected a number",
        ),
        (
            {"plugs": {"one": {"path": "demo", "config": {"interval": -1}}}},
            "plugs.one.config.interval",
            "must be positive",
        ),
        (
            {"channels": {"main": {"plug": "three", "source": "x"}}},
            "channels.main.plug",
            "no plug named 'three'",
        ),
        (
            {"channels": {"one": {"plug": "one", "source": "x"}}},
            "channels.one",
            "name 'one' is used by both plugs.one and channels.one",
        ),
        (
            {"groups": {"g": {"channels": ["lobby"]}}},
            "groups.g.channels[0]",
            "no channel named 'lobby'",
        ),
        ({"hooks": {"h": {"path": "demo"}}}, "hooks.h.path", "unknown hook 'demo'"),
        ({"hooks": {"h": {"path": "immp_demo.DemoPlug"}}}, "hooks.h.path", "is not a Hook class"),
        (
            {"hooks": {"h": {"path": "x", "priority": "high"}}},
            "hooks.h.priority",
            "expected an integer, got 'high'",
        ),
        ({"plugs": {"one": {"config": {}}}}, "plugs.one", "missing required key 'path'"),
    ],
)
def test_validation_errors_name_the_exact_key(change, path, message):
    data = json.loads(json.dumps(DEMO))
    for section, items in change.items():
        data[section].update(items)
    with pytest.raises(ConfigError) as info:
        build_host(data, file="demo.yaml")
    assert info.value.path == path, str(info.value)
    assert message in info.value.message
    assert str(info.value).startswith(f"demo.yaml: {path}: ")


def test_dump_keeps_what_the_user_wrote_and_extra_keys():
    host = build_host(json.loads(json.dumps(DEMO)))
    dumped = dump_config(host)
    assert dumped["plugs"]["one"] == {"path": "demo", "config": {"interval": None}}
    assert dumped["plugs"]["two"] == {"path": "immp.plug.dummy.DummyPlug", "enabled": False}
    assert dumped["groups"]["everywhere"] == {"anywhere": ["one", "two"], "exclude": ["main"]}
    assert dumped["custom"] == {"kept": True}
    # Reloading what was written gives the same host.
    again = dump_config(build_host(dumped))
    assert again == dumped


def test_runtime_changes_appear_in_the_dump():
    host = build_host(json.loads(json.dumps(DEMO)))
    host.plugs["one"].config["text"] = "changed at runtime"
    host.add_channel("extra", immp.Channel(host.plugs["two"], "room"))
    dumped = dump_config(host)
    assert dumped["plugs"]["one"]["config"]["text"] == "changed at runtime"
    assert dumped["channels"]["extra"] == {"plug": "two", "source": "room"}


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_write_is_atomic_and_keeps_permission_bits(tmp_path, suffix):
    path = tmp_path / f"config{suffix}"
    path.write_text("")
    os.chmod(path, 0o640)
    write_config(path, DEMO)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    text = path.read_text()
    loaded = {".yaml": yaml.safe_load, ".json": json.loads, ".toml": tomllib.loads}[suffix](text)
    assert loaded["plugs"]["one"]["path"] == "demo"
    assert loaded["custom"] == {"kept": True}


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("old: content\n")

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_config(path, DEMO)
    assert path.read_text() == "old: content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
