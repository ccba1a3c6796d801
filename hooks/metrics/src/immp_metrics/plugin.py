"""Registers the metrics hook with IMMP's plugin discovery (imported only when a config uses it)."""

import immp


@immp.hookimpl
def register_hooks(register):
    register("metrics", "immp_metrics.hook.MetricsHook")
