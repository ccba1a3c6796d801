"""What the metrics hook makes of host.stats(), in process: the store's figures and health."""

from __future__ import annotations

import json
import logging

import pytest
import trio

import immp
from immp.testing import running
from immp_demo import DemoPlug
from immp_metrics import MetricsHook
from tests.faults.helpers import catch_logs, demo_texts
from tests.irc.conftest import plug_config

from .test_metrics import samples, value


class StoreFigures:
    """Stands in for the store in host.stats() (the store's own tests cover the store)."""

    def __init__(self, **figures):
        self.figures = figures

    def stats(self):
        return self.figures


def metrics_host(store=None) -> tuple[immp.Host, MetricsHook]:
    host = immp.Host()
    host.add_plug(DemoPlug("demo", {"interval": None}, host))
    hook = host.add_hook(MetricsHook("metrics", {"listen": "127.0.0.1:0"}, host))
    if store is not None:
        host.store = store
    return host, hook


def test_store_figures_become_metrics_and_an_unreachable_store_is_unhealthy():
    store = StoreFigures(queue_depth=3, flushes=7, flush_seconds_total=0.25,
                         last_flush_seconds=0.01, reachable=True, dropped=0)  # fmt: skip
    _, hook = metrics_host(store)
    found = samples(hook.respond("/metrics")[2].decode())
    assert value(found, "immp_store_queue_depth") == 3
    assert value(found, "immp_store_flushes_total") == 7
    assert value(found, "immp_store_flush_seconds_total") == 0.25
    assert value(found, "immp_store_last_flush_seconds") == 0.01
    assert value(found, "immp_store_up") == 1
    store.figures["reachable"] = False
    status, _, body = hook.respond("/health")
    assert status == 503
    assert "the store is unreachable" in json.loads(body)["reasons"]


def test_without_store_figures_there_are_no_store_metrics():
    host, hook = metrics_host()
    if getattr(host, "store", None) is not None:  # a host with a store of its own
        host.store = StoreFigures()
    text = hook.respond("/metrics")[2].decode()
    assert "immp_store_" not in text
    assert "immp_messages_received_total" in text


def test_a_plug_that_is_not_open_makes_health_503_with_its_state():
    _, hook = metrics_host()
    status, ctype, body = hook.respond("/health")  # nothing opened yet
    assert (status, ctype) == (503, "application/json")
    assert json.loads(body) == {"status": "unhealthy", "reasons": ["plug demo is inactive"]}


async def http_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    """A GET over a real TCP connection to the hook's server: ``(status, body)``."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                              .encode())  # fmt: skip
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.slow
async def test_a_stuck_hook_makes_health_503_and_its_drops_are_counted():
    host = immp.build_host({
        "plugs": {"chat": {"path": "demo", "config": {"interval": None, "channel": "room"}}},
        "channels": {"room": {"plug": "chat", "source": "room"}},
        "hooks": {
            "stuck": {"path": "tests.faults.helpers.BadHook", "timeout": None,
                      "config": {"on_receive": "hang"}},
            "metrics": {"path": "metrics", "config": {"listen": "127.0.0.1:0"}},
        },
    })  # fmt: skip
    chat, hook = host.plugs["chat"], host.hooks["metrics"]
    async with running(host):
        assert await http_get(hook.address, "/health") == (
            200,
            b'{"status": "ok", "plugs": 1, "hooks": 2}\n',
        )
        with trio.fail_after(30):
            n = 0
            while not host.stats()["hooks"]["stuck"]["stuck"]:
                await chat.receive(f"m{n}")
                n += 1
        status, body = await http_get(hook.address, "/health")
        found = samples((await http_get(hook.address, "/metrics"))[1].decode())
    assert status == 503
    [reason] = json.loads(body)["reasons"]
    assert reason.startswith("hook stuck is stuck (") and reason.endswith(" messages dropped)")
    assert value(found, "immp_hook_stuck", hook="stuck") == 1
    assert value(found, "immp_messages_dropped_total", hook="stuck") >= 1
    assert value(found, "immp_hook_queue_depth", hook="stuck") > 0


@pytest.mark.parametrize(("listen", "problem"), [
    ("192.0.2.1:9464", "not an address of this machine (cannot assign requested address)"),
    ("no-such-host.invalid:9464", "cannot resolve 'no-such-host.invalid': "),
])  # fmt: skip
async def test_an_address_it_cannot_listen_on_fails_the_hook_with_the_key_and_address(
    listen, problem
):
    host = immp.build_host({
        "plugs": {"demo": {"path": "demo", "config": {"interval": None}}},
        "hooks": {"web": {"path": "metrics", "config": {"listen": listen}}},
    })  # fmt: skip
    catcher, undo = catch_logs()
    try:
        async with running(host):
            pass
    finally:
        undo()
    [line] = [line for line in catcher.lines(logging.ERROR) if "hook web" in line]
    assert line.startswith(
        "ERROR immp._host: Failed to open hook web: ConfigError: hooks.web.config.listen: "
        f"cannot listen on {listen}: {problem}"
    ), line
    assert "Errno" not in line


async def test_hook_up_is_1_while_a_hook_is_active_0_once_stopped_and_gone_when_disabled():
    host = immp.build_host({
        "plugs": {"chat": {"path": "demo", "config": {"interval": None, "channel": "room"}}},
        "channels": {"room": {"plug": "chat", "source": "room"}},
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"main": ["room"]}}},
            "spare": {"path": "tests.faults.helpers.BadHook"},
            "off": {"path": "tests.faults.helpers.BadHook", "enabled": False},
            "metrics": {"path": "metrics", "config": {"listen": "127.0.0.1:0"}},
        },
    })  # fmt: skip
    hook = host.hooks["metrics"]
    async with running(host):
        found = samples((await http_get(hook.address, "/metrics"))[1].decode())
        assert value(found, "immp_hook_up", hook="metrics") == 1
        assert value(found, "immp_hook_up", hook="sync") == 1
        assert value(found, "immp_hook_up", hook="spare") == 1
        assert ("immp_hook_up", (("hook", "off"),)) not in found
        await host.stop("sync")
        found = samples((await http_get(hook.address, "/metrics"))[1].decode())
        assert value(found, "immp_hook_up", hook="sync") == 0
        await host.stop("spare", disable=True)
        found = samples((await http_get(hook.address, "/metrics"))[1].decode())
        assert ("immp_hook_up", (("hook", "spare"),)) not in found
        assert value(found, "immp_hook_up", hook="metrics") == 1


async def test_the_log_names_the_bound_port_of_an_ipv6_listen_in_brackets():
    host = immp.Host()
    hook = host.add_hook(MetricsHook("metrics", {"listen": "[::1]:0"}, host))
    catcher, undo = catch_logs()
    try:
        async with running(host):
            assert (await http_get(hook.address, "/health"))[0] == 200
    finally:
        undo()
    port = hook.address[1]
    assert port != 0
    assert (
        f"INFO immp_metrics.hook: Metrics on http://[::1]:{port}/metrics, health on /health"
        in catcher.lines()
    )


async def test_a_new_reason_while_a_plug_is_down_reaches_health_and_observers_once():
    # Two demo networks bridged by the sync hook (an observer of plug_connection_changed), the
    # metrics hook, and an observer that keeps what it heard, as an alerting hook would.
    host = immp.build_host({
        "plugs": {
            "net1": {"path": "demo", "config": {"interval": None}},
            "net2": {"path": "demo", "config": {"interval": None}},
        },
        "channels": {
            "one": {"plug": "net1", "source": "room"},
            "two": {"plug": "net2", "source": "room"},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"main": ["one", "two"]}}},
            "metrics": {"path": "metrics", "config": {"listen": "127.0.0.1:0"}},
        },
    })  # fmt: skip
    net1, net2, hook = host.plugs["net1"], host.plugs["net2"], host.hooks["metrics"]
    heard = []

    class Heard:
        def plug_connection_changed(self, plug, connected, reason):
            heard.append((plug.name, connected, reason))

    async def reasons() -> list[str]:
        status, body = await http_get(hook.address, "/health")
        assert status == 503, body
        return json.loads(body)["reasons"]

    catcher, undo = catch_logs()
    try:
        async with running(host):
            host.add_observer(Heard())
            net2.connection_changed(False, "connection refused")
            assert await reasons() == ["plug net2 is not connected: connection refused"]
            net2.connection_changed(False, "TLS handshake failed")
            assert await reasons() == ["plug net2 is not connected: TLS handshake failed"]
            net2.connection_changed(False, "TLS handshake failed")  # the same again: no news
            found = samples((await http_get(hook.address, "/metrics"))[1].decode())
            assert value(found, "immp_plug_up", plug="net2") == 0
            net2.connection_changed(True)
            assert await http_get(hook.address, "/health") == (
                200,
                b'{"status": "ok", "plugs": 2, "hooks": 2}\n',
            )
            await net1.wait_puts(2)
            await trio.sleep(0.2)  # a repeated notice would be sent by now
            told = list(heard)
    finally:
        undo()
    assert told == [
        ("net2", False, "connection refused"),
        ("net2", False, "TLS handshake failed"),
        ("net2", True, None),
    ]
    # The sync hook told the other network once that net2 was down, once that it was back.
    assert demo_texts(net1) == [
        "network net2 is unreachable; messages to it are held",
        "network net2 is back",
    ]
    assert demo_texts(net2) == []
    assert not [line for line in catcher.lines(logging.WARNING) if "net2" in line]


async def test_health_gives_the_latest_reason_an_irc_server_is_unreachable(server):
    host = immp.build_host({
        "plugs": {"net": {"path": "irc", "config": plug_config(
            server.port, **{"reconnect-delay": 0.2, "reconnect-max": 0.5})}},
        "hooks": {"metrics": {"path": "metrics", "config": {"listen": "127.0.0.1:0"}}},
    })  # fmt: skip
    hook = host.hooks["metrics"]

    async def not_irc(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    catcher, undo = catch_logs()
    try:
        async with running(host), trio.open_nursery() as nursery:
            with trio.fail_after(20):
                while (await http_get(hook.address, "/health"))[0] != 200:
                    await trio.sleep(0.1)
            await server.stop()  # first reason: the server went away
            with trio.fail_after(20):
                while (await http_get(hook.address, "/health"))[0] != 503:
                    await trio.sleep(0.1)
            # Still down, for another reason: what answers on the port is no IRC server.
            await nursery.start(trio.serve_tcp, not_irc, server.port)
            with trio.fail_after(20):
                while not any("is not an IRC server" in line for line in catcher.lines()):
                    await trio.sleep(0.1)
            status, body = await http_get(hook.address, "/health")
            nursery.cancel_scope.cancel()
    finally:
        undo()
    assert status == 503
    [reason] = json.loads(body)["reasons"]
    assert "is not an IRC server" in reason, reason


async def test_an_irc_backlog_shows_as_the_plugs_queue_depth(server):
    # 30 copies bridged to IRC at a line a quarter second: the plug takes them at once (they
    # count as sent), and the backlog is the IRC plug's, on /metrics, until it drains.
    host = immp.build_host({
        "plugs": {"net": {"path": "irc", "config": plug_config(
                      server.port, **{"send-delay": 0.25, "send-burst": 1})},
                  "demo": {"path": "demo", "config": {"interval": None, "channel": "room"}}},
        "channels": {"irc-room": {"plug": "net", "source": "#bridge"},
                     "demo-room": {"plug": "demo", "source": "room"}},
        "hooks": {"sync": {"path": "sync", "config": {"channels": {"main": ["irc-room",
                                                                          "demo-room"]}}},
                  "metrics": {"path": "metrics", "config": {"listen": "127.0.0.1:0"}}},
    })  # fmt: skip
    hook, net = host.hooks["metrics"], host.plugs["net"]

    async def depth() -> float:
        _, body = await http_get(hook.address, "/metrics")
        return value(samples(body.decode()), "immp_plug_queue_depth", plug="net")

    async with running(host):
        with trio.fail_after(20):
            while not net.connected:
                await trio.sleep(0.05)
        assert await depth() == 0
        for n in range(30):
            await host.plugs["demo"].receive(f"m{n}")
        with trio.fail_after(10):
            while await depth() < 20:
                await trio.sleep(0.05)
        assert host.stats()["plugs"]["net"]["queued"] >= 20
        # (the demo plug keeps no queue of its own: left out)
        _, body = await http_get(hook.address, "/metrics")
        found = samples(body.decode())
        assert ("immp_plug_queue_depth", (("plug", "demo"),)) not in found
        with trio.fail_after(30):
            while await depth() > 0:
                await trio.sleep(0.2)
