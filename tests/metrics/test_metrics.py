"""
The metrics hook in a real ``immp`` process bridging two real ngircd servers: /metrics after
traffic, /health while everything is up, when one server is stopped, and when it is back.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.helpers import ImmpProcess
from tests.irc.conftest import plug_config
from tests.ngircd import NgircdServer, RawClient, free_port, parse_privmsg

pytestmark = pytest.mark.slow


def write_config(folder: Path, port1: int, port2: int, listen: str) -> Path:
    irc = {"send-delay": 0.01, "reconnect-delay": 0.5, "reconnect-max": 1}
    config = {
        "plugs": {
            "net1": {"path": "irc", "config": plug_config(port1, **irc)},
            "net2": {"path": "irc", "config": plug_config(port2, **irc)},
        },
        "channels": {
            "one": {"plug": "net1", "source": "#bridge"},
            "two": {"plug": "net2", "source": "#bridge"},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"main": ["one", "two"]}}},
            "metrics": {"path": "metrics", "config": {"listen": listen}},
        },
    }
    path = folder / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read().decode()
    except urllib.error.URLError as exc:  # nothing listening (yet, or any more)
        return 0, "", str(exc.reason)


async def get(url: str) -> tuple[int, str, str]:
    """``(status, content type, body)`` of a GET, from a thread (urllib blocks)."""
    return await trio.to_thread.run_sync(_get, url)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a /metrics body: ``(name, sorted labels) -> value``."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def logged(proc: ImmpProcess, text: str, timeout: float = 30) -> str:
    """The first line of the process's stderr so far with ``text`` in it, once there is one."""
    with trio.fail_after(timeout):
        while True:
            for line in list(proc.err):
                if text in line:
                    return line
            await trio.sleep(0.1)


def moved_since(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def wait_health(base: str, status: int, timeout: float = 40) -> dict:
    with trio.fail_after(timeout):
        while True:
            code, ctype, body = await get(f"{base}/health")
            if code == status:
                assert ctype == "application/json"
                return json.loads(body)
            await trio.sleep(0.2)


async def test_metrics_count_exactly_what_was_sent_and_health_follows_a_server(
    server, tmp_path, immp_exe, clean_env
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        NgircdServer.running(tmp_path / "ngircd2") as server2,
        RawClient.connected(server.port, "alice") as alice,
        RawClient.connected(server2.port, "bob") as bob,
    ):
        await alice.join("#bridge")
        await bob.join("#bridge")
        config = write_config(tmp_path, server.port, server2.port, f"127.0.0.1:{port}")
        proc = ImmpProcess([immp_exe, str(config)], env=clean_env)
        try:
            await alice.expect(":bot!", "JOIN", "#bridge", timeout=30)
            await bob.expect(":bot", "JOIN", "#bridge", timeout=30)
            assert await wait_health(base, 200) == {"status": "ok", "plugs": 2, "hooks": 2}

            code, ctype, body = await get(f"{base}/metrics")
            assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
            before = samples(body)
            assert value(before, "immp_plug_up", plug="net1") == 1
            assert value(before, "immp_plug_up", plug="net2") == 1

            for n in range(5):
                await alice.privmsg("#bridge", f"hello {n}")
            copies = [parse_privmsg(line)[2] for line in await bob.collect("PRIVMSG", 5)]
            assert copies == [f"<alice> hello {n}" for n in range(5)]
            for n in range(3):
                await bob.privmsg("#bridge", f"back {n}")
            await alice.collect("PRIVMSG", 3)

            # The counters move once the sends returned, a moment after the lines arrived.
            with trio.fail_after(20):
                while True:
                    after = samples((await get(f"{base}/metrics"))[2])
                    sent = value(after, "immp_messages_sent_total", plug="net1")
                    if sent >= value(before, "immp_messages_sent_total", plug="net1") + 3:
                        break
                    await trio.sleep(0.1)
            await trio.sleep(0.5)  # anything more that were to come, would come now
            after = samples((await get(f"{base}/metrics"))[2])

            def moved(name, **labels):
                return value(after, name, **labels) - value(before, name, **labels)

            # Received is what each network's users said plus the bridge's own copies to it,
            # which come back as the plug's echoes (README: "what the message counters
            # count"); sent is exactly the copies.
            assert moved("immp_messages_sent_total", plug="net2") == 5
            assert moved("immp_messages_sent_total", plug="net1") == 3
            assert moved("immp_messages_received_total", plug="net1") == 5 + 3
            assert moved("immp_messages_received_total", plug="net2") == 3 + 5
            assert moved("immp_send_failures_total", plug="net1") == 0
            assert moved("immp_send_failures_total", plug="net2") == 0
            assert value(after, "immp_relay_latency_seconds_count", plug="net2") == 5
            assert value(after, "immp_relay_latency_seconds_count", plug="net1") == 3
            assert 0 < value(after, "immp_relay_latency_seconds_sum", plug="net2") < 5
            assert value(after, "immp_messages_dropped_total", hook="sync") == 0
            assert value(after, "immp_hook_queue_depth", hook="sync") == 0
            assert value(after, "immp_sync_target_queue_depth", hook="sync", target="two") == 0
            assert value(after, "immp_sync_target_dropped_total", hook="sync", target="two") == 0

            # One server goes away: /health says which plug and why.
            await server2.stop()
            unhealthy = await wait_health(base, 503)
            assert unhealthy["status"] == "unhealthy"
            [reason] = unhealthy["reasons"]
            assert reason.startswith("plug net2 is not connected: "), reason
            down = samples((await get(f"{base}/metrics"))[2])
            assert value(down, "immp_plug_up", plug="net2") == 0
            assert value(down, "immp_plug_up", plug="net1") == 1

            # A copy for the network that is down: the IRC plug queues it, and it counts as
            # sent (and its latency as observed) now, while nothing can be written.
            await alice.privmsg("#bridge", "while away")
            with trio.fail_after(20):
                while True:
                    queued = samples((await get(f"{base}/metrics"))[2])
                    if value(queued, "immp_messages_sent_total", plug="net2") > value(
                        after, "immp_messages_sent_total", plug="net2"
                    ):
                        break
                    await trio.sleep(0.1)
            assert value(queued, "immp_plug_up", plug="net2") == 0
            assert moved_since(after, queued, "immp_messages_sent_total", plug="net2") == 1
            assert moved_since(after, queued, "immp_relay_latency_seconds_count", plug="net2") == 1
            assert moved_since(after, queued, "immp_send_failures_total", plug="net2") == 0

            # Back: the plug reconnects by itself, and /health is 200 again. The queued line
            # is written now, and does not count again.
            await server2.start()
            assert (await wait_health(base, 200))["status"] == "ok"
            back = await logged(proc, "Back on ")
            assert back.rstrip().endswith("sending 1 queued line"), back
            await trio.sleep(0.5)
            again = samples((await get(f"{base}/metrics"))[2])
            assert moved_since(queued, again, "immp_messages_sent_total", plug="net2") == 0
            assert moved_since(queued, again, "immp_relay_latency_seconds_count", plug="net2") == 0

            proc.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(proc.finish) == 0, proc.stderr()
        finally:
            if proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()


async def test_unknown_paths_and_methods(tmp_path, immp_exe, clean_env):
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "plugs": {"demo": {"path": "demo", "config": {"interval": None}}},
        "hooks": {"metrics": {"path": "metrics", "config": {"listen": f"127.0.0.1:{port}"}}},
    }))  # fmt: skip
    proc = ImmpProcess([immp_exe, str(config)], env=clean_env)
    try:
        with trio.fail_after(30):
            while (await get(f"http://127.0.0.1:{port}/health"))[0] != 200:
                await trio.sleep(0.2)
        assert (await get(f"http://127.0.0.1:{port}/nope"))[0] == 404

        def post() -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", b"x")
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert await trio.to_thread.run_sync(post) == 405
        proc.proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.finish) == 0, proc.stderr()
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


def test_a_bad_listen_value_is_a_config_error(tmp_path, immp_command):
    config = tmp_path / "c.yaml"
    config.write_text("hooks: {metrics: {path: metrics, config: {listen: '9464'}}}\n")
    result = immp_command("--check", str(config))
    assert result.returncode == 2
    assert "hooks.metrics.config.listen" in result.stderr and "HOST:PORT" in result.stderr


async def test_port_0_logs_the_bound_port_and_a_taken_port_names_key_and_address(
    tmp_path, immp_exe, clean_env
):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "plugs": {"demo": {"path": "demo", "config": {"interval": None}}},
        "hooks": {
            "metrics": {"path": "metrics", "config": {"listen": "localhost:0"}},
            "blocked": {"path": "metrics", "config": {"listen": f"127.0.0.1:{port}"}},
            "spare": {"path": "metrics", "enabled": False},
        },
        # The hook says where it listens at INFO (production.md's logging section).
        "logging": {
            "version": 1,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "loggers": {"immp_metrics": {"level": "INFO"}},
            "root": {"level": "WARNING", "handlers": ["err"]},
        },
    }))  # fmt: skip
    proc = ImmpProcess([immp_exe, str(config)], env=clean_env)
    try:
        with taken:
            # Both open at once: either line may come first.
            failed = await logged(proc, "Failed to open hook blocked")
            assert failed.rstrip().endswith(
                "ConfigError: hooks.blocked.config.listen: "
                f"cannot listen on 127.0.0.1:{port}: address already in use"
            ), failed
            opened = await logged(proc, "Metrics on http://")
            match = re.fullmatch(
                r"INFO immp_metrics.hook: Metrics on http://(127\.0\.0\.1):(\d+)"
                r"/metrics, health on /health\n",
                opened,
            )
            assert match and int(match[2]) != 0, opened
            base = f"http://{match[1]}:{match[2]}"
            found = samples((await get(f"{base}/metrics"))[2])
            assert value(found, "immp_hook_up", hook="metrics") == 1
            assert value(found, "immp_hook_up", hook="blocked") == 0
            assert ("immp_hook_up", (("hook", "spare"),)) not in found
            code, _, body = await get(f"{base}/health")
            assert code == 503 and json.loads(body)["reasons"] == ["hook blocked failed"]
        proc.proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.finish) == 0, proc.stderr()
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


# docs/production.md's logging section, as an operator copies it.
PRODUCTION_LOGGING = {
    "version": 1,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"journal": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"immp": {"level": "INFO"}, "immp_irc": {"level": "INFO"}},
    "root": {"level": "WARNING", "handlers": ["journal"]},
}


@pytest.mark.parametrize("logging_section", [None, PRODUCTION_LOGGING],
                         ids=["default", "production.md"])  # fmt: skip
async def test_the_address_is_logged_once_with_the_startup_lines(
    logging_section, tmp_path, immp_exe, clean_env
):
    config = {
        "plugs": {"demo": {"path": "demo", "config": {"interval": None}}},
        "hooks": {"metrics": {"path": "metrics", "config": {"listen": "localhost:0"}}},
    }
    if logging_section is not None:
        config["logging"] = logging_section
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = ImmpProcess([immp_exe, str(path)], env=clean_env)
    try:
        # Port 0: this line is the only way to learn where to look.
        opened = await logged(proc, "Metrics on http://")
        match = re.search(r"INFO immp\.runner\.metrics: Metrics on (http://[^/ ]+)/metrics"
                          r"(?: and \S+)*, health on /health$", opened.rstrip())  # fmt: skip
        assert match and not match[1].endswith(":0"), opened
        code, _, body = await get(f"{match[1]}/health")
        assert (code, json.loads(body)["status"]) == (200, "ok")
        proc.proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(proc.finish) == 0, proc.stderr()
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
    err = proc.stderr()
    assert err.count("Metrics on http://") == 1, err
    if logging_section is None:
        # Not noisy: at INFO the runner's own lines and this one only (no hook opening, no
        # "Ready").
        info = [line for line in err.splitlines() if " INFO " in line]
        assert [line for line in info if " INFO immp.runner: " not in line] == [opened.rstrip()]
