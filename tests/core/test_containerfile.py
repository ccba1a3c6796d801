"""
The Containerfile's install step, run as written (outside a container: no container engine is
needed), into a fresh virtual environment: it installs immp-core and the picked distributions,
refuses a folder that is not one, and gives an ``immp`` that lists them.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CONTAINERFILE = (ROOT / "Containerfile").read_text()


def install_step() -> str:
    [step] = [line[4:] for line in CONTAINERFILE.splitlines() if "pip install" in line]
    assert step.startswith("set -e;")
    return step


def run_install(tmp_path, distributions: str) -> subprocess.CompletedProcess:
    venv = tmp_path / "venv"
    script = (
        install_step()
        .replace("/opt/immp", str(venv))
        .replace("python -m venv", f"{sys.executable} -m venv")
    )
    return subprocess.run(["sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={"DISTRIBUTIONS": distributions, "PATH": "/usr/bin:/bin",
                                            "HOME": str(tmp_path)})  # fmt: skip


def test_the_default_distributions_are_folders_of_this_repository():
    [default] = re.findall(r'^ARG DISTRIBUTIONS="([^"]*)"', CONTAINERFILE, re.M)
    for folder in default.split():
        assert (ROOT / folder / "pyproject.toml").exists(), folder


def test_a_folder_that_is_not_a_distribution_stops_the_build(tmp_path):
    result = run_install(tmp_path, "hooks/sync hooks/nope")
    assert result.returncode == 1
    assert "DISTRIBUTIONS: no distribution in hooks/nope" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow
def test_the_install_step_installs_core_and_the_picked_distributions(tmp_path):
    result = run_install(tmp_path, "plugs/demo hooks/metrics")
    assert result.returncode == 0, result.stderr[-3000:]
    # The step ends with `immp --plugins`: exactly what was picked is there.
    assert "immp-hook-metrics 0.1.0\n  hooks: metrics\n" in result.stdout
    assert "immp-plug-demo 0.1.0\n  plugs: demo\n" in result.stdout
    assert "immp-plug-irc" not in result.stdout and "immp-hook-sync" not in result.stdout
    version = subprocess.run([tmp_path / "venv" / "bin" / "immp", "--version"],
                             capture_output=True, text=True)  # fmt: skip
    assert version.stdout.startswith("immp 0.1")
