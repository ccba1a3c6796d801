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

import trio

import immp

# How long, in total, a target's full queue may hold up the hook before the target is taken
# to be stuck. Up to then a full queue is backpressure (a burst loses nothing while the target
# keeps up); after that, until the target has emptied its queue, messages for it are dropped at
# once, counted and logged, and the other targets are served without waiting (immp.Worker,
# not patient: a target that keeps everyone waiting is stuck even if it trickles along).
STUCK_AFTER = 1.0

# A target that keeps failing for the same reason says so once, then once per this many
# seconds with the count of the failures it did not log one by one (each is counted in
# ``send_failures`` all the same): an IRC server down for an hour made one ERROR line per
# bridged message. A new reason is logged at once, and so is the first copy that goes out again.
REPEAT_AFTER = 60.0


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

        #: Sends that failed (or timed out) since the last one that went out.
        self.failures = 0
        self._said = immp.Throttle(REPEAT_AFTER)  # per reason, while failing
        self._failed = False  # whether the call just finished failed

        def on_error(exc: Exception) -> None:
            # A plug's own error says enough; anything else gets a traceback.
            trace = None if isinstance(exc, immp.PlugError) else exc
            self._failure(f"failed: {immp.describe_error(exc)}", trace)

        def on_timeout() -> None:
            self._failure(f"timed out after {self.timeout}s")

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
            finished=self._finished_one,
        )
        self._log = log

    def _failure(self, reason: str, trace: BaseException | None = None) -> None:
        self.failures += 1
        self._failed = True
        held = self._said.due(reason, trio.current_time())
        if held is None:
            self._log.debug("Sending to %s %s", self.name, reason)
            return
        more = (f" ({held} more {'failure' if held == 1 else 'failures'} like the last one since "
                "it was logged)") if held else ""  # fmt: skip
        level = logging.WARNING if reason.startswith("timed out") else logging.ERROR
        self._log.log(level, "Sending to %s %s%s", self.name, reason, more, exc_info=trace)

    def _finished_one(self, job: tuple) -> None:
        # After every job: one that did not fail ends a run of failures.
        if self._failed:
            self._failed = False
        elif self.failures:
            self._log.warning("Sending to %s works again, after %d failed %s", self.name,
                              self.failures, "send" if self.failures == 1 else "sends")  # fmt: skip
            self.failures = 0
            self._said.reset()
