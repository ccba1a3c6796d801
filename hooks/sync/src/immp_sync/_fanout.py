"""
Fan-out: one ordered worker per target channel, so that a slow, hanging or failing target
neither holds up nor loses the messages of the others.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import immp

# How long, in total, a target's full queue may hold up the hook before the target is taken
# to be stuck. Up to then a full queue is backpressure (a burst loses nothing while the target
# keeps up); after that, until the target has emptied its queue, messages for it are dropped at
# once, counted and logged, and the other targets are served without waiting (immp.Worker,
# not patient: a target that keeps everyone waiting is stuck even if it trickles along).
STUCK_AFTER = 1.0


class Target(immp.Worker):
    """
    A channel that copies go to: a bounded queue and the worker that empties it in order.

    ``deliver(target, *job)`` does the work for one job (a tuple); each call is cut off after
    ``timeout`` seconds and a failure is logged with the target's name, then the next job runs.
    ``dropped(job)`` is told of each job dropped unrun (see :class:`immp.Worker`).
    """

    def __init__(
        self,
        channel: immp.Channel,
        name: str,
        size: int,
        timeout: float | None,
        deliver: Callable[..., Awaitable[None]],
        log: logging.Logger,
        dropped: Callable[[tuple], None] | None = None,
    ):
        self.channel = channel
        self.name = name
        self.timeout = math.inf if timeout is None else timeout
        #: Per-target settings the hook caches here (which plug options apply).
        self.options: Any = None
        #: Copies not sent since the target's plug was disabled (see BridgeHook._skip).
        self.skipped = 0

        def on_error(exc: Exception) -> None:
            # A plug's own error says enough; anything else gets a traceback.
            trace = None if isinstance(exc, immp.PlugError) else exc
            log.error("Sending to %s failed: %s", name, immp.describe_error(exc), exc_info=trace)

        def on_timeout() -> None:
            log.warning("Sending to %s timed out after %ss", name, self.timeout)

        super().__init__(
            f"Target {name}",
            size,
            partial(deliver, self),
            on_error=on_error,
            # While the plug says its network is down, its sends wait for it (the Matrix plug
            # retries, the IRC plug queues): that time is the outage's, not a hanging send's,
            # and cutting the send off would drop the copy (or, journaled, send it out of order
            # at the next start).
            timeout=lambda: self.timeout if channel.plug.connected else math.inf,
            on_timeout=on_timeout,
            stuck_after=STUCK_AFTER,
            patient=False,
            log=log,
            on_dropped=dropped,
        )
