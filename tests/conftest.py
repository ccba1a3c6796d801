"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def immp_command():
    """Run the real ``immp`` console script as a subprocess: ``immp_command(*args, **kw)``."""

    def run(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_immp_exe(), *args], capture_output=True, text=True, timeout=timeout, **kwargs
        )

    return run


def _immp_exe() -> str:
    exe = Path(sys.executable).parent / "immp"
    return str(exe) if exe.exists() else "immp"


@pytest.fixture
def immp_exe() -> str:
    """Path of the installed ``immp`` console script."""
    return _immp_exe()


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for subprocesses, without anything that changes Python's output."""
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return env
