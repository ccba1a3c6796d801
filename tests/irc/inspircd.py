"""A real InspIRCd 3 for the IRC tests: what ngircd lacks (MONITOR, IRCv3 msgid, echo-message)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.ngircd import free_port, wait_listening

INSPIRCD = shutil.which("inspircd") or ("/usr/sbin/inspircd" if os.path.exists(
    "/usr/sbin/inspircd") else None)  # fmt: skip

# The IRCv3 modules for message IDs on every message and our own lines echoed back.
IRCV3_MODULES = ("cap", "ircv3", "ircv3_ctctags", "ircv3_msgid", "ircv3_echomessage",
                 "ircv3_servertime")  # fmt: skip


def _inspircd_config(directory: Path, port: int, modules: tuple[str, ...]) -> Path:
    """Write an InspIRCd 3 config for a test server on ``port`` (no DNS, ident or fake lag)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "motd").write_text("test server\n")
    config = directory / "inspircd.conf"
    config.write_text(
        f"""
<server name="irc.test" description="IMMP test server" network="Test">
<admin name="test" nick="test" email="test@irc.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" timeout="60" pingfreq="120" localmax="100" globalmax="100"
  maxconnwarn="off" useident="no" resolvehostnames="no" fakelag="off" threshold="1000"
  commandrate="100000" limit="100">
<files motd="{directory}/motd">
<path moduledir="/usr/lib/inspircd/modules" datadir="{directory}" logdir="{directory}"
  runtimedir="{directory}">
<pid file="{directory}/inspircd.pid">
<dns timeout="1">
<limits maxnick="30">
"""
        + "".join(f'<module name="{name}">\n' for name in modules)
    )
    return config


@contextlib.asynccontextmanager
async def inspircd(directory: Path, modules: tuple[str, ...] = ()) -> AsyncIterator[int]:
    """
    A real InspIRCd 3 with its monitor module and ``modules`` (e.g. :data:`IRCV3_MODULES`), on
    a free loopback port (yielded).
    """
    if INSPIRCD is None:
        if os.environ.get("CI"):
            pytest.fail("inspircd is not installed, and CI is set: install it (apt-get install "
                        "inspircd); .ci/run does")  # fmt: skip
        pytest.skip("inspircd is not installed (apt-get install inspircd)")
    port = free_port()
    config = _inspircd_config(directory, port, ("monitor", *modules))
    log_path = directory / "inspircd.log"
    log = log_path.open("ab")  # a local file, handed to the process
    process = await trio.lowlevel.open_process(
        [INSPIRCD, "--nofork", "--runasroot", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    log.close()
    try:
        with trio.fail_after(10):
            await wait_listening(process, port, log_path)
        yield port
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()
