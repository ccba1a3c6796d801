"""What the metrics hook serves: host.stats() as Prometheus metric families, and health."""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

import immp


class StatsCollector:
    """A prometheus_client collector that turns ``host.stats()`` into metrics at each scrape."""

    def __init__(self, host: immp.Host):
        self.host = host

    def collect(self) -> list[Metric]:
        stats = self.host.stats()
        families = []

        def family(kind, name, doc, labels, rows):
            metric = kind(name, doc, labels=labels)
            for values, value in rows:
                metric.add_metric(values, value)
            families.append(metric)

        plugs = stats["plugs"]
        for key, name, doc in (
            ("received", "immp_messages_received", "Messages from a plug, echoes included"),
            ("sent", "immp_messages_sent", "Messages a plug's put accepted (returned from)"),
            ("send_failures", "immp_send_failures", "Sends to a plug that raised an error"),
        ):
            family(CounterMetricFamily, name, doc, ["plug"],
                   [([plug], line[key]) for plug, line in plugs.items()])  # fmt: skip
        family(GaugeMetricFamily, "immp_plug_up", "1 while a plug is open and connected",
               ["plug"], [([plug], int(line["connected"])) for plug, line in plugs.items()
                          if line["state"] != "disabled"])  # fmt: skip
        family(GaugeMetricFamily, "immp_plug_queue_depth",
               "What a plug holds that its network has not taken yet (IRC: lines)", ["plug"],
               [([plug], line["queued"]) for plug, line in plugs.items()
                if line.get("queued") is not None])  # fmt: skip

        hooks = stats["hooks"]
        family(GaugeMetricFamily, "immp_hook_up", "1 while a hook is active, else 0",
               ["hook"], [([hook], int(line["state"] == "active")) for hook, line in hooks.items()
                          if line["state"] != "disabled"])  # fmt: skip
        for kind, name, doc, value in (
            (GaugeMetricFamily, "immp_hook_queue_depth", "Messages waiting for a hook",
             lambda line: line["queue_depth"]),
            (CounterMetricFamily, "immp_messages_dropped", "Messages a stuck hook was not given",
             lambda line: line["dropped"]),
            (GaugeMetricFamily, "immp_hook_stuck", "1 while a hook is stuck (dropping)",
             lambda line: int(line["stuck"])),
        ):  # fmt: skip
            family(kind, name, doc, ["hook"], [([h], value(line)) for h, line in hooks.items()])

        targets = [
            ([hook, target], figures)
            for hook, line in hooks.items()
            for target, figures in _targets(line).items()
        ]
        for kind, name, doc, key in (
            (GaugeMetricFamily, "immp_sync_target_queue_depth",
             "Copies waiting to be sent to one target channel of a sync hook", "queue_depth"),
            (CounterMetricFamily, "immp_sync_target_dropped",
             "Copies a sync hook dropped for a stuck target channel", "dropped"),
        ):  # fmt: skip
            rows = [(labels, figures.get(key, 0)) for labels, figures in targets]
            family(kind, name, doc, ["hook", "target"], rows)

        store = stats.get("store")
        if store:
            for kind, name, key, doc in (
                (GaugeMetricFamily, "immp_store_queue_depth", "queue_depth",
                 "Writes waiting for the store"),
                (CounterMetricFamily, "immp_store_flushes", "flushes", "Store flushes"),
                (CounterMetricFamily, "immp_store_flush_seconds", "flush_seconds_total",
                 "Seconds spent flushing the store"),
                (GaugeMetricFamily, "immp_store_last_flush_seconds", "last_flush_seconds",
                 "Seconds the last store flush took"),
                (CounterMetricFamily, "immp_store_dropped", "dropped",
                 "Writes lost to a full queue while the store was unreachable"),
                (GaugeMetricFamily, "immp_store_up", "reachable",
                 "1 while the store's backend is reachable"),
            ):  # fmt: skip
                if isinstance(store.get(key), int | float):  # bool too: reachable
                    family(kind, name, doc, [], [([], float(store[key]))])
        return families


def _targets(line: dict[str, Any]) -> dict[str, dict]:
    extra = line.get("extra") or {}
    targets = extra.get("targets") if isinstance(extra, dict) else None
    return targets if isinstance(targets, dict) else {}


def health(host: immp.Host) -> tuple[bool, dict[str, Any]]:
    """
    ``(healthy, body)``: healthy while every enabled plug is connected, no hook is stuck or
    failed and the store (if it says) is reachable; ``body`` says so, or lists one short reason
    per problem.
    """
    stats = host.stats()
    reasons = []
    for name, line in stats["plugs"].items():
        if line["state"] == "disabled" or line["connected"]:
            continue
        plug = host.plugs.get(name)
        why = plug.disconnect_reason if plug is not None else None
        if line["state"] != "active":
            reasons.append(f"plug {name} is {line['state']}")
        else:
            reasons.append(f"plug {name} is not connected" + (f": {why}" if why else ""))
    for name, line in stats["hooks"].items():
        if line["state"] == "failed":
            reasons.append(f"hook {name} failed")
        elif line["stuck"]:
            reasons.append(f"hook {name} is stuck ({line['dropped']} messages dropped)")
    store = stats.get("store") or {}
    if store.get("reachable") is False:
        reasons.append("the store is unreachable")
    if reasons:
        return False, {"status": "unhealthy", "reasons": reasons}
    plugs = sum(line["state"] != "disabled" for line in stats["plugs"].values())
    return True, {"status": "ok", "plugs": plugs, "hooks": len(stats["hooks"])}
