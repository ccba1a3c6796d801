"""The public names: where they say they live, the version, what the distributions ship."""

import tomllib
from importlib import metadata
from pathlib import Path

import immp

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ["core", "plugs/demo", "plugs/irc", "hooks/sync", "hooks/commands"]


def test_public_names_print_as_immp_names():
    assert repr(immp.Host) == "<class 'immp.Host'>"
    for name in immp.__all__:
        obj = getattr(immp, name)
        module = getattr(obj, "__module__", None)
        if module is not None and module.startswith("immp"):
            assert module == "immp", name


def test_the_version_is_the_distributions():
    assert immp.__version__ == metadata.version("immp-core")


def test_every_distribution_ships_py_typed_and_plugins_pin_the_core():
    for folder in DISTRIBUTIONS:
        project = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
        [package] = (ROOT / folder / "src").iterdir()
        assert (package / "py.typed").exists(), folder
        if folder != "core":
            [core] = [d for d in project["dependencies"] if d.startswith("immp-core")]
            assert ">=" in core and "<" in core.replace("<=", ""), (folder, core)
