"""The metrics hook: serves /metrics and /health (see the package docstring for the config)."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from functools import partial

import trio
from prometheus_client import CollectorRegistry, Histogram, generate_latest

import immp

from ._figures import StatsCollector, health
from ._http import serve_connection

log = logging.getLogger(__name__)
# Where the hook listens is a startup line, like the runner's "Store: ..." one, and goes where
# those go: a child of the runner's logger is shown at INFO by IMMP's default logging (which
# shows only warnings of everything else) and by a logging section with ``immp`` at INFO.
startup_log = logging.getLogger("immp.runner.metrics")

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


def _netloc(host: str, port: int) -> str:
    """``host:port`` for a URL, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_problem(exc: OSError, host: str) -> str:
    """A few words for why listening failed: ``address already in use``."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host!r}: {(exc.strerror or str(exc)).lower()}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "not an address of this machine (cannot assign requested address)"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


class MetricsHook(immp.Hook):
    """Serves Prometheus metrics and a health check over HTTP; see the package docstring."""

    schema = immp.Schema({
        immp.Optional("listen", "127.0.0.1:9464", doc=(
            "`HOST:PORT` to serve on (`[::1]:9464` for IPv6; port 0: any free one, which the "
            "hook logs with IMMP's startup lines). Loopback by default: another address "
            "(`0.0.0.0:9464` in a container) lets whoever can reach it read the figures, so it "
            "is your explicit choice")):
            immp.Check(_check_listen, "HOST:PORT"),
    })  # fmt: skip

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatsCollector(host))
        self.latency = Histogram(
            "immp_relay_latency_seconds",
            "Seconds from the host taking a message from its plug to a copy's put returning",
            ["plug"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._latency_by_plug: dict[str, object] = {}
        #: Every ``(host, port)`` the server listens on once open (the port is the one bound
        #: with ``:0``; a name such as ``localhost`` may give one per address, each with its own
        #: port then), and the first of them as :attr:`address`.
        self.addresses: list[tuple[str, int]] = []
        self.address: tuple[str, int] | None = None

    async def open(self):
        """
        Listen and serve. Raises :class:`immp.ConfigError` naming ``listen`` and its value if
        the address cannot be listened on (in use, not this machine's, a name that does not
        resolve): the host logs that one line and marks the hook failed.
        """
        host, port = parse_listen(self.config["listen"])
        serve = partial(trio.serve_tcp, self._connection, port, host=host)
        try:
            listeners = await self.nursery.start(serve)
        except OSError as exc:
            # Not "from exc": the host's log line would repeat the errno text in brackets;
            # the OSError stays the context, in the traceback the host logs at DEBUG.
            raise immp.ConfigError(
                f"cannot listen on {self.config['listen']}: {_listen_problem(exc, host)}",
                f"hooks.{self.name}.config.listen",
            )
        self.addresses = [listener.socket.getsockname()[:2] for listener in listeners]
        self.address = self.addresses[0]
        self.host.add_observer(self)
        urls = " and ".join(f"http://{_netloc(*address)}/metrics" for address in self.addresses)
        # On this module's logger where a logging section shows its INFO (as README.md said to
        # do before), so that the line is neither lost nor said twice.
        where = log if log.isEnabledFor(logging.INFO) else startup_log
        where.info("Metrics on %s, health on /health", urls)

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
