"""Schema warnings: one line at --check and at start, for legal values that look wrong."""

import signal
import subprocess

import yaml

from immp import ConfigWarning, build_host

from ..conftest import ROOT

CONFIG = {
    "path": [str(ROOT)],
    "plugs": {"p": {"path": "tests.core.config_plugs.WarningPlug", "config": {"size": 3}}},
    "channels": {"good": {"plug": "p", "source": "#room"}, "bad": {"plug": "p", "source": "room"}},
}


def test_build_host_hands_each_warning_once_to_the_sink():
    seen: list[ConfigWarning] = []
    host = build_host(CONFIG, file="c.yaml", warn=seen.append)
    assert sorted(str(w) for w in seen) == [
        "c.yaml: channels.bad.source: no '#': this is a private chat",
        "c.yaml: plugs.p.config.size: size is odd",
    ]
    assert host.channels["bad"].source == "room"  # kept: a warning is not an error


def test_check_prints_warnings_as_one_line_each_and_passes(tmp_path, immp_command, clean_env):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    result = immp_command("--check", str(path), env=clean_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK (1 plug, 2 channels, 0 groups, 0 hooks)\n"
    assert sorted(result.stderr.splitlines()) == [
        f"immp: warning: {path}: channels.bad.source: no '#': this is a private chat",
        f"immp: warning: {path}: plugs.p.config.size: size is odd",
    ]


def test_start_prints_the_same_warnings_and_runs(tmp_path, immp_exe, clean_env):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "store": "memory"}))
    proc = subprocess.Popen([immp_exe, str(path)], stderr=subprocess.PIPE, text=True,
                            env=clean_env)  # fmt: skip
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "Starting IMMP" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, lines + rest.splitlines()
    warnings = sorted(line for line in lines if line.startswith("immp: warning:"))
    assert warnings == [
        f"immp: warning: {path}: channels.bad.source: no '#': this is a private chat",
        f"immp: warning: {path}: plugs.p.config.size: size is odd",
    ]
