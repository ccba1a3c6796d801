"""
A corpus of broken configs (``configs/NAME``, the expected error in ``configs/NAME.expected``),
each run through the real ``immp`` and ``immp --check``: one line naming the file and the key,
exit status 2, no traceback, nothing on stdout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "configs"
CORPUS = sorted(p for p in CONFIGS.iterdir() if p.suffix != ".expected")


def test_every_config_has_its_expected_error():
    assert len(CORPUS) >= 20
    for path in CORPUS:
        assert path.with_name(path.name + ".expected").exists(), path.name


@pytest.mark.parametrize("mode", ["check", "run"])
@pytest.mark.parametrize("config", CORPUS, ids=lambda p: p.name)
def test_a_broken_config_gives_one_line_and_exit_2(config, mode, tmp_path, immp_command,
                                                   clean_env):  # fmt: skip
    path = tmp_path / config.name
    shutil.copyfile(config, path)
    expected = config.with_name(config.name + ".expected").read_text().strip()
    args = ["--check", str(path)] if mode == "check" else [str(path)]
    result = immp_command(*args, env=clean_env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"immp: error: {path}: {expected}\n"
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
