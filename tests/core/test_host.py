"""The host: namespace, lifecycle, the receive and send paths."""

import gc
import itertools
import logging

import pytest
import trio

import immp
from immp.testing import running
from tests.core.fakes import FakePlug, RecordingHook


def make_host(**kw):
    host = immp.Host(**kw)
    plug = host.add_plug(FakePlug("fake", {}, host))
    return host, plug


# -- namespace ---------------------------------------------------------------------------------


def test_names_are_unique_across_plugs_channels_groups_and_hooks():
    host, plug = make_host()
    with pytest.raises(
        immp.ConfigError, match=r"'fake' is used by both plugs\.fake and hooks\.fake"
    ):
        host.add_hook(RecordingHook("fake", host=host))
    host.add_channel("room", immp.Channel(plug, "room"))
    with pytest.raises(immp.ConfigError, match=r"channels\.room and groups\.room"):
        host.add_group(immp.Group("room", {}, host))


# -- lifecycle ---------------------------------------------------------------------------------


class OrderHook(immp.Hook):
    def __init__(self, name, events, host, priority=None):
        super().__init__(name, {}, host, priority=priority)
        self.events = events

    def on_load(self):
        self.events.append(f"load {self.name}")

    async def open(self):
        self.events.append(f"open {self.name}")

    async def on_ready(self):
        self.events.append(f"ready {self.name}")

    async def close(self):
        self.events.append(f"close {self.name}")


class OrderResource(OrderHook, immp.ResourceHook):
    pass


async def test_opens_resources_then_plugs_then_hooks_and_closes_in_reverse():
    events = []
    host = immp.Host()

    class LoggedPlug(FakePlug):
        async def open(self):
            events.append("open plug")

        async def close(self):
            events.append("close plug")

    host.add_hook(OrderHook("hook", events, host))
    host.add_plug(LoggedPlug("plug", {}, host))
    host.add_hook(OrderResource("res", events, host))
    async with running(host):
        assert host.plugs["plug"].open_state is immp.OpenState.active
    assert events[:2] == ["load hook", "load res"]
    assert events[2:5] == ["open res", "open plug", "open hook"]
    assert set(events[5:7]) == {"ready hook", "ready res"}
    assert events[7:] == ["close hook", "close plug", "close res"]
    assert host.resources[OrderResource].name == "res"


async def test_a_plug_that_fails_to_open_is_marked_failed_and_the_rest_run(caplog):
    host = immp.Host(open_timeout=0.5)
    bad = host.add_plug(FakePlug("bad", {"fail-open": True}, host))
    slow = host.add_plug(FakePlug("slow", {"hang-open": True}, host))
    good = host.add_plug(FakePlug("good", {}, host))
    hook = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        assert bad.open_state is immp.OpenState.failed
        assert slow.open_state is immp.OpenState.failed
        assert good.open_state is immp.OpenState.active
        await good.inject("still works")
        await hook.wait_for(1)
    assert "Failed to open plug bad: ConnectionError: network unreachable" in caplog.text
    assert "Failed to open plug slow: timed out" in caplog.text


async def test_a_crashing_background_task_fails_only_its_plug(caplog):
    host = immp.Host()

    class Crashy(FakePlug):
        async def open(self):
            async def boom():
                await trio.sleep(0.01)
                raise RuntimeError("reader died")

            self.nursery.start_soon(boom)

    crashy = host.add_plug(Crashy("crashy", {}, host))
    other = host.add_plug(FakePlug("other", {}, host))
    hook = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        await trio.sleep(0.05)
        assert crashy.open_state is immp.OpenState.failed
        await other.inject("fine")
        await hook.wait_for(1)
    assert "Failed to run plug crashy: RuntimeError: reader died" in caplog.text


async def test_plugs_and_hooks_added_and_removed_while_running():
    host, first = make_host()
    hook = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        late = host.add_plug(FakePlug("late", {}, host))
        host.add_channel("late-room", immp.Channel(late, "room"))
        with trio.fail_after(2):
            while late.open_state is not immp.OpenState.active:
                await trio.sleep(0.01)
        await late.inject("from the new plug")
        await hook.wait_for(1)
        assert hook.log[0][1] == "from the new plug"
        await host.remove("late")
        assert late.events == ["open", "close"]
        assert "late" not in host.plugs and "late-room" not in host.channels
        late_hook = host.add_hook(RecordingHook("late-hook", host=host))
        with trio.fail_after(2):
            while late_hook.open_state is not immp.OpenState.active:
                await trio.sleep(0.01)
        await first.inject("both hooks")
        await late_hook.wait_for(1)


async def test_stop_disable_and_start_again():
    host, plug = make_host()
    async with running(host):
        await host.stop("fake", disable=True)
        assert plug.open_state is immp.OpenState.disabled and plug.events == ["open", "close"]
        assert await host.start("fake")
        assert plug.open_state is immp.OpenState.active
        assert await host.restart("fake")
        assert plug.events == ["open", "close", "open", "close", "open"]


async def test_disabled_items_are_not_opened():
    host = immp.Host()
    plug = host.add_plug(FakePlug("off", {}, host), enabled=False)
    async with running(host):
        assert plug.open_state is immp.OpenState.disabled and plug.events == []


# -- the receive path --------------------------------------------------------------------------


class Filter(immp.Hook):
    def __init__(self, name, host, priority, action, log):
        super().__init__(name, {}, host, priority=priority)
        self.action, self.log = action, log

    async def before_receive(self, sent, source, primary):
        self.log.append(self.name)
        if self.action == "drop" and "secret" in str(sent.text):
            return None
        if self.action == "upper":
            return immp.SentMessage(
                sent.id, sent.channel, text=str(sent.text).upper(), user=sent.user
            )
        return sent


async def test_before_receive_runs_by_priority_and_can_replace_or_drop():
    host, plug = make_host()
    order = []
    host.add_hook(Filter("last", host, None, "pass", order))
    host.add_hook(Filter("upper", host, 2, "upper", order))
    host.add_hook(Filter("drop", host, 1, "drop", order))
    rec = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        await plug.inject("a secret")
        await plug.inject("hello")
        await rec.wait_for(1)
    assert order == ["drop", "drop", "upper", "last"]
    assert rec.log == [("rec", "HELLO", False, True)]


async def test_on_receive_levels_run_in_order_then_unprioritised_hooks():
    host, plug = make_host()
    log = []
    host.add_hook(RecordingHook("free", host=host, log=log))
    host.add_hook(RecordingHook("second", host=host, priority=2, log=log))
    host.add_hook(RecordingHook("first-slow", host=host, priority=1, log=log, delay=0.05))
    host.add_hook(RecordingHook("first-fast", host=host, priority=1, log=log))
    async with running(host):
        await plug.inject("m")
        await host.hooks["free"].wait_for(1)
    names = [entry[0] for entry in log]
    # Same level runs concurrently: the fast one finishes before the slow one.
    assert names == ["first-fast", "first-slow", "second", "free"]


async def test_a_raising_hook_is_logged_and_others_still_run(caplog):
    host, plug = make_host()

    class Broken(immp.Hook):
        async def on_receive(self, sent, source, primary):
            raise ValueError("bad hook")

    host.add_hook(Broken("broken", {}, host))
    rec = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        await plug.inject("one")
        await plug.inject("two")
        await rec.wait_for(2)
    assert "Hook broken: on_receive failed: ValueError: bad hook" in caplog.text


async def test_a_hanging_before_receive_is_cut_off_after_its_timeout(caplog):
    host, plug = make_host()

    class Hangs(immp.Hook):
        async def before_receive(self, sent, source, primary):
            await trio.sleep_forever()

    hang = host.add_hook(Hangs("hangs", {}, host, priority=1))
    hang.timeout = 0.05
    rec = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        await plug.inject("goes through")
        await rec.wait_for(1)
    # A cut-off filter neither drops nor blocks the message.
    assert rec.log[0][1] == "goes through"
    assert "Hook hangs: before_receive timed out after 0.05s" in caplog.text


async def test_a_slow_hook_does_not_hold_up_a_fast_one_beyond_its_buffer():
    host, plug = make_host()
    gate = trio.Event()

    class Slow(immp.Hook):
        async def on_receive(self, sent, source, primary):
            await gate.wait()

    host.add_hook(Slow("slow", {}, host))
    fast = host.add_hook(RecordingHook("fast", host=host))
    async with running(host):
        for n in range(100):
            await plug.inject(f"m{n}")
        await fast.wait_for(100)
        assert [entry[1] for entry in fast.log] == [f"m{n}" for n in range(100)]
        gate.set()


async def test_messages_reach_each_hook_in_order_under_a_burst():
    host, plug = make_host()
    hooks = [host.add_hook(RecordingHook(f"h{n}", host=host)) for n in range(3)]
    async with running(host):
        for n in range(2000):
            await plug.inject(str(n))
        for hook in hooks:
            await hook.wait_for(2000)
    for hook in hooks:
        assert [int(entry[1]) for entry in hook.log] == list(range(2000))


# -- the send path and echoes ------------------------------------------------------------------


async def test_before_send_can_redirect_rewrite_or_drop():
    host, plug = make_host()
    other = host.add_plug(FakePlug("other", {}, host))

    class Router(immp.Hook):
        async def before_send(self, channel, msg):
            if "drop" in str(msg.text):
                return None
            if "redirect" in str(msg.text):
                return immp.Channel(other, "elsewhere"), msg.clone(text="redirected")
            return channel, msg

    host.add_hook(Router("router", {}, host, priority=1))
    async with running(host):
        room = immp.Channel(plug, "room")
        assert await room.send(immp.Message("drop me")) == []
        receipts = await room.send(immp.Message("redirect me"))
        assert receipts[0].channel == immp.Channel(other, "elsewhere")
        await room.send(immp.Message("plain"))
    assert [str(m.text) for _, m in plug.sent] == ["plain"]
    assert [str(m.text) for _, m in other.sent] == ["redirected"]


async def test_echoes_of_our_own_messages_carry_the_original_as_source():
    host = immp.Host()
    plug = host.add_plug(FakePlug("fake", {"echo": True, "split": 2}, host))
    rec = host.add_hook(RecordingHook("rec", host=host))
    async with running(host):
        original = immp.Message("bridged")
        await immp.Channel(plug, "room").send(original)
        await plug.inject("typed by a person")
        await rec.wait_for(3)
    # Two parts of one sent message: both echoes, only the first primary.
    assert rec.log == [
        ("rec", "bridged", True, True),
        ("rec", "bridged", True, False),
        ("rec", "typed by a person", False, True),
    ]


async def test_echo_history_is_bounded():
    host = immp.Host(echo_history=10)
    plug = host.add_plug(FakePlug("fake", {}, host))
    room = immp.Channel(plug, "room")
    receipts = []
    async with running(host):
        for n in range(50):
            receipts += await room.send(immp.Message(str(n)))
    recognised = [r for r in receipts if host.echo_of(room, r.id) is not None]
    assert len(recognised) == 10
    assert recognised == receipts[-10:]  # the newest are kept


async def test_quit_during_a_burst_closes_cleanly():
    host, plug = make_host()
    host.add_hook(RecordingHook("rec", host=host, delay=0.001))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(host.run)
        await host.ready.wait()

        refused = trio.Event()

        async def flood():
            # Until the plug closes: hooks first handle what is queued for them, meanwhile.
            with pytest.raises(immp.PlugError, match=r"while (closing|not open)"):
                for n in itertools.count():
                    await plug.inject(str(n))
            refused.set()

        nursery.start_soon(flood)
        await trio.sleep(0.05)
        host.quit()
        with trio.fail_after(5):
            while host.running:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert refused.is_set()
    assert plug.events == ["open", "close"]


async def test_a_message_waits_only_for_sends_already_under_way(autojump_clock):
    # A received message may be the echo of a put still running on its channel, so the host
    # waits for such puts; but not for puts that started after it arrived.
    host = immp.Host()

    class SlowPlug(FakePlug):
        async def put(self, channel, msg):
            await trio.sleep(1.5)
            return await super().put(channel, msg)

    plug = host.add_plug(SlowPlug("slow", {}, host))
    seen_at = []

    class When(immp.Hook):
        async def on_receive(self, sent, source, primary):
            seen_at.append((str(sent.text), trio.current_time()))

    host.add_hook(When("when", {}, host))
    room = immp.Channel(plug, "room")
    async with running(host):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(room.send, immp.Message("first"))  # under way from t=0 to 1.5
            await trio.sleep(1.0)
            await plug.inject("typed by a person")  # arrives at t=1.0
            await trio.sleep(0.2)
            nursery.start_soon(room.send, immp.Message("second"))  # t=1.2 to 2.7
        with trio.fail_after(10):
            while not seen_at:
                await trio.sleep(0.1)
    text, at = seen_at[0]
    assert text == "typed by a person"
    assert at - start == pytest.approx(1.5)  # after the first put, not the second


async def test_wants_lets_a_hook_skip_messages_before_its_inbox():
    host = immp.Host()
    plug = host.add_plug(FakePlug("fake", {"echo": True}, host))

    class NoEchoes(RecordingHook):
        def wants(self, sent, source, primary):
            return sent is source

    picky = host.add_hook(NoEchoes("picky", host=host))
    picky_first = host.add_hook(NoEchoes("picky-first", host=host, priority=1))
    everything = host.add_hook(RecordingHook("all", host=host))
    async with running(host):
        await immp.Channel(plug, "room").send(immp.Message("sent by a hook"))
        await plug.inject("typed by a person")
        await everything.wait_for(2)
        await picky.wait_for(1)
    assert [entry[1] for entry in everything.log] == ["sent by a hook", "typed by a person"]
    assert picky.log == [("picky", "typed by a person", False, True)]
    assert picky_first.log == [("picky-first", "typed by a person", False, True)]


# -- the garbage collector ---------------------------------------------------------------------


async def test_running_hosts_tune_the_garbage_collector_and_the_last_to_stop_restores_it():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        first, _ = make_host()
        second, _ = make_host()
        async with running(first):
            young = gc.get_threshold()[0]
            assert young >= 10_000 and gc.get_freeze_count() > 0
            async with running(second):
                assert gc.get_threshold()[0] == young
            assert gc.get_threshold()[0] == young  # the first host still runs
        # Everything frozen is back in the collector's sight: a closed host can be collected.
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


async def test_while_messages_stream_the_young_generation_is_collected_less_often(monkeypatch):
    # Ticks of 20 ms; 20 messages in one make it busy.
    monkeypatch.setattr(immp._host._Collector, "TICK", 0.02)
    monkeypatch.setattr(immp._host._Collector, "BUSY_MESSAGES", 20)
    host, plug = make_host()
    hook = host.add_hook(RecordingHook("seen", host=host))
    async with running(host):
        quiet = gc.get_threshold()[0]
        assert quiet >= immp._host._Collector.YOUNG_THRESHOLD
        thresholds = set()
        for n in range(400):  # a stream: 400 messages over about 80 ms
            await plug.inject(str(n))
            if n % 20 == 0:
                await trio.sleep(0.004)
                thresholds.add(gc.get_threshold()[0])
        await hook.wait_for(400)
        assert immp._host._Collector.BUSY_THRESHOLD in thresholds
        # A quiet tick after the stream: the young generation is collected as often as before.
        await trio.sleep(0.1)
        assert gc.get_threshold()[0] == quiet
    assert len(hook.log) == 400


# -- stopping and starting again ---------------------------------------------------------------


async def test_a_stopped_hook_still_handles_what_was_queued_for_it():
    host, plug = make_host()
    hook = host.add_hook(RecordingHook("slow", host=host, delay=0.002))
    async with running(host):
        for n in range(100):
            await plug.inject(str(n))
        await hook.wait_for(1)  # the host has passed them on: they wait in the hook's queue
        await host.stop("slow")
        # Nothing queued for the hook was thrown away when it closed.
        assert [text for _, text, _, _ in hook.log] == [str(n) for n in range(100)]


async def test_starting_a_hook_that_is_still_closing_waits_for_it_and_runs_once():
    closing = trio.Event()

    class SlowClose(RecordingHook):
        async def close(self):
            closing.set()
            await trio.sleep(0.2)

    host, plug = make_host()
    hook = host.add_hook(SlowClose("slow", host=host))
    async with running(host):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.stop, "slow")
            await closing.wait()
            assert await host.start("slow")  # while the old lifetime is still closing
        # The old lifetime has ended by now; the new one still gets messages.
        await plug.inject("after the restart")
        await hook.wait_for(1)
        # The hook that runs now is the one the host knows: it stops like any other.
        with trio.fail_after(5):
            await host.stop("slow")
        assert hook.open_state is immp.OpenState.inactive


async def test_a_sync_target_held_up_by_two_producers_drops_rather_than_fails(autojump_clock):
    async def handle(item):
        await trio.sleep(0.1)

    worker = immp.Worker("target", 1, handle, on_error=print, timeout=lambda: None,
                         on_timeout=lambda: None, stuck_after=0.2, patient=False,
                         log=logging.getLogger("test"))  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        await worker.put((1,))
        await trio.sleep(0.01)  # taken: the worker is busy with it
        await worker.put((2,))  # fills the queue
        async with trio.open_nursery() as producers:  # two producers wait at once
            producers.start_soon(worker.put, (3,))
            producers.start_soon(worker.put, (4,))
        # Together they were held up longer than stuck_after: the next item is dropped (and
        # counted), not an error.
        await worker.put((5,))
        assert worker.dropped == 1
        worker.close()


async def test_a_workers_call_is_cut_off_after_its_timeout_never_before(autojump_clock):
    # The watchdog looks every eighth of the limit: a call is cut off once it ran for the limit
    # (at most an eighth later), and one that ends just inside it is never cut off.
    ended, timeouts = [], []

    async def handle(seconds):
        started = trio.current_time()
        try:
            await trio.sleep(seconds)
        finally:
            ended.append((seconds, round(trio.current_time() - started, 3)))

    worker = immp.Worker("w", 10, handle, on_error=print, timeout=lambda: 0.8,
                         on_timeout=lambda: timeouts.append(trio.current_time()),
                         stuck_after=60, patient=True, log=logging.getLogger("test"))  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        for seconds in (0.79, 5, 0.5, 5):
            await worker.put((seconds,))
        worker.close()
    assert [s for s, _ in ended] == [0.79, 5, 0.5, 5]
    assert ended[0][1] == 0.79 and ended[2][1] == 0.5  # inside the limit: never cut off
    for _, ran in (ended[1], ended[3]):
        assert 0.8 <= ran <= 0.9 + 1e-9  # cut off at the limit, at most an eighth late
    assert len(timeouts) == 2
