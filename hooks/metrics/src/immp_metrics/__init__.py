"""
Metrics hook: Prometheus metrics and a health check for a running IMMP, over HTTP.

Config:
    listen (str, default "127.0.0.1:9464"):
        ``HOST:PORT`` to serve on (``[::1]:9464`` for IPv6; port 0: any free one, which the
        hook logs once open, at INFO with IMMP's startup lines, so that the default logging
        shows it: ``immp.runner.metrics: Metrics on http://127.0.0.1:40123/metrics``). Loopback by
        default: listening on another address (``0.0.0.0:9464``) makes the figures readable by
        anyone who can reach that address, and is the user's explicit choice. An address that
        cannot be listened on fails the hook's open with one line naming this key and the
        address (``hooks.metrics.config.listen: cannot listen on 127.0.0.1:9464: address
        already in use``).

Endpoints:
    ``GET /metrics``: the Prometheus text format. Counters only grow and end in ``_total``:
    ``immp_messages_received_total{plug}``, ``immp_messages_sent_total{plug}``,
    ``immp_send_failures_total{plug}``, ``immp_messages_dropped_total{hook}``,
    ``immp_sync_target_dropped_total{hook,target}``, ``immp_store_flushes_total``,
    ``immp_store_flush_seconds_total``, ``immp_store_dropped_total``. Gauges:
    ``immp_plug_queue_depth{plug}`` (the IRC plug's lines not yet taken by the server),
    ``immp_plug_up{plug}`` and ``immp_hook_up{hook}`` (1 or 0; disabled ones left out),
    ``immp_hook_queue_depth{hook}``, ``immp_hook_stuck{hook}``,
    ``immp_sync_target_queue_depth{hook,target}``, ``immp_store_queue_depth``,
    ``immp_store_last_flush_seconds``, ``immp_store_up``. And the histogram
    ``immp_relay_latency_seconds{plug}``: seconds from the host taking a message from its
    plug to each copy's send returning, by the plug sent to.

    ``received`` counts every message the host takes from a plug, before echo matching: the
    network's echoes of IMMP's own sends count too. ``sent`` and the latency count a send when
    the plug's ``put`` returns, which for a plug with a queue (IRC) is when it queued the
    message, not when it wrote it. README.md says exactly what each one counts.

    ``GET /health``: 200 and ``{"status": "ok", ...}`` while every enabled plug is connected,
    no hook is stuck or failed and the store (where it says) is reachable; otherwise 503 and
    ``{"status": "unhealthy", "reasons": [...]}``, one short line per problem.

Everything comes from IMMP's public API: ``host.stats()``, ``host.add_observer()`` and
``plug.connected``.
"""

__all__ = ["MetricsHook"]


def __getattr__(name: str):
    # The hook's libraries are imported when it is used, not on every ``immp`` start.
    if name == "MetricsHook":
        from .hook import MetricsHook

        return MetricsHook
    raise AttributeError(name)
