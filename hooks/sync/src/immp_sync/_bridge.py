"""
What the sync and forward hooks share: the path of one message from the channel it was posted
in to the copies on every target, and what keeps copies from being copied again.

The path of one message::

    on_receive(sent, source, primary)
      -> route: the targets of the channel (cached)
      -> skip echoes of copies and messages already known (no loops, no duplicates)
      -> an entry in the copy map, so that edits, deletions and replies find the copies
      -> each target's queue -> Target.run (one worker per target, in order)
         -> deliver: build the copy (author, reply), then send, edit or delete it
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

import immp

from ._copies import Copies, CopyMap, StoreCopyMap
from ._fanout import Target
from ._names import NameStyle, compile_template

if TYPE_CHECKING:
    from ._plug import SyncPlug

# Seconds of the host's close-timeout that closing a hook keeps for itself after waiting for
# queued copies to go out (to say what is left, before the host cuts it off).
CLOSE_MARGIN = 0.5

# Channel titles cached for name-format, at most this many (the oldest goes first).
TITLE_CACHE = 1024


class SyncedMessage(immp.Message):
    """
    A copy made by a sync or forward hook. When a network echoes it, no sync or forward hook
    copies it again: this is what makes bridges that share channels loop-free.
    """

    __slots__ = ()


def _template(value: Any) -> Any:
    if value is not None:
        if not isinstance(value, str):
            raise ValueError("not a string")
        compile_template(value)
    return value


_TEMPLATE = immp.Nullable(immp.Check(_template, "a Jinja2 template"))

#: What ``plugs`` may override for copies sent to one plug; a key left out keeps the hook's.
PLUG_OPTIONS = {
    immp.Optional("joins", omit=True, doc="overrides `joins`"): bool,
    immp.Optional("renames", omit=True, doc="overrides `renames`"): bool,
    immp.Optional("reset-author", omit=True, doc="overrides `reset-author`"): bool,
    immp.Optional("name-format", omit=True, doc="overrides `name-format`"): _TEMPLATE,
    immp.Optional("strip-name-emoji", omit=True, doc="overrides `strip-name-emoji`"): bool,
}

#: Config keys common to both hooks (the name options, and the limits of the machinery).
COMMON_SCHEMA = {
    immp.Optional("joins", True, doc="copy join and part messages"): bool,
    immp.Optional("renames", True, doc="copy channel title changes"): bool,
    immp.Optional("edits", True, doc="copy edits and deletions: an edit is applied to the "
                                     "copies where the target plug can edit (elsewhere it is "
                                     "sent as a new message marked edited), a deletion deletes "
                                     "the copies where the target plug can delete"): bool,
    immp.Optional("reset-author", False, doc="replace each copy's author by a plain user with "
                                             "only the (rendered) name"): bool,
    immp.Optional("name-format", None, doc="Jinja2 template for the author's name on copies "
                                           "(see below); `null` keeps the name"): _TEMPLATE,
    immp.Optional("strip-name-emoji", False, doc="remove emoji from author names on copies"):
        bool,
    immp.Optional("plugs", {}, doc="overrides for copies sent *to* the channels of one plug, by "
                                   "plug name; a key left out keeps the hook's"):
        immp.Nullable({str: PLUG_OPTIONS}),
    immp.Optional("history", 10_000, doc="how many synced messages are held in memory with "
                                         "their copies, for edits, deletions and replies; "
                                         "older ones (and those bridged before a restart) are "
                                         "read back from the store (`host.store`, kept for its "
                                         "retention); a message found in neither is new"):
        immp.Positive(int),
    immp.Optional("queue-size", 1000, doc="copies waiting per target channel; a target whose "
                                          "queue stays full for a second is taken to be stuck, "
                                          "and copies for it are dropped (counted in the log) "
                                          "until it catches up"): immp.Positive(int),
    immp.Optional("send-timeout", 30.0, doc="seconds before one send to a target is given up "
                                            "(logged with the target's name); `null` for none"):
        immp.Nullable(immp.Positive()),
}  # fmt: skip


class Options:
    """The options that apply to copies sent to one plug (the hook's, with its overrides)."""

    __slots__ = ("joins", "renames", "style")

    def __init__(self, config: dict[str, Any], plug: str, *, keep_author: bool = False):
        over = (config["plugs"] or {}).get(plug) or {}

        def get(key):
            return over[key] if key in over else config[key]

        self.joins = get("joins")
        self.renames = get("renames")
        if keep_author:
            self.style = NameStyle(None, False, False)
        else:
            self.style = NameStyle(get("name-format"), get("reset-author"), get("strip-name-emoji"))

    def accepts(self, sent: immp.Message) -> bool:
        if (sent.joined or sent.left) and not self.joins:
            return False
        return not (sent.title is not None and not self.renames)


class Route:
    """Where messages from one channel go: ``targets``; ``label`` is for name templates."""

    __slots__ = ("channel", "channels", "label", "targets")

    def __init__(self, channel: immp.Channel, label: str, targets: tuple[Target, ...]):
        self.channel = channel
        self.label = label
        self.targets = targets
        #: The targets' channels, in order (made once: every message is routed to them).
        self.channels = tuple(target.channel for target in targets)


class BridgeHook(immp.Hook):
    """
    Base of :class:`~immp_sync.SyncHook` and :class:`~immp_sync.ForwardHook`: subclasses say
    which channels go where by implementing :meth:`route`; everything else is here.
    """

    journaled = True  # each delivery goes through host.journal.route

    def __init__(self, name, config, host, priority=None):
        super().__init__(name, config, host, priority)
        #: The message -> copies map (the latest ``history`` in memory, all of them in
        #: ``host.store``); replace it (before open) to keep it elsewhere.
        self.copies: CopyMap = StoreCopyMap(self.config["history"], self)
        # Also fails early (with the key) on a template that does not compile.
        self._options: dict[str, Options] = {"": Options(self.config, "")}
        self._targets: dict[immp.Channel, Target] = {}
        self._titles: immp.BoundedCache[immp.Channel, str | None] = immp.BoundedCache(TITLE_CACHE)
        #: The virtual plug (sync hooks with ``plug`` set); copies to it are announced on it.
        self.plug: SyncPlug | None = None

    async def close(self) -> None:
        # Let what is queued go out (each send still has its timeout), within the host's
        # close-timeout; what is left is said, as kept (journal) or lost.
        targets = list(self._targets.values())
        self._retire_targets(set())
        with trio.move_on_after(max(0.0, self.host.close_timeout - CLOSE_MARGIN)):
            for target in targets:
                await target.done.wait()
        left = {t.name: len(t) + 1 for t in targets if not t.done.is_set()}  # + the one under way
        if left:
            total = sum(left.values())
            where = ", ".join(f"{count} to {name}" for name, count in left.items())
            fate = ("kept in the journal for the next start" if self.host.journal.enabled
                    else "lost (`host: journal: true` keeps them across a stop)")  # fmt: skip
            self.log.warning("Closed with up to %d %s not sent within close-timeout (%ss): %s; "
                             "%s", total, "copy" if total == 1 else "copies",
                             self.host.close_timeout, where, fate)  # fmt: skip

    def stats(self) -> dict:
        """
        For :meth:`Host.stats <immp.Host.stats>`: per target channel (by name) that copies
        went to, ``queue_depth`` (copies waiting), ``dropped`` (copies dropped while it was
        stuck; from 0 again if the target is retired and comes back), ``stuck`` and
        ``skipped`` (copies not sent while the target's plug is disabled, since it last was not).
        """
        return {"targets": {t.name: {"queue_depth": len(t), "dropped": t.dropped, "stuck": t.stuck,
                                     "skipped": t.skipped}
                            for t in self._targets.values()}}  # fmt: skip

    # -- routes and targets -----------------------------------------------------------------

    async def route(self, channel: immp.Channel) -> Route | None:
        """Where messages posted in ``channel`` go, or ``None`` if it is not a source."""
        raise NotImplementedError

    def _options_for(self, plug: immp.Plug) -> Options:
        options = self._options.get(plug.name)
        if options is None:
            # The virtual plug is the bridge itself, not another network: hooks listening there
            # (commands, permissions) must see the real author, not a name made for display.
            keep = plug is self.plug
            options = self._options[plug.name] = Options(self.config, plug.name, keep_author=keep)
        return options

    def _target(self, channel: immp.Channel) -> Target:
        """The target for ``channel``, started in the hook's nursery if new."""
        target = self._targets.get(channel)
        if target is None:
            name = self.host.named_channel(channel) or f"{channel.plug.name}:{channel.source}"
            timeout = self.config["send-timeout"]
            target = Target(
                channel,
                name,
                self.config["queue-size"],
                math.inf if timeout is None else timeout,
                self._deliver,
                self.log,
                self._dropped,
            )
            target.options = self._options_for(channel.plug)
            self._targets[channel] = target
            self.nursery.start_soon(target.run)
        return target

    def _retire_targets(self, keep: set[immp.Channel]) -> None:
        """Close the targets no route uses any more (their queued jobs still go out)."""
        for channel in [c for c in self._targets if c not in keep]:
            self._targets.pop(channel).close()

    def _reset_options(self) -> None:
        self._options = {}
        self._titles.clear()
        for target in self._targets.values():
            target.options = self._options_for(target.channel.plug)

    # -- receiving --------------------------------------------------------------------------

    def wants(self, sent: immp.SentMessage, source: immp.Message, primary: bool) -> bool:
        if not primary:
            return False  # the later parts of a message the network split
        # The echo of a copy: copies are never copied again. (A deletion of a copy, which the
        # network reports under the copy's ID, still goes to the origin and the others.)
        return sent is source or not isinstance(source, SyncedMessage) or sent.deleted

    async def on_receive(self, sent: immp.SentMessage, source: immp.Message, primary: bool):
        route = await self.route(sent.channel)
        if route is None:
            return
        await self.sync(route, sent)

    def _copied_elsewhere(self, channel: immp.Channel, id: str) -> bool:
        """Whether another sync or forward hook made this message as a copy."""
        if channel.plug.virtual:
            return False  # a bridge's own channel: what its hook announces there is for others
        for hook in self.host.hooks.values():
            if hook is not self and isinstance(hook, BridgeHook):
                copies = hook.copies.find(channel, id)
                if copies is not None and not copies.is_origin(channel, id):
                    return True
        return False

    async def sync(self, route: Route, sent: immp.SentMessage) -> None:
        """Pass a message posted in ``route.channel`` on to every target."""
        channel = route.channel
        journal = self.host.journal
        # An entry of the journal left by the last run, handed to us again: its copies may be
        # in the map already, and the journal says which targets still need it.
        replayed = sent.key is not None and journal.replaying(sent)
        copies = self.copies.find(channel, sent.id)
        if copies is None and replayed:
            copies = await self.copies.recall(channel, sent.id)
        if sent.deleted or sent.edited:
            if not self.config["edits"]:
                journal.route(sent, [])
                return
            if copies is None:  # bridged before a restart, or longer ago than memory holds?
                copies = await self.copies.recall(channel, sent.id)
            if sent.deleted:
                if copies is None or (copies.deleted and not replayed):
                    journal.route(sent, [])
                    return  # nothing was copied, or our own deletion of a copy came back
                copies.deleted = True
                self.copies.changed(copies)
            elif copies is not None and not copies.is_origin(channel, sent.id):
                journal.route(sent, [])
                return  # our own edit of a copy came back
        elif not replayed and (copies is not None or self._copied_elsewhere(channel, sent.id)):
            journal.route(sent, [])
            return  # a copy the network did not flag as an echo, or a repeated delivery
        if copies is None:
            # New, or an edit of a message the map forgot: from here on it is new.
            store = self.host.store
            if store.behind():  # a store that is behind slows the bridge down
                await store.room()
            copies = Copies(channel, sent.id)
            self.copies.add(copies)
            created = True
        else:
            created = False
        reply = sent.reply_to
        if (
            isinstance(reply, immp.SentMessage)
            and self.copies.find(reply.channel, reply.id) is None
        ):
            await self.copies.recall(reply.channel, reply.id)  # then _reply_on finds it in memory
        if sent.title is not None:
            self._titles[channel] = sent.title
        # The title as of this message (a rename queued after it must not change its name).
        title = None
        for target in route.targets:  # a loop, not any(): no generator per message
            if target.options.style.template is not None:
                title = await self._title(channel)
                break
        if sent.joined or sent.left or sent.title is not None:  # what options may turn away
            targets = [target for target in route.targets if target.options.accepts(sent)]
        else:
            targets = route.targets
        # A new entry is held until its copies are known (see StoreCopyMap): while it is, each
        # job counts (and its delivery settles once), and so does this hand-out, if it made it.
        hold = copies.pending > 0
        # Journaled: one delivery row per target, recorded through the journal (the one place
        # deliveries are tracked), and a target whose delivery a replay finds done (or dropped)
        # gets no job. Not journaled: every target, without a key.
        journaled = sent.key is not None
        channels = route.channels if targets is route.targets else [t.channel for t in targets]
        keys = journal.route(sent, channels) if journaled else [None] * len(targets)
        for target, key in zip(targets, keys, strict=True):
            if journaled and key is None:
                continue
            job = (sent, copies, route, title, key)
            if hold:
                copies.pending += 1
            if not target.offer(job):
                await target.put(job)
        if created:
            self.copies.settle(copies)

    # -- sending ----------------------------------------------------------------------------

    def _dropped(self, job: tuple) -> None:
        # A job that never ran (its target was stuck or closed) settles its count as well.
        copies = job[1]
        if copies.pending:
            self.copies.settle(copies)

    async def _deliver(
        self,
        target: Target,
        sent: immp.SentMessage,
        copies: Copies,
        route: Route,
        title,
        key: str | None,
    ) -> None:
        channel = target.channel
        plug = channel.plug
        done = self.host.journal.delivered  # what does not go through channel.send
        if plug.open_state is immp.OpenState.disabled:
            self._skip(target, copies, key)  # the operator's choice: not a failure
            return
        if target.skipped:
            self.log.info("Sending to %s again (%d %s not sent while plug %s was disabled)",
                          target.name, target.skipped,
                          "message" if target.skipped == 1 else "messages", plug.name)  # fmt: skip
            target.skipped = 0
        ids = copies.ids.get(channel)
        if sent.deleted:
            if not ids:
                done(key)
                return
            if plug is self.plug:
                await self.plug.announce_delete(channel, ids[0])
            elif plug.can_delete:
                await self.host.restarted(plug)  # (a send waits so in the pipeline)
                for id in ids:
                    await plug.delete(immp.Receipt(id, channel))
            done(key)
            return
        msg = self._copy(target, sent, route, title)
        if sent.edited and ids:
            if plug is self.plug:
                await self.plug.announce(channel, msg, id=ids[0])
                done(key)
                return
            if plug.can_edit:
                await self.host.restarted(plug)  # (a send waits so in the pipeline)
                await plug.edit(immp.Receipt(ids[0], channel), msg)
                done(key)
                return
            # Otherwise the edit goes out as a new message, marked edited.
        try:
            if plug is self.plug:
                receipts = await self.plug.announce(channel, msg)
                done(key)
            else:
                # The pipeline marks the delivery done when the plug has it (or the plug does,
                # once its network confirmed it); a plug that sends idempotently uses the key.
                msg.key = key
                receipts = await self.host.send(channel, msg)  # channel.send(), a call less
        except BaseException:
            if copies.pending:
                self.copies.settle(copies)
            raise
        if receipts and not ids:
            ids = (receipts[0].id,) if len(receipts) == 1 else tuple(r.id for r in receipts)
            self.copies.add_copy(copies, channel, ids)
        elif copies.pending:
            self.copies.settle(copies)

    def _skip(self, target: Target, copies: Copies, key: str | None) -> None:
        # A target whose plug is disabled (config `enabled: false`, or `!disable`) gets nothing:
        # said once, counted, and its delivery is done (it is not kept for when it is enabled).
        if not target.skipped:
            self.log.info("Not sending to %s while plug %s is disabled", target.name,
                          target.channel.plug.name)  # fmt: skip
        target.skipped += 1
        self.host.journal.delivered(key)
        if copies.pending:
            self.copies.settle(copies)

    def _copy(
        self, target: Target, sent: immp.SentMessage, route: Route, title: str | None
    ) -> SyncedMessage:
        style = target.options.style
        if style.plain:
            author = sent.user
        else:
            context = {
                "title": title,
                "plug": route.channel.plug,
                "channel": route.channel,
                "label": route.label,
            }
            author = style.author(sent.user, context)
        msg = SyncedMessage.copy_of(sent)
        msg.user = author
        if sent.reply_to is not None:
            msg.reply_to = self._reply_on(target.channel, sent.reply_to)
        return msg

    def _reply_on(self, channel: immp.Channel, reply: immp.Message) -> immp.Message:
        """What a copy on ``channel`` replies to: the copy there of the message replied to."""
        if isinstance(reply, immp.SentMessage):
            copies = self.copies.find(reply.channel, reply.id)
            ids = copies.ids.get(channel) if copies is not None else None
            if ids:
                return immp.SentMessage(
                    ids[0], channel, text=reply.text, user=reply.user, action=reply.action
                )
            if reply.channel == channel:
                return reply
            # No copy there: keep the content (a plug can quote it) but no foreign ID.
            return immp.Message(reply.text, reply.user, action=reply.action)
        return reply

    async def _title(self, channel: immp.Channel) -> str | None:
        if channel in self._titles:
            return self._titles[channel]
        try:
            title = await channel.title()
        except Exception as exc:
            self.log.warning("No title for %r: %s", channel, exc)
            title = None
        self._titles[channel] = title
        return title
