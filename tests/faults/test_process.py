"""
A real ``immp`` process: shutdown during a burst (SIGTERM, IRC QUIT seen on ngircd), secrets
kept out of DEBUG logs, and ``-w`` killed at random moments while the config keeps changing.
"""

from __future__ import annotations

import random
import signal
import time

import pytest
import trio
import yaml

from tests.conftest import ROOT
from tests.ngircd import NgircdServer, RawClient

from .helpers import ImmpProcess

SERVER_PASSWORD = "srv-Pa55-7f3a9c"
SASL_PASSWORD = "sasl-Pa55-e1d0b2"
QUIT = "Bye from the faults suite"


def bridge_config(port: int) -> dict:
    return {
        "plugs": {
            "irc": {"path": "irc", "config": {
                "server": {"host": "127.0.0.1", "port": port, "password": SERVER_PASSWORD},
                "user": {"nick": "bot"}, "sasl": {"username": "bot", "password": SASL_PASSWORD},
                "quit": QUIT, "send-delay": 0.001, "send-burst": 50}},
            "timer": {"path": "demo", "config": {"interval": 0.002, "text": "burst"}},
        },
        "channels": {"irc-room": {"plug": "irc", "source": "#bridge"},
                     "timer-room": {"plug": "timer", "source": "dummy"}},
        "hooks": {"sync": {"path": "sync", "config": {
            "channels": {"main": ["irc-room", "timer-room"]}}}},
        "logging": {"version": 1,
                    "formatters": {"f": {"format": "%(levelname)s %(name)s: %(message)s"}},
                    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "f",
                                         "stream": "ext://sys.stderr"}},
            "root": {"level": "DEBUG", "handlers": ["err"]}},
    }  # fmt: skip


async def test_sigterm_during_a_burst_quits_politely_and_leaks_no_secret(ngircd_available,
                                                                         tmp_path, immp_exe,
                                                                         clean_env):  # fmt: skip
    async with NgircdServer.running(tmp_path / "ngircd", password=SERVER_PASSWORD) as server:
        file = tmp_path / "immp.yaml"
        file.write_text(yaml.safe_dump(bridge_config(server.port)))
        file.chmod(0o640)
        async with RawClient.connected(server.port, "alice", register=False) as alice:
            await alice.send(f"PASS {SERVER_PASSWORD}")
            await alice.register()
            await alice.join("#bridge")
            proc = ImmpProcess([immp_exe, "-w", str(file)], env=clean_env)
            try:
                await alice.expect(":bot!", "JOIN", "#bridge", timeout=20)
                await alice.collect("PRIVMSG", 20)  # the burst is flowing
                proc.proc.send_signal(signal.SIGTERM)
                start = time.monotonic()
                quit_line = await alice.expect(":bot!", " QUIT ", timeout=15)
                with trio.fail_after(15):
                    while proc.proc.poll() is None:
                        await trio.sleep(0.05)
                took = time.monotonic() - start
            finally:
                status = proc.finish(timeout=5)
    err = proc.stderr()
    assert status == 0, err[-3000:]
    assert took < 10
    assert QUIT in quit_line
    assert "INFO immp" in err  # the DEBUG logging config was applied (little logs at DEBUG)
    for secret in (SERVER_PASSWORD, SASL_PASSWORD):
        assert secret not in err
        assert secret not in "".join(proc.out)
    assert "Traceback" not in err
    # -w wrote the file back, complete, with its permission bits.
    assert file.stat().st_mode & 0o777 == 0o640
    written = yaml.safe_load(file.read_text())
    assert written["plugs"]["irc"]["config"]["server"]["password"] == SERVER_PASSWORD


def test_a_secret_in_a_broken_config_stays_out_of_the_error(tmp_path, immp_command, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump({"plugs": {"irc": {"path": "irc", "config": {
        "server": {"host": "h", "password": [SERVER_PASSWORD]}, "user": {"nick": "bot"},
        "sasl": {"username": "bot", "password": {"x": SASL_PASSWORD}}}}}}))  # fmt: skip
    for args in (["--check", str(file)], [str(file)]):
        result = immp_command(*args, env=clean_env)
        assert result.returncode == 2
        assert SERVER_PASSWORD not in result.stderr and SASL_PASSWORD not in result.stderr
        assert "value hidden" in result.stderr


def churn_config() -> dict:
    return {
        "path": [str(ROOT)],
        "plugs": {"timer": {"path": "demo", "config": {"interval": 0.01}}},
        "hooks": {"churn": {"path": "tests.faults.helpers.ConfigChurn",
                            "config": {"interval": 0.002, "n": 0}}},
    }  # fmt: skip


@pytest.mark.slow
def test_w_killed_at_random_moments_leaves_a_whole_config(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(churn_config()))
    file.chmod(0o604)
    rng = random.Random(8)
    last = 0
    kinds = []
    for _ in range(10):
        proc = ImmpProcess([immp_exe, "-w", str(file)], env=clean_env)
        proc.wait_for("Starting IMMP")
        time.sleep(rng.uniform(0.2, 0.8))
        signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
        kinds.append(signum)
        proc.proc.send_signal(signum)
        status = proc.finish(timeout=15)
        assert status == (0 if signum == signal.SIGTERM else -signal.SIGKILL), proc.stderr()
        # Always a whole file: it parses, validates, and holds a count at least the last one.
        data = yaml.safe_load(file.read_text())
        config = data["hooks"]["churn"]["config"]
        assert config["n"] >= last and config["padding"] == "x" * (config["n"] % 5000)
        assert data["plugs"]["timer"] == {"path": "demo", "config": {"interval": 0.01}}
        last = config["n"]
        assert file.stat().st_mode & 0o777 == 0o604
    assert last > 0
    assert set(kinds) == {signal.SIGTERM, signal.SIGKILL}
    check = ImmpProcess([immp_exe, "--check", str(file)], env=clean_env)
    assert check.finish() == 0, check.stderr()
