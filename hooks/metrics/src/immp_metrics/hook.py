"""The metrics hook: serves /metrics and /health (see the package docstring for the config)."""

from __future__ import annotations

import json
import logging
from functools import partial

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import immp

from ._figures import StatsCollector, health
from ._http import serve_connection

log = logging.getLogger(__name__)

# Relay latency buckets, seconds: a bridge over fast networks answers in milliseconds, one
# waiting on flood control or a slow homeserver in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

JSON = "application/json"
# The text format generate_latest() writes, under the version name every Prometheus server
# knows (newer prometheus_client versions announce 1.0.0, which only recent servers read).
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) as ``(host, port)``; ``ValueError`` if not."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"got {value!r}, e.g. 127.0.0.1:9464 (port 0: any free one)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _check_listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"got {value!r}, a {type(value).__name__}, e.g. '127.0.0.1:9464'")
    parse_listen(value)
    return value


class MetricsHook(immp.Hook):
    """Serves Prometheus metrics and a health check over HTTP; see the package docstring."""

    schema = immp.Schema({
        immp.Optional("listen", "127.0.0.1:9464", doc=(
            "`HOST:PORT` to serve on (`[::1]:9464` for IPv6; port 0: any free one). Loopback "
            "by default: another address (`0.0.0.0:9464` in a container) lets whoever can "
            "reach it read the figures, so it is your explicit choice")):
            immp.Check(_check_listen, "HOST:PORT"),
    })  # fmt: skip

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(host))
        self.latency = Histogram(
            "immp_relay_latency_seconds",
            "Seconds from a message's arrival at the host to the send of a copy of it",
            ["plug"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._latency_by_plug: dict[str, object] = {}
        #: Where the server listens once open: ``(host, port)`` (the port is real with ``:0``).
        self.address: tuple[str, int] | None = None

    async def open(self):
        host, port = parse_listen(self.config["listen"])
        serve = partial(trio.serve_tcp, self._connection, port, host=host)
        listeners = await self.nursery.start(serve)
        self.address = listeners[0].socket.getsockname()[:2]
        self.host.add_observer(self)
        log.info("Metrics on http://%s/metrics, health on /health", self.config["listen"])

    async def close(self):
        self.host.remove_observer(self)

    # -- observer: called by the host for every successful send (cheap, never raises) ----------

    def message_sent(self, channel, msg, receipts, latency):
        if latency is not None:
            # The labelled child, cached: labels() takes about as long again as observe().
            child = self._latency_by_plug.get(channel.plug.name)
            if child is None:
                child = self._latency_by_plug[channel.plug.name] = self.latency.labels(
                    channel.plug.name
                )
            child.observe(latency)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            await serve_connection(stream, self.respond)
        except (trio.BrokenResourceError, OSError):
            pass  # the client went away

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a GET of ``path``."""
        if path == "/metrics":
            return 200, PROMETHEUS_TEXT, generate_latest(self.registry)
        if path == "/health":
            healthy, body = health(self.host)
            return (200 if healthy else 503), JSON, json.dumps(body).encode() + b"\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n"
