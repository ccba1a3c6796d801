"""
docs/writing-plugins.md, followed as a new user would: its files written out as shown, the
package installed with pip, ``immp --plugins``, its config run with a console, its test run.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

from .console import Console

pytestmark = pytest.mark.slow

GUIDE = ROOT / "docs" / "writing-plugins.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def guide_files() -> dict[str, str]:
    """Each file of the guide's package: a code block after a line naming it in backticks."""
    text = GUIDE.read_text()
    files = {}
    for match in re.finditer(r"^`([\w./]+)`[^\n]*\n\n```\w+\n(.*?)```", text, re.S | re.M):
        files[match[1]] = match[2]
    blocks = [body for _, body in FENCE.findall(text)]
    [files["tests/test_shout.py"]] = [b for b in blocks if "def test_" in b]
    return files


def test_the_guide_names_every_file_of_its_tree():
    assert set(guide_files()) == {
        "pyproject.toml",
        "src/immp_shout/__init__.py",
        "src/immp_shout/plugin.py",
        "src/immp_shout/clock.py",
        "src/immp_shout/shout.py",
        "tests/test_shout.py",
        "shout.yaml",  # in the checkout's root, beside the package
    }


def test_the_guide_package_installs_runs_and_logs_to_a_folder_it_creates(
    tmp_path, immp_exe, clean_env
):
    checkout = tmp_path / "checkout"
    package = checkout / "immp-shout"
    for name, body in guide_files().items():
        path = (checkout if name == "shout.yaml" else package) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    # The guide's log folder is /tmp/immp-shout; a folder of this test's that does not exist
    # yet stands in for it.
    log = tmp_path / "not-yet" / "clock.log"
    config = checkout / "shout.yaml"
    config.write_text(config.read_text().replace("/tmp/immp-shout/clock.log", str(log)))
    assert yaml.safe_load(config.read_text())["plugs"]["clock"]["config"]["log"] == str(log)

    # pip as the guide says, into a folder of this test's, not the shared environment.
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(package)],
        capture_output=True, text=True, timeout=300, env=clean_env,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    env = {**clean_env, "PYTHONPATH": str(site)}

    listed = subprocess.run([immp_exe, "--plugins"], capture_output=True, text=True, env=env)
    assert "immp-shout 0.1.0\n  plugs: clock\n  hooks: shout\n" in listed.stdout

    stderr = tmp_path / "stderr"
    chat = Console(immp_exe, config, env, stderr=stderr)
    try:
        chat.type("hello there!!")
        chat.expect("HELLO THERE!!!!!")
        chat.type("!shout quiet please")
        chat.expect("QUIET PLEASE!!!")
        assert chat.stop() == 0
    finally:
        chat.kill()
    assert "Error" not in chat.stderr, chat.stderr
    logged = log.read_text()
    assert "hello there!!" in logged
    assert "QUIET PLEASE!!!" in logged

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "immp-shout/tests"],
        cwd=checkout, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
