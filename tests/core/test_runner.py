"""The ``immp`` command, run as a real subprocess on real files."""

import os
import queue
import signal
import stat
import subprocess
import textwrap
import threading
import time

import pytest
import yaml


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


class Process:
    """A running ``immp`` whose stderr is read by a thread, so that waits can time out."""

    def __init__(self, immp_exe, *args, env=None):
        self.proc = subprocess.Popen(
            [immp_exe, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text, timeout=15):
        """Wait for a stderr line containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not seen in: {''.join(self.seen)}")

    def signal(self, signum):
        self.proc.send_signal(signum)

    def finish(self, timeout=15):
        """Wait for exit; returns (exit status, all of stderr)."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        while (line := self.lines.get(timeout=5)) is not None:
            self.seen.append(line)
        return self.proc.returncode, "".join(self.seen)


DEMO = """\
    # a comment that -w will not keep
    plugs:
      timer:
        path: demo
        config: {interval: 0.05, text: tick}
    channels:
      main: {plug: timer, source: dummy}
"""


def test_check_accepts_a_valid_config(tmp_path, immp_command):
    result = immp_command("--check", str(write(tmp_path / "c.yaml", DEMO)))
    assert result.returncode == 0
    assert result.stdout.strip().endswith("OK (1 plug, 1 channel, 0 groups, 0 hooks)")


def test_a_config_error_is_one_line_exit_2_and_no_traceback(tmp_path, immp_command):
    path = write(
        tmp_path / "bad.yaml",
        """\
        plugs: {timer: {path: demo}}
        hooks: {sync: {path: immp.Hook, priority: first}}
    """,
    )
    for args in (["--check", str(path)], [str(path)]):
        result = immp_command(*args)
        assert result.returncode == 2
        assert result.stderr == (
            f"immp: error: {path}: hooks.sync.priority: expected an integer, got 'first' (str)\n"
        )


def test_a_missing_file_and_no_file_are_usage_errors(tmp_path, immp_command):
    result = immp_command(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config" in result.stderr
    assert "Traceback" not in result.stderr
    assert immp_command().returncode == 2


def test_runs_until_sigterm_then_exits_0_without_touching_the_file(tmp_path, immp_exe):
    path = write(tmp_path / "c.yaml", DEMO)
    before = path.read_text()
    proc = Process(immp_exe, str(path))
    proc.wait_for("Starting IMMP")
    time.sleep(0.3)
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert status == 0, err
    assert "Stopped" in err
    assert path.read_text() == before


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_sigint_stops_cleanly_even_during_start_up(tmp_path, immp_exe, delay):
    proc = Process(immp_exe, str(write(tmp_path / "c.yaml", DEMO)))
    proc.wait_for("Starting IMMP")
    time.sleep(delay)
    proc.signal(signal.SIGINT)
    status, err = proc.finish()
    assert status == 0 and "Traceback" not in err


def test_write_back_regenerates_the_file_and_keeps_permissions(tmp_path, immp_exe):
    path = write(tmp_path / "c.yaml", DEMO)
    os.chmod(path, 0o600)
    proc = Process(immp_exe, "-w", str(path))
    proc.wait_for("Starting IMMP")
    proc.signal(signal.SIGTERM)
    status, _ = proc.finish()
    assert status == 0
    text = path.read_text()
    assert "comment" not in text
    assert yaml.safe_load(text)["plugs"]["timer"] == {
        "path": "demo",
        "config": {"interval": 0.05, "text": "tick"},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_back_clears_temp_files_a_killed_write_left(tmp_path, immp_exe):
    path = write(tmp_path / "c.yaml", DEMO)
    leftover = tmp_path / ".c.yaml.k3j2l1.tmp"
    leftover.write_text("plugs: {half")
    unrelated = tmp_path / ".other.yaml.x.tmp"
    unrelated.write_text("")
    proc = Process(immp_exe, "-w", str(path))
    proc.wait_for("Starting IMMP")
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert "Removed" in err and "cut off" in err
    assert status == 0, err
    assert not leftover.exists() and unrelated.exists()
    # (c.db is the default store, beside the config, and c.db.c.lock its namespace's lock)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.yaml.x.tmp", "c.db", "c.db.c.lock", "c.yaml"
    ]  # fmt: skip


SLOW_CLOSE = """\
import trio, immp

class SlowClose(immp.Hook):
    async def close(self):
        await trio.sleep(60)
"""


def test_a_second_signal_exits_at_once(tmp_path, immp_exe):
    (tmp_path / "slowclose.py").write_text(SLOW_CLOSE)
    path = write(
        tmp_path / "c.yaml",
        f"""\
        path: [{tmp_path}]
        host: {{close-timeout: 60}}
        plugs: {{timer: {{path: demo}}}}
        hooks: {{slow: {{path: slowclose.SlowClose}}}}
    """,
    )
    proc = Process(immp_exe, str(path))
    proc.wait_for("Starting IMMP")
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    proc.wait_for("shutting down")
    proc.signal(signal.SIGTERM)
    status, err = proc.finish(timeout=10)
    assert status == 128 + signal.SIGTERM, err
    assert "exiting at once" in err


LOGGING = """\
logging:
  version: 1
  filters:
    local:
      (): __main__.LocalFilter
  formatters:
    simple:
      format: "[%(asctime)s %(levelname)-5.5s %(name)s] %(message)s"
      datefmt: "%d/%m/%Y %H:%M:%S"
  handlers:
    console:
      class: logging.StreamHandler
      filters: [local]
      formatter: simple
  root:
    level: DEBUG
    handlers: [console]
"""


def test_logging_section_with_the_seeds_local_filter(tmp_path, immp_exe):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(DEMO) + LOGGING)
    proc = Process(immp_exe, str(path))
    proc.wait_for("Opened plug timer")
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert status == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("[") for line in lines), err
    assert any("DEBUG immp" in line or "INFO  immp" in line for line in lines)
    # The filter lets through IMMP's own records only.
    sources = {line.split("] ")[0].split()[-1].split(".")[0] for line in lines}
    assert sources <= {"immp", "immp_demo"}


def test_a_broken_logging_section_is_a_config_error(tmp_path, immp_command):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(DEMO) + "logging: {version: 1, handlers: {x: {class: nope}}}\n")
    for args in ([str(path)], ["--check", str(path)]):
        result = immp_command(*args)
        assert result.returncode == 2
        assert result.stderr.startswith(f"immp: error: {path}: logging: ")
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_json_and_toml_configs_run(tmp_path, immp_command, suffix):
    text = (
        '{"plugs": {"d": {"path": "demo"}}}' if suffix == ".json" else '[plugs.d]\npath = "demo"\n'
    )
    result = immp_command("--check", str(write(tmp_path / f"c{suffix}", text)))
    assert result.returncode == 0, result.stderr
