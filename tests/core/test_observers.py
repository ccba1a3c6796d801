"""The host's public APIs for plugs and operators: channel events, connection status, stats."""

import logging

import trio

import immp
from immp.testing import running
from tests.core.fakes import FakePlug, RecordingHook


class ChannelPlug(FakePlug):
    """Records the channel events the host gives it."""

    def __init__(self, name, config=None, host=None):
        super().__init__(name, config, host)
        self.channel_events: list[tuple[str, immp.Channel]] = []
        self.changed = trio.Event()

    async def on_channel_added(self, channel):
        self.channel_events.append(("added", channel))
        self.changed.set()

    async def on_channel_removed(self, channel):
        self.channel_events.append(("removed", channel))
        self.changed.set()

    async def wait_for(self, count):
        with trio.fail_after(10):
            while len(self.channel_events) < count:
                self.changed = trio.Event()
                await self.changed.wait()


class Observer:
    def __init__(self):
        self.events: list[tuple] = []
        self.changed = trio.Event()

    def _add(self, *event):
        self.events.append(event)
        self.changed.set()

    def message_received(self, plug, sent):
        self._add("received", plug.name, str(sent.text))

    def message_sent(self, channel, msg, receipts, latency):
        self._add("sent", channel.source, str(msg.text), len(receipts), latency)

    def send_failed(self, channel, msg, error):
        self._add("failed", channel.source, str(msg.text), type(error).__name__)

    def plug_connection_changed(self, plug, connected, reason):
        self._add("connection", plug.name, connected, reason)

    async def wait_for(self, predicate):
        with trio.fail_after(10):
            while not predicate(self.events):
                self.changed = trio.Event()
                await self.changed.wait()


# -- channels ----------------------------------------------------------------------------------


async def test_a_named_channel_added_or_removed_while_running_is_told_to_its_plug():
    host = immp.Host()
    plug = host.add_plug(ChannelPlug("net", {}, host))
    host.add_channel("configured", immp.Channel(plug, "#start"))
    async with running(host):
        extra = host.add_channel("extra", immp.Channel(plug, "#extra"))
        await plug.wait_for(1)
        # A second name for the same channel is no new channel; removing one name is no part.
        host.add_channel("alias", immp.Channel(plug, "#extra"))
        await host.remove("alias")
        await host.remove("extra")
        await plug.wait_for(2)
        await host.remove("configured")
        await plug.wait_for(3)
    assert plug.channel_events == [
        ("added", extra),
        ("removed", extra),
        ("removed", immp.Channel(plug, "#start")),
    ]


async def test_channels_of_a_closed_plug_or_before_the_run_are_not_told():
    host = immp.Host()
    plug = host.add_plug(ChannelPlug("net", {}, host))
    off = host.add_plug(ChannelPlug("off", {}, host), enabled=False)
    host.add_channel("early", immp.Channel(plug, "#early"))
    async with running(host):
        host.add_channel("on-off", immp.Channel(off, "#x"))
        await host.remove("on-off")
        host.add_channel("late", immp.Channel(plug, "#late"))
        await plug.wait_for(1)
    assert plug.channel_events == [("added", immp.Channel(plug, "#late"))]
    assert off.channel_events == []


async def test_a_failing_channel_event_is_logged_and_the_plug_stays_open(caplog):
    class Broken(FakePlug):
        async def on_channel_added(self, channel):
            raise RuntimeError("cannot join")

    host = immp.Host()
    plug = host.add_plug(Broken("net", {}, host))
    async with running(host):
        host.add_channel("extra", immp.Channel(plug, "#extra"))
        with trio.fail_after(10):
            while "cannot join" not in caplog.text:
                await trio.sleep(0.01)
        assert plug.open_state is immp.OpenState.active
    assert "Plug net: on_channel_added failed: RuntimeError: cannot join" in caplog.text


# -- connection status -------------------------------------------------------------------------


async def test_a_plug_is_connected_while_open_unless_it_reports_otherwise():
    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    observer = Observer()
    host.add_observer(observer)
    assert not plug.connected
    async with running(host):
        assert plug.connected
        plug.connection_changed(False, "server unreachable")
        assert not plug.connected
        assert plug.disconnect_reason == "server unreachable"
        plug.connection_changed(False, "still unreachable")  # a new reason: told
        plug.connection_changed(False, "still unreachable")  # the same again: no event
        plug.connection_changed(True)
        assert plug.connected
    assert not plug.connected
    assert [e for e in observer.events if e[0] == "connection"] == [
        ("connection", "net", True, None),
        ("connection", "net", False, "server unreachable"),
        ("connection", "net", False, "still unreachable"),
        ("connection", "net", True, None),
        ("connection", "net", False, None),
    ]


async def test_a_restarted_plug_starts_connected_again():
    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    async with running(host):
        plug.connection_changed(False, "gone")
        await host.restart("net")
        assert plug.connected


# -- stats and observers -----------------------------------------------------------------------


class Relay(immp.Hook):
    """Copies what arrives in 'room' to 'other', from its own inbox (an unprioritised hook)."""

    async def on_receive(self, sent, source, primary):
        if sent is source and sent.channel.source == "room":
            await immp.Channel(sent.channel.plug, "other").send(immp.Message(sent.text))


async def test_observers_see_receives_sends_with_latency_and_failures():
    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    host.add_hook(Relay("relay", {}, host))
    observer = Observer()
    host.add_observer(observer)
    async with running(host):
        await plug.inject("hello")
        await observer.wait_for(lambda events: any(e[0] == "sent" for e in events))
        await immp.Channel(plug, "direct").send(immp.Message("by hand"))
        plug.fail_put = True
        try:
            await immp.Channel(plug, "direct").send(immp.Message("lost"))
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failing put did not raise")
    events = [e for e in observer.events if e[0] != "connection"]
    assert events[0] == ("received", "net", "hello")
    kind, where, text, count, latency = events[1]
    assert (kind, where, text, count) == ("sent", "other", "hello", 1)
    assert isinstance(latency, float) and 0 <= latency < 10
    assert events[2] == ("sent", "direct", "by hand", 1, None)  # relays nothing
    assert events[3] == ("failed", "direct", "lost", "ConnectionError")


async def test_an_observer_that_raises_is_logged_once_and_removed(caplog):
    class Bad:
        calls = 0

        def message_received(self, plug, sent):
            self.calls += 1
            raise ValueError("oops")

    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    rec = host.add_hook(RecordingHook("rec", host=host))
    bad = Bad()
    host.add_observer(bad)
    with caplog.at_level(logging.ERROR):
        async with running(host):
            await plug.inject("one")
            await plug.inject("two")
            await rec.wait_for(2)
    assert bad.calls == 1
    assert caplog.text.count("ValueError: oops") == 1
    assert [t for _, t, _, _ in rec.log] == ["one", "two"]  # the stream went on


async def test_stats_count_per_plug_and_hook_and_include_hook_extras():
    class Counting(RecordingHook):
        def stats(self):
            return {"seen": len(self.seen)}

    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    rec = host.add_hook(Counting("rec", host=host))
    host.add_hook(RecordingHook("off", host=host), enabled=False)
    async with running(host):
        for n in range(3):
            await plug.inject(str(n))
        await rec.wait_for(3)
        await immp.Channel(plug, "room").send(immp.Message("out"))
        plug.fail_put = True
        try:
            await immp.Channel(plug, "room").send(immp.Message("lost"))
        except ConnectionError:
            pass
        stats = host.stats()
        await host.restart("rec")
        again = host.stats()
    assert stats["plugs"]["net"] == {
        "state": "active",
        "connected": True,
        "received": 3,
        "sent": 1,
        "send_failures": 1,
        "queued": None,  # (a plug without a queue of its own)
    }
    assert stats["hooks"]["rec"] == {
        "state": "active",
        "queue_depth": 0,
        "dropped": 0,
        "stuck": False,
        "extra": {"seen": 3},
    }
    assert stats["hooks"]["off"]["state"] == "disabled"
    assert stats["store"] == host.store.stats()  # the memory store by default
    # Counters only grow, across restarts too.
    assert again["plugs"]["net"]["received"] == 3
    assert again["hooks"]["rec"]["extra"] == {"seen": 3}


async def test_without_observers_nothing_is_tracked_for_them():
    # The hot path's only cost is a truth test of an empty list: no arrival time is set.
    from immp._worker import relaying

    seen = []

    class Peek(immp.Hook):
        async def on_receive(self, sent, source, primary):
            seen.append(relaying.get())

    host = immp.Host()
    plug = host.add_plug(FakePlug("net", {}, host))
    host.add_hook(Peek("peek", {}, host))
    async with running(host):
        await plug.inject("x")
        with trio.fail_after(10):
            while not seen:
                await trio.sleep(0.01)
    assert seen == [None]
