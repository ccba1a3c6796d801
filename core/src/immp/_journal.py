"""
The journal: what was received and where it must still go, kept in the store, so that a
process that dies (kill -9, out of memory, a reboot) delivers after its next start what it had
taken from a network but not yet delivered, and nothing twice where the network allows it.

The host owns it (``host.journal``; ``host: journal: true`` turns it on). The path of one
message with the journal on::

    Pipeline.process(plug, sent)   -> journal.add(sent, plug): an entry (the message, encoded);
                                      sent.key = the entry's key
    plug: await self.taken()       -> returns once the entry is queued in the store, so that a
                                      cursor the plug saves after it (Matrix's sync token, the
                                      demo's input offset) lands in the same or a later commit
    Pipeline.process               -> journal.hold(entry) for itself and for each journaled
                                      hook (Hook.journaled: the sync hook) it hands the entry
                                      to, journal.release(entry) as each is done with it
    sync hook: journal.route(sent, channels) -> one delivery per target, the delivery key of
                                      each (None where a replay finds it done); a delivery
                                      gets a row only once it is done or in doubt (no row:
                                      pending, which is what a replay takes it for)
    Pipeline.send(channel, msg)    -> msg.key is the delivery key: a plug that sends
                                      idempotently uses it (Matrix: the txnId); when put()
                                      returns the delivery is marked done, unless the plug
                                      confirms deliveries itself (IRC: an intent mark before
                                      the write, done when the server acknowledged it)
    every hook done with the entry and all its deliveries done -> the entry is deleted

An entry is done only once no hook holds it *and* every delivery routed is done: two sync
hooks on one channel each route it (one may finish before the other started), and one that
routes it nowhere (an edit it does not copy) does not end it for the other. A message no
journaled hook wants is done when the pipeline lets go of it.

Every write goes through the store's write queue, committed in one transaction per round of its
thread (group commit; never one fsync per message). What survives what depends on the store
(SQLite ``synchronous=normal``: a killed process loses nothing committed; ``full``: a power
loss neither).

At start (:meth:`Journal.replay`, after the hooks opened and before any plug's new messages are
processed) the entries left are handed to the hooks again in their original order: a delivery
not done goes out, before anything newer of that channel; a delivery in doubt (written to a
network without idempotency, not acknowledged) follows ``journal-in-doubt`` (``drop``, the
default: not sent again, logged with its text; ``resend``: sent again); an entry older than
``journal-age`` seconds is not replayed and is logged as expired.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from ._logs import counted
from ._message import File, FileType, Location, Message, RichText, Segment, SentMessage, User
from ._store import JournalBatch, channel_key

if TYPE_CHECKING:
    from ._channel import Channel
    from ._host import Host
    from ._plug import Plug

log = logging.getLogger("immp.journal")

#: Seconds an entry is kept for replay (``host: journal-age:``).
DEFAULT_AGE = 300.0
#: What a delivery in doubt does at start (``host: journal-in-doubt:``).
IN_DOUBT_POLICIES = ("drop", "resend")

# Delivery states, as stored.
PENDING, WRITING, DONE = 0, 1, 2

#: Seconds between looks for entries older than ``age`` (at most; the age if shorter), which
#: are then let go (see Journal._sweep).
SWEEP_INTERVAL = 30.0

# Seconds a delivery waits for its journal entry to be committed (see Journal.durable) before
# the store is taken for unreachable and deliveries stop waiting until it commits again.
DURABLE_WAIT = 2.0

#: Entries done and kept per plug until it saves its cursor (see Journal._finish), at most: the
#: oldest go beyond it (a read of more messages than this is not known again after a crash).
MAX_KEPT = 10_000


class Journal:
    """
    ``host.journal``: see the module docstring. Off (``enabled`` false) every method is a
    no-op and :meth:`add` gives ``None``, so that callers need no test of their own.
    """

    def __init__(
        self, host: Host, *, enabled: bool = False, age: float = DEFAULT_AGE, in_doubt: str = "drop"
    ):
        if in_doubt not in IN_DOUBT_POLICIES:
            raise ValueError(f"in_doubt must be one of {IN_DOUBT_POLICIES}, not {in_doubt!r}")
        self.host = host
        self.enabled = enabled
        self.age = age
        self.in_doubt = in_doubt
        # Keys are unique across runs: a run's start time (ms, base 36) and a counter.
        self._run = ""
        self._count = itertools.count(1)
        # entry key -> {delivery key: state} of deliveries not done
        self._open: dict[str, dict[str, int]] = {}
        #: Entry key -> how many hold it: the pipeline while it hands it out, and each
        #: journaled hook handed it, until that hook is done with it (see :meth:`hold`; the
        #: pipeline counts here inline, once per message).
        self.holds: dict[str, int] = {}
        # entry key -> when added (or handed out again), of every entry not done, oldest first:
        # what _sweep lets go once older than age
        self._since: dict[str, float] = {}
        # entry keys handed to the hooks again by replay(): route() answers from what is known,
        # to every hook that routes it, until the entry is done
        self._replayed: dict[str, dict[str, int]] = {}
        self._replay: list[tuple[str, dict]] = []
        # (plug, source, id, revision, edited, deleted) -> (entry key, text data), of every
        # entry the last run left that is replayed, until repeats_until: what its network
        # sends again from a cursor saved before it (see repeated())
        self.repeats: dict[tuple, tuple[str, Any]] = {}
        self._repeats_said: set[str] = set()  # plugs whose repeats were said
        self._repeats_until = 0.0
        #: Messages a network sent again that the journal had from the last run: not taken twice.
        self.repeated_dropped = 0
        self.replayed = 0
        self.expired = 0
        self.dropped_in_doubt = 0
        # When _sweep looks next; entries it let go with deliveries not confirmed (a target that
        # keeps failing).
        self._sweep_at = 0.0
        self.abandoned = 0
        #: Deliveries given up because the target network refused them for good (SendRefused).
        self.refused = 0
        # Writes of this trio tick, merged as they are made and handed to the store in one go
        # (see _batch_now).
        self._batch: JournalBatch | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        # Set to have run() hand the batch over (while the host runs it).
        self._wake: trio.Event | None = None
        # Durable before delivered (see durable()): batches handed to the store so far, and
        # how many of them the store has committed.
        self.submitted = 0
        self.committed = 0
        self._gated = False
        self._gate_open = True
        self._committed_event: trio.Event | None = None
        #: Entry key -> (its plug's name, the plug's reads when it came, the number of the batch
        #: that writes it, or 0 where the store does not say when it commits), of each entry
        #: not done from a plug with a cursor: its copies wait for that batch's commit (see
        #: :meth:`durable`), and it is kept once done until the cursor is saved past it (see
        #: _finish).
        self.cursor_entries: dict[str, tuple[str, int, int]] = {}
        # Per plug with a cursor: how many times it passed taken() (and so saved its cursor
        # past what it had sent), and the entries done before that, kept ({key: when done}).
        self._reads: dict[str, int] = {}
        self._kept: dict[str, dict[str, float]] = {}

    # -- lifetime ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Read what a previous run left (the store is open). Raises if the store cannot."""
        self._token = trio.lowlevel.current_trio_token()
        self._batch = None
        self._run = _base36(int(time.time() * 1000))
        self._count = itertools.count(1)
        self._open = {}
        self.holds = {}
        self._since = {}
        self._replayed = {}
        self._replay = []
        self.repeats = {}
        self._repeats_said = set()
        self._sweep_at = 0.0
        self.submitted = self.committed = 0
        self._gate_open = True
        self.cursor_entries = {}
        self._reads = {}
        self._kept = {}
        if not self.enabled:
            return
        store = self.host.store
        self._gated = store.reports_commits
        if self._gated:
            store.on_journal_committed = self._committed_upto
        entries, deliveries = await self.host.store.journal_load()
        by_entry: dict[str, dict[str, int]] = {}
        for entry, delivery, state in deliveries:
            by_entry.setdefault(entry, {})[delivery] = state
        now = time.time()
        cutoff = now - self.age
        self._repeats_until = now + self.age
        for key, created, text in entries:
            message = json.loads(text)
            rows = by_entry.get(key, {})
            if created < cutoff:
                self.expired += 1
                done = sum(1 for state in rows.values() if state == DONE)
                note = f" (delivered to {done} of its targets already)" if done else ""
                where = message.get("channel")
                log.warning("Journal: expired (older than %ss, not replayed): %s in %s: %s%s",
                            self.age, key, where, _excerpt(message), note)  # fmt: skip
                self.done(key)
                continue
            self._replay.append((key, message))
            self._replayed[key] = rows
            if message.get("id") is not None:
                self.repeats[_identity(message)] = (key, message.get("text"))
        if entries:
            doubt = sum(1 for rows in by_entry.values() for s in rows.values() if s == WRITING)
            log.warning("Journal: %s from the last run (%s in doubt), %d expired",
                        counted(len(self._replay), "entry", "entries"),
                        counted(doubt, "delivery", "deliveries"), self.expired)  # fmt: skip

    async def replay(self, process) -> None:
        """
        Hand the entries left by the last run to the hooks again, in their order, through
        ``process(plug, sent)`` (the pipeline's receive path). An entry whose plug is gone from
        the config stays journaled (until it expires).
        """
        replay, self._replay = self._replay, []
        for key, message in replay:
            plug = self.host.plugs.get(message["channel"][0])
            if plug is None:
                log.warning("Journal: %s is from plug %s, which is not in the config; kept",
                            key, message["channel"][0])  # fmt: skip
                self._replayed.pop(key, None)
                if message.get("id") is not None:  # (not replayed: what comes again is new)
                    self.repeats.pop(_identity(message), None)
                continue
            sent = decode(message, self.host)
            sent.key = key
            if plug.has_cursor:
                # Kept, once done, until the plug saves its cursor again: it is reading from
                # the old one, and a crash before that must find the entry still (see _finish).
                self.cursor_entries[key] = (plug.name, 0, 0)  # (committed already)
            self.replayed += 1
            self._since[key] = time.time()  # a new age to be delivered in (see _sweep)
            await process(plug, sent, replayed=True)
        # (Hooks may route them later, from their own queues: route() answers from
        # _replayed until each entry is done.)

    def close(self) -> None:
        """The host stopped: what is left stays journaled for the next start."""
        self.submit()
        if self.undelivered:
            log.warning("Journal: %s", self.summary())

    @property
    def undelivered(self) -> bool:
        """Whether any journaled message is not delivered yet (then kept for the next start)."""
        return self.enabled and bool(self._open or self.holds)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """
        Hand each tick's writes to the store, while the host runs (a task of its own, started
        with ``nursery.start``: ready once it listens; see _batch_now). Cancelled with the host;
        :meth:`close` hands over what is left.
        """
        self._wake = trio.Event()
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                self.submit()
        finally:
            self._wake = None

    def _batch_now(self) -> JournalBatch:
        # One hand-over to the store per trio tick (the store's queue takes a lock per call):
        # the first write of a tick wakes run(), which runs once the scheduler has run the tasks
        # that are ready, and everything written by then goes in one batch, merged to its net
        # effect as it is written (an entry added and done meanwhile is not written). Without
        # run() (a journal used outside a host), a callback does it: the same, but through
        # trio's wakeup socket, two system calls a tick.
        batch = self._batch
        if batch is None:
            batch = self._batch = JournalBatch()
            if self._wake is not None:
                self._wake.set()
            else:
                try:
                    self._token.run_sync_soon(self.submit)
                except (AttributeError, trio.RunFinishedError):
                    self._token = None  # outside a run: each write is handed over at once
        return batch

    def submit(self) -> None:
        """Hand the journal writes made so far to the store's write queue, in order."""
        batch = self._batch
        if batch is not None:
            self._batch = None
            self.submitted += 1
            batch.number = self.submitted
            self.host.store.journal_merge(batch)

    def _committed_upto(self, number: int) -> None:
        # The store committed the batches up to ``number`` (in the trio thread).
        if number > self.committed:
            self.committed = number
        self._gate_open = True
        event = self._committed_event
        if event is not None:
            self._committed_event = None
            event.set()

    async def durable(self, number: int) -> None:
        """
        Wait until the store has committed journal batch ``number`` (an entry's, from
        :attr:`cursor_entries`): a delivery goes out only once its entry would be replayed after a
        crash, so that the replay repeats the same delivery key (an idempotent send: the same
        Matrix txnId) rather than the network's resending it as a new entry, sent twice (kept
        only for plugs with a cursor, whose networks send again what came after it). A store
        that commits nothing for ``DURABLE_WAIT`` seconds (unreachable) stops the waiting until
        it commits again: the bridge goes on, and says so once.
        """
        if number > self.submitted:
            self.submit()  # (its batch is this tick's, not handed over yet)
        if not self._gate_open or self.committed >= number:
            return
        with trio.move_on_after(DURABLE_WAIT) as scope:
            while self.committed < number:
                if self._committed_event is None:
                    self._committed_event = trio.Event()
                await self._committed_event.wait()
        if scope.cancelled_caught and self._gate_open:
            self._gate_open = False
            log.warning("Journal: the store committed nothing for %ss: sending without waiting "
                        "for it until it does (a crash meanwhile may send a message twice)",
                        DURABLE_WAIT)  # fmt: skip

    def summary(self) -> str:
        """One line: what is left undelivered (kept for the next start), or that nothing is."""
        if not self.enabled:
            return "off"
        left = sum(len(rows) for rows in self._open.values())
        unhandled = sum(1 for entry in self.holds if not self._open.get(entry))
        if unhandled:  # taken in, but a hook had not routed it yet (its queue, a cut-off call)
            return (f"{counted(len(self._open) + unhandled, 'message')} not delivered "
                    f"({counted(left, 'delivery', 'deliveries')} not confirmed, "
                    f"{counted(unhandled, 'message')} not yet handled by a hook); kept for the "
                    "next start")  # fmt: skip
        if left:
            return (f"{counted(left, 'delivery', 'deliveries')} of "
                    f"{counted(len(self._open), 'message')} not confirmed; kept for the next "
                    "start")  # fmt: skip
        return "every journaled message was delivered"

    # -- the receive path ----------------------------------------------------------------------

    def add(self, sent: SentMessage, plug: Plug) -> str | None:
        """
        Journal a received message; its key (also set as ``sent.key``), or ``None`` if off.
        ``plug``: the plug it came from; its copies wait for the entry's commit (see
        :meth:`durable`) unless the plug has no cursor (:attr:`Plug.has_cursor
        <immp.Plug.has_cursor>`), whose network never sends it again.
        """
        if not self.enabled:
            return None
        key = f"{self._run}.{next(self._count)}"
        sent.key = key
        # Made into JSON-ready data only if still open at the store's next commit, and then in
        # the store's thread (which encodes it with its row): a received message is not
        # changed after this.
        batch = self._batch
        if batch is None:
            batch = self._batch_now()
        now = time.time()
        batch.entries[key] = (now, partial(_message, sent))
        if plug.has_cursor:
            # (submitted + 1: the number this tick's batch will have)
            number = self.submitted + 1 if self._gated else 0
            self.cursor_entries[key] = (plug.name, self._reads.get(plug.name, 0), number)
        self._since[key] = now
        if now >= self._sweep_at:
            self._sweep(now)
        if self._token is None:  # outside a run
            self.submit()
        return key

    def _sweep(self, now: float) -> None:
        # Entries older than the age limit are let go while the process runs, as they would
        # expire at the next start: else a target that keeps failing kept one entry per message,
        # in memory and in the store, for as long as the process ran. What is still queued for
        # a target goes out all the same, untracked. An entry a hook holds (its backlog, bounded
        # by its queue) is the hook's to route: kept. One that neither a hook holds nor has a
        # delivery open is done already, so each one let go has deliveries not confirmed.
        self._sweep_at = now + min(self.age, SWEEP_INTERVAL)
        cutoff = now - self.age
        for kept in self._kept.values():  # (oldest first) a replay would expire them
            while kept:
                key, since = next(iter(kept.items()))
                if since > cutoff:
                    break
                del kept[key]
                self.done(key)
        old = []
        holds = self.holds
        for key, added in self._since.items():  # oldest first
            if added > cutoff:
                break
            if key not in holds:
                old.append(key)
        if not old:
            return
        targets: dict[str, int] = {}
        for key in old:
            for delivery in self._open.get(key, ()):
                where = delivery.partition("/")[2].replace("\x1f", ":")
                targets[where] = targets.get(where, 0) + 1
            self._finish(key, keep=False)
        self.abandoned += len(old)
        where = ", ".join(f"to {target} ({count})" for target, count in targets.items())
        log.warning("Journal: %d entries older than %ss let go with deliveries not confirmed "
                    "(a crash would not replay them, as a start would not): %s", len(old),
                    self.age, where)  # fmt: skip

    # -- hooks holding an entry ----------------------------------------------------------------

    def hold(self, entry: str | None) -> None:
        """
        ``entry`` is handed to a hook that routes through the journal (or is being handed out
        by the pipeline): it is not done before a matching :meth:`release`, whatever its
        deliveries say so far.
        """
        if entry is not None:
            holds = self.holds
            holds[entry] = holds.get(entry, 0) + 1

    def release(self, entry: str | None) -> None:
        """A hook is done with ``entry`` (it routed it, or chose not to): done if it was the last
        holder and every delivery routed is done."""
        if entry is None:
            return
        holds = self.holds
        count = holds.get(entry)
        if count is None:
            return  # let go meanwhile (see _sweep)
        if count > 1:
            holds[entry] = count - 1
            return
        del holds[entry]
        if not self._open.get(entry):
            self._finish(entry)

    def repeated(self, plug: Plug, sent: SentMessage) -> bool:
        """
        Whether ``sent``, just received, is a message the last run journaled: its network sent
        it again because the cursor saved after it (Plug.taken) was not committed before a
        crash. The entry is replayed; taking the message in again would send it twice. Known by
        the network's ID, revision, edit and deletion flags and text, for a plug whose IDs are
        the same for a message read again (:attr:`Plug.stable_ids <immp.Plug.stable_ids>`:
        Matrix event IDs; the demo's ``input`` lines by their offset), for the journal's age
        limit after the start. Call only while :attr:`repeats` is not empty.
        """
        if time.time() > self._repeats_until:
            self.repeats = {}
            return False
        if sent.id is None or not plug.stable_ids:
            return False
        known = self.repeats.get((plug.name, sent.channel.source, sent.id, sent.revision or 0,
                                  bool(sent.edited), bool(sent.deleted)))  # fmt: skip
        if known is None or known[1] != _text(sent.text):
            return False
        key = known[0]
        self.repeated_dropped += 1
        if plug.name not in self._repeats_said:
            self._repeats_said.add(plug.name)
            log.warning("Journal: plug %s sent again what the last run had journaled (its "
                        "position was not saved before the process ended): not taken twice",
                        plug.name)  # fmt: skip
        log.info("Journal: %s in %s came again from its network (%s of the last run): not "
                 "taken twice", sent.id, sent.channel.source, key)  # fmt: skip
        return True

    def replaying(self, sent: SentMessage) -> bool:
        """Whether ``sent`` is an entry of the last run handed to the hooks again."""
        return sent.key is not None and sent.key in self._replayed

    def route(self, sent: SentMessage, channels: Sequence[Channel]) -> list[str | None]:
        """
        Record where ``sent`` goes: one delivery per channel (written once it is done or in
        doubt; until then a replay takes it for pending, as it is). Gives the delivery key to set
        on each copy (:attr:`Message.key <immp.Message.key>`), or ``None`` for a channel it
        must not go to: off, not journaled, or (a replay) delivered already or in doubt under
        the ``drop`` policy.
        """
        entry = sent.key
        if not self.enabled or entry is None:
            return [None] * len(channels)
        if entry not in self._since:  # done or let go (see _sweep): sent, but not tracked
            return [f"{entry}/{channel_key(channel)}" for channel in channels]
        if self._replayed:
            known = self._replayed.get(entry)
            if known is not None:
                return self._route_replayed(sent, channels, known)
        # Nothing is written: a delivery without a row is pending, which is what a replay takes
        # it for (only what is done or in doubt is written, as it happens). The key is
        # f"{entry}/{channel_key(channel)}", spelled out: it is made for every copy.
        keys: list[str | None] = [f"{entry}/{channel.plug.name}\x1f{channel.source}"
                                  for channel in channels]  # fmt: skip
        rows = self._open.get(entry)
        if rows is not None:  # routed before (by another hook)
            rows.update(dict.fromkeys(keys, PENDING))
        elif keys:
            self._open[entry] = dict.fromkeys(keys, PENDING)
        elif entry not in self.holds:
            self._finish(entry)  # nowhere to go, and routed by no hook holding it
        return keys

    def _route_replayed(
        self, sent: SentMessage, channels: Sequence[Channel], known: dict[str, int]
    ) -> list[str | None]:
        # route() for an entry of the last run: what its rows say is done is not sent again,
        # nor what is in doubt under the "drop" policy.
        entry = sent.key
        rows = self._open.setdefault(entry, {})
        keys: list[str | None] = []
        for channel in channels:
            delivery = f"{entry}/{channel_key(channel)}"
            state = known.get(delivery, PENDING)
            if state == DONE:
                keys.append(None)
                continue
            if state == WRITING and self.in_doubt == "drop":
                self.dropped_in_doubt += 1
                log.warning("Journal: in doubt, not sent again (journal-in-doubt: drop): %s to "
                            "%s: %s", entry, channel_key(channel).replace("\x1f", ":"),
                            sent.render())  # fmt: skip
                self._batch_now().deliveries.setdefault(entry, {})[delivery] = DONE
                keys.append(None)
                continue
            rows[delivery] = PENDING
            keys.append(delivery)
        if not rows and entry not in self.holds:
            self._finish(entry)
        if self._token is None:  # outside a run
            self.submit()
        return keys

    # -- the send path -------------------------------------------------------------------------

    def writing(self, delivery: str | None) -> None:
        """
        A plug without idempotent sends (IRC) is about to write ``delivery`` to its network:
        an intent mark. Await :meth:`flush` before the write, so that after a crash the
        delivery is known to be in doubt rather than taken as never written.
        """
        if delivery is None or not self.enabled:
            return
        entry = delivery.partition("/")[0]
        rows = self._open.get(entry)
        if rows is not None and delivery in rows:
            rows[delivery] = WRITING
            self._batch_now().deliveries.setdefault(entry, {})[delivery] = WRITING
            if self._token is None:  # outside a run
                self.submit()

    def delivered(self, delivery: str | None) -> None:
        """The target network confirmed ``delivery``: marked done (the entry too, if last)."""
        if delivery is None or not self.enabled:
            return
        entry = delivery.partition("/")[0]
        rows = self._open.get(entry)
        if rows is None or rows.pop(delivery, None) is None:
            return
        # More to deliver, a hook may route it further, or kept once done (see _finish).
        if rows or entry in self.holds or entry in self.cursor_entries:
            batch = self._batch
            if batch is None:
                batch = self._batch_now()
            batch.deliveries.setdefault(entry, {})[delivery] = DONE
            if self._token is None:  # outside a run
                self.submit()
        if not rows:
            del self._open[entry]
            if entry not in self.holds:  # the last, and no hook holds it: the entry is done
                self._finish(entry)

    def give_up(self, delivery: str | None) -> None:
        """
        The target network refused ``delivery`` for good (:class:`immp.SendRefused`): given up,
        marked done like a delivered one, so that the next start does not send it again.
        """
        if delivery is None or not self.enabled:
            return
        entry = delivery.partition("/")[0]
        rows = self._open.get(entry)
        if rows is not None and delivery in rows:
            self.refused += 1
            self.delivered(delivery)

    def _finish(self, entry: str, keep: bool = True) -> None:
        # An entry from a plug with a cursor, done before the plug saved its cursor past it,
        # stays in the store (every delivery marked done) until it does (cursor_passed): a
        # crash in between makes its network send it again, and the next start knows it then
        # (see repeated), where it would be taken as new had it been deleted.
        self._open.pop(entry, None)
        self.holds.pop(entry, None)
        self._since.pop(entry, None)
        if self._replayed:
            self._replayed.pop(entry, None)
        if self.cursor_entries:
            source = self.cursor_entries.pop(entry, None)
            if source is not None and keep and source[1] == self._reads.get(source[0], 0):
                plug = source[0]
                kept = self._kept.get(plug)
                if kept is None:
                    kept = self._kept[plug] = {}
                kept[entry] = time.time()
                if len(kept) > MAX_KEPT:
                    oldest = next(iter(kept))
                    del kept[oldest]
                    self.done(oldest)
                return
        self.done(entry)

    def cursor_passed(self, plug: Plug) -> None:
        """
        ``plug``'s taken() returned: it saves its cursor now, past every message it queued so
        far. The entries of those done meanwhile are deleted, in a batch queued after the
        cursor's write (so in the same commit or a later one); those done from now on are
        deleted when done.
        """
        if not self.enabled:
            return
        self._reads[plug.name] = self._reads.get(plug.name, 0) + 1
        kept = self._kept.pop(plug.name, None)
        if kept:
            for entry in kept:
                self.done(entry)

    def done(self, entry: str) -> None:
        """Forget an entry and its deliveries (everything went out, or it expired)."""
        if self.enabled:
            batch = self._batch
            if batch is None:
                batch = self._batch_now()
            if batch.deliveries:
                batch.deliveries.pop(entry, None)
            if batch.entries.pop(entry, None) is None:
                batch.done.add(entry)
            if self._token is None:  # outside a run
                self.submit()

    async def flush(self) -> None:
        """Wait until every journal write so far is durable (see :meth:`immp.Store.flush`)."""
        if self.enabled:
            self.submit()
            await self.host.store.flush()

    def stats(self) -> dict[str, Any]:
        """``open`` entries and ``deliveries`` not done, and what the last start replayed."""
        return {
            "enabled": self.enabled,
            "open": len(self._open),
            "deliveries": sum(len(rows) for rows in self._open.values()),
            "replayed": self.replayed,
            "expired": self.expired,
            "dropped_in_doubt": self.dropped_in_doubt,
            "abandoned": self.abandoned,
            "refused": self.refused,
            "repeated": self.repeated_dropped,
            "kept": sum(len(kept) for kept in self._kept.values()),
        }


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


def _excerpt(message: dict) -> str:
    return "".join(seg[0] for seg in message.get("text") or [])[:200]


# -- encoding ----------------------------------------------------------------------------------
# A message as JSON: what a replay needs to pass it on again. Users and mentions keep their ID
# and names (not the plug object: a user is rebuilt on the plug of the same config name).

_FLAGS = ("bold", "italic", "underline", "strike", "code", "pre")


def _user(user: User | None) -> list | None:
    if user is None:
        return None
    return [user.plug.name if user.plug else None, user.id, user.username, user.real_name,
            user.avatar, user.link, user.suggested]  # fmt: skip


def _unuser(data: list | None, host: Host) -> User | None:
    if data is None:
        return None
    plug, id, username, real_name, avatar, link, suggested = data
    return User(id, host.plugs.get(plug) if plug else None, username=username,
                real_name=real_name, avatar=avatar, link=link, suggested=suggested)  # fmt: skip


def _text(text: RichText | None) -> list | None:
    if text is None:
        return None
    return [[seg.text, [f for f in _FLAGS if getattr(seg, f)], seg.link, _user(seg.mention)]
            for seg in text]  # fmt: skip


def _untext(data: list | None, host: Host) -> RichText | None:
    if data is None:
        return None
    return RichText(Segment(text, **dict.fromkeys(flags, True), link=link,
                            mention=_unuser(mention, host))
                    for text, flags, link, mention in data)  # fmt: skip


def _content(msg: Message) -> dict:
    data: dict[str, Any] = {"text": _text(msg.text), "user": _user(msg.user)}
    for name in ("action", "edited"):
        if getattr(msg, name):
            data[name] = True
    if msg.title is not None:
        data["title"] = msg.title
    if msg.joined:
        data["joined"] = [_user(u) for u in msg.joined]
    if msg.left:
        data["left"] = [_user(u) for u in msg.left]
    attachments = []
    for item in msg.attachments:
        if isinstance(item, File):
            attachments.append(["file", item.title, item.type.name, item.source])
        elif isinstance(item, Location):
            attachments.append(["location", item.latitude, item.longitude, item.name,
                                item.address])  # fmt: skip
        elif isinstance(item, Message):
            attachments.append(["message", _content(item)])
    if attachments:
        data["attachments"] = attachments
    reply = msg.reply_to
    if isinstance(reply, SentMessage) and reply.channel is not None:
        data["reply"] = [reply.channel.plug.name, reply.channel.source, reply.id,
                         _content(reply)]  # fmt: skip
    elif reply is not None:
        data["reply"] = [None, None, None, _content(reply)]
    return data


def _uncontent(data: dict, host: Host) -> dict:
    from ._channel import Channel

    attachments: list = []
    for item in data.get("attachments", ()):
        if item[0] == "file":
            attachments.append(File(item[1], FileType[item[2]], item[3]))
        elif item[0] == "location":
            attachments.append(Location(*item[1:]))
        else:
            attachments.append(Message(**_uncontent(item[1], host)))
    reply = None
    if "reply" in data:
        plug, source, id, content = data["reply"]
        if plug is not None and plug in host.plugs:
            reply = SentMessage(id, Channel(host.plugs[plug], source), **_uncontent(content, host))
        else:
            reply = Message(**_uncontent(content, host))
    return {
        "text": _untext(data.get("text"), host),
        "user": _unuser(data.get("user"), host),
        "action": data.get("action", False),
        "edited": data.get("edited", False),
        "title": data.get("title"),
        "joined": [_unuser(u, host) for u in data.get("joined", ())],
        "left": [_unuser(u, host) for u in data.get("left", ())],
        "attachments": attachments,
        "reply_to": reply,
    }


def encode(sent: SentMessage) -> str:
    """A received message as JSON text (see :func:`decode`)."""
    return _encode(_message(sent))


def _identity(message: dict) -> tuple:
    # What Journal.repeated() knows a message by, from an entry's data (see _message).
    plug, source = message["channel"]
    return (plug, source, message["id"], message.get("revision", 0), bool(message.get("edited")),
            bool(message.get("deleted")))  # fmt: skip


def _message(sent: SentMessage) -> dict:
    # What encode() writes, as JSON-ready data (the journal hands this to the store).
    data = _content(sent)
    data["channel"] = [sent.channel.plug.name, sent.channel.source]
    data["id"] = sent.id
    data["at"] = sent.at
    if sent.revision:
        data["revision"] = sent.revision
    if sent.deleted:
        data["deleted"] = True
    return data


# One encoder for every entry (json.dumps with options makes one per call); no check for
# circular references, as the data is lists and dicts made fresh by _content.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def decode(data: dict, host: Host) -> SentMessage:
    """The message :func:`encode` wrote (decoded from JSON), on the host's plugs of those names."""
    from ._channel import Channel

    plug: Plug = host.plugs[data["channel"][0]]
    return SentMessage(
        data["id"],
        Channel(plug, data["channel"][1]),
        at=data["at"],
        revision=data.get("revision", 0),
        deleted=data.get("deleted", False),
        **_uncontent(data, host),
    )
