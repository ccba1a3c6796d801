"""
How a connection that fails says so: one short line per kind of failure, against real listeners
on loopback (nothing listening, a real HTTP server, a socket with an SSH banner, a silent one),
and the reconnect backoff and the end of an outage against a real ngircd that is stopped and
started again.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from functools import partial

import pytest
import trio

import immp
from immp_irc.connection import CONNECT_RETRY_MAX
from tests.ngircd import RawClient, free_port

from .conftest import irc_host, plug_config


def _failures(caplog) -> list[str]:
    """The plug's lines that say an attempt failed (each ends with when it retries)."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("immp_irc") and "retrying in" in r.getMessage()]  # fmt: skip


async def _first_failure(caplog, timeout: float = 15.0) -> str:
    with trio.fail_after(timeout):
        while not _failures(caplog):
            await trio.sleep(0.02)
    return _failures(caplog)[0]


def _back(caplog) -> list[logging.LogRecord]:
    """The plug's records that say the link is up again after failures."""
    return [r for r in caplog.records if r.name.startswith("immp_irc")
            and re.match(r"Back on |Connected to \S+ after ", r.getMessage())]  # fmt: skip


async def _until(check, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="immp_irc")
    return caplog


async def test_nothing_listening_reads_could_not_connect(logs):
    port = free_port()
    async with irc_host(plug_config(port), channels=()) as (_, plug, _):
        line = await _first_failure(logs)
        assert plug.connection.registrations == 0
    assert re.fullmatch(rf"Could not connect to 127\.0\.0\.1:{port} \(connection refused\); "
                        r"retrying in \d+\.\ds", line), line  # fmt: skip


async def test_an_http_server_reads_not_an_irc_server_with_what_it_sent(logs, tmp_path):
    port = free_port()
    http = await trio.lowlevel.open_process(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with trio.fail_after(20):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        # What this HTTP server answers to a client's first IRC line, as the plug sends it.
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"CAP LS 302\r\n")
        answer = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(4096):
                answer += chunk
        await stream.aclose()
        assert b"400" in answer
        async with irc_host(plug_config(port), channels=()):
            line = await _first_failure(logs)
    finally:
        http.kill()
        await http.wait()
    shown = repr(answer[:48])[1:]  # escaped: '<!DOCTYPE HTML>\n<html...' (or an HTTP/1.0 line)
    assert line.startswith(f"127.0.0.1:{port} is not an IRC server (it sent {shown}...); "), line
    assert "\n" not in line and "\r" not in line
    assert "Disconnected" not in line


async def _ssh_banner(stream: trio.SocketStream) -> None:
    await stream.send_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    try:
        while await stream.receive_some(4096):
            pass
    except trio.BrokenResourceError:
        pass


async def _silent(stream: trio.SocketStream) -> None:
    try:
        while await stream.receive_some(4096):
            pass
    except trio.BrokenResourceError:
        pass


async def test_an_ssh_banner_reads_not_an_irc_server_at_once(logs):
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _ssh_banner, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        start = trio.current_time()
        async with irc_host(plug_config(port), channels=()):
            line = await _first_failure(logs)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert line.startswith(f"127.0.0.1:{port} is not an IRC server (it sent "
                           r"'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n'); "), line  # fmt: skip
    assert took < 10  # not after the 30 s registration timeout


async def test_a_silent_server_reads_registration_timed_out(logs):
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with irc_host(plug_config(port, **{"connect-timeout": 1}), channels=()):
            line = await _first_failure(logs)
        nursery.cancel_scope.cancel()
    assert line.startswith(f"Registration with 127.0.0.1:{port} timed out after 1s; the server "
                           "sent nothing; retrying in "), line  # fmt: skip


@pytest.mark.slow
async def test_backoff_while_refused_stays_short_so_a_restarted_server_is_used_soon(server, logs):
    # The defaults of a real config: the delay would grow towards reconnect-max (300 s).
    config = plug_config(server.port, **{"reconnect-delay": 2, "reconnect-max": 300})
    async with irc_host(config) as (_, plug, _):
        with trio.fail_after(20):
            while not plug.connection.ready:
                await trio.sleep(0.02)
        await server.stop()
        # Long enough that an uncapped backoff (1-2, 2-4, 4-8, 8-16 s...) would be past 8 s.
        await trio.sleep(16)
        waits = [float(m) for m in re.findall(r"retrying in (\d+\.\d)s", "\n".join(
            line for line in _failures(logs) if line.startswith("Could not connect")))]  # fmt: skip
        assert len(waits) >= 4, _failures(logs)
        assert max(waits) <= CONNECT_RETRY_MAX
        await server.start()
        back = trio.current_time()
        with trio.fail_after(30):
            while not plug.connection.ready:
                await trio.sleep(0.02)
        took = trio.current_time() - back
        assert took < CONNECT_RETRY_MAX + 3, took
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.send("NAMES #test")
            assert "bot" in await alice.expect(" 353 ", "#test")
    logging.getLogger(__name__).warning("reconnected %.1fs after the server was back", took)


async def test_the_end_of_an_outage_is_a_warning_saying_how_long_and_what_goes_out(server, logs):
    async with irc_host(plug_config(server.port)) as (host, plug, _):
        await _until(lambda: plug.connection.ready)
        assert _back(logs) == []  # a normal start: the usual INFO lines, nothing more
        before = trio.current_time()
        await server.stop()
        await _until(lambda: not plug.connection.ready)
        await host.channels["chan0"].send(immp.Message("while away"))
        await _until(lambda: any("; 1 line waiting; " in line for line in _failures(logs)))
        await server.start()
        await _until(lambda: plug.connection.ready)
        most = trio.current_time() - before
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.send("NAMES #test")
            assert "bot" in await alice.expect(" 353 ", "#test")
    failures = [r for r in logs.records if r.getMessage().startswith("Disconnected from")]
    [back] = _back(logs)
    assert back.levelno == logging.WARNING and back.name == failures[0].name
    match = re.fullmatch(rf"Back on 127\.0\.0\.1:{server.port} after (\d+\.\d)s out; "
                         r"sending 1 queued line", back.getMessage())  # fmt: skip
    assert match, back.getMessage()
    assert 0 < float(match[1]) <= most + 0.1
    assert not any("1 lines" in r.getMessage() for r in logs.records)


async def test_a_start_whose_first_attempts_failed_says_when_it_is_connected(server, logs):
    await server.stop()
    started = trio.current_time()
    async with irc_host(plug_config(server.port)) as (host, plug, _):
        await _first_failure(logs)
        for text in ("one", "two"):
            await host.channels["chan0"].send(immp.Message(text))
        await _until(lambda: any("; 2 lines waiting; " in line for line in _failures(logs)))
        await server.start()
        await _until(lambda: plug.connection.ready)
        most = trio.current_time() - started
        assert await plug.connection.outgoing.drain(10)
    [back] = _back(logs)
    assert back.levelno == logging.WARNING
    match = re.fullmatch(rf"Connected to 127\.0\.0\.1:{server.port} after (\d+\.\d)s of "
                         r"failed attempts; sending 2 queued lines", back.getMessage())  # fmt: skip
    assert match, back.getMessage()
    assert 0 < float(match[1]) <= most + 0.1


async def test_a_full_queue_says_one_line_waiting_in_the_singular(logs):
    # Nothing listening: the one line the queue holds stays there.
    config = plug_config(free_port(), **{"queue-size": 1, "queue-timeout": 0.2})
    async with irc_host(config) as (host, plug, _):
        channel = host.channels["chan0"]
        await plug.put(channel, immp.Message("first"))
        with pytest.raises(immp.PlugError) as info:
            await plug.put(channel, immp.Message("second"))
        await _until(lambda: any("; 1 line waiting; " in line for line in _failures(logs)))
    assert str(info.value) == ("irc: message to #test not sent, the outgoing queue stayed full "
                               "(1 line waiting)")  # fmt: skip
