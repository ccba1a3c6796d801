"""What running IMMP as a service relies on: ``--version``, the startup line, JSON log lines."""

from __future__ import annotations

import json
import logging
import signal
import sys
import textwrap
import time
from importlib import metadata

import immp

from .test_runner import Process, write

CONFIG = """\
plugs:
  timer: {path: demo, config: {interval: 0.05, text: tick}}
  other: {path: demo, config: {interval: null}}
channels:
  a: {plug: timer, source: dummy}
  b: {plug: other, source: dummy}
hooks:
  sync: {path: sync, config: {channels: {both: [a, b]}}}
"""


def test_version_names_the_core_version(immp_command):
    result = immp_command("--version")
    assert result.returncode == 0
    assert result.stdout == f"immp {metadata.version('immp-core')}\n"


def test_the_startup_line_names_every_distribution_in_use_and_no_other(tmp_path, immp_exe):
    proc = Process(immp_exe, str(write(tmp_path / "c.yaml", CONFIG)))
    proc.wait_for("Starting IMMP")
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert status == 0, err
    [line] = [line for line in err.splitlines() if "Starting IMMP" in line]
    used = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("immp-core", "immp-hook-sync", "immp-plug-demo")
    )
    assert line.endswith(f"(2 plugs, 1 hook; {used})"), line
    assert "immp-plug-irc" not in line and "immp-hook-commands" not in line


def test_log_format_json_writes_one_json_object_per_line(tmp_path, immp_exe):
    proc = Process(immp_exe, "--log-format", "json", str(write(tmp_path / "c.yaml", CONFIG)))
    proc.wait_for("Starting IMMP")
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert status == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert [r["message"] for r in records][-1] == "Stopped"
    start = next(r for r in records if r["message"].startswith("Starting IMMP"))
    assert set(start) == {"time", "level", "logger", "message"}
    assert (start["level"], start["logger"]) == ("INFO", "immp.runner")
    assert start["time"].endswith("+00:00") and "T" in start["time"]


def test_log_format_json_applies_to_the_handlers_of_a_logging_section(tmp_path, immp_exe):
    log = tmp_path / "immp.log"
    logging_section = f"""\
    logging:
      version: 1
      formatters: {{plain: {{format: "%(message)s"}}}}
      handlers:
        file: {{class: logging.FileHandler, filename: {log}, formatter: plain}}
      root: {{level: INFO, handlers: [file]}}
    """
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + textwrap.dedent(logging_section))
    proc = Process(immp_exe, "--log-format", "json", str(path))
    deadline = time.monotonic() + 15  # the lines go to the file, not to stderr
    while "Starting IMMP" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "no startup line in the log file"
        time.sleep(0.1)
    proc.signal(signal.SIGTERM)
    status, err = proc.finish()
    assert status == 0, err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["message"].startswith("Starting IMMP") for r in records)


def test_a_traceback_stays_inside_one_json_line():
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record = logging.LogRecord("immp.x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    line = immp.JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: two\nlines" in json.loads(line)["exception"]
