"""
Reload in one process (the plan and its application on a running host, demo plugs): what stays,
what restarts, and what is refused with nothing changed.
"""

from __future__ import annotations

import copy

import pytest
import trio

import immp
from immp._config import plan_reload
from immp.testing import running
from immp_demo import DemoPlug

BASE = {
    "plugs": {"a": {"path": "demo", "config": {"interval": None}},
              "b": {"path": "demo", "config": {"interval": None}}},
    "channels": {"ra": {"plug": "a", "source": "ra"}, "rb": {"plug": "b", "source": "rb"}},
    "hooks": {"sync": {"path": "sync", "config": {"channels": {"main": ["ra", "rb"]},
                                                  "plug": "bridge"}}},
}  # fmt: skip


async def test_a_changed_plug_restarts_its_channels_and_the_hook_using_them():
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        a, b, sync = host.plugs["a"], host.plugs["b"], host.hooks["sync"]
        new = copy.deepcopy(BASE)
        new["plugs"]["b"]["config"]["interval"] = 3600
        plan = plan_reload(host, new, BASE)
        await plan.apply()
        assert plan.describe() == "restarted plug b; restarted channel rb; restarted hook sync"
        assert host.plugs["a"] is a and a.open_state is immp.OpenState.active
        assert host.plugs["b"] is not b and host.plugs["b"].config["interval"] == 3600
        assert b.open_state is immp.OpenState.inactive
        assert host.channels["rb"].plug is host.plugs["b"]
        # The sync hook came back with its virtual plug (the old one went with the old hook).
        assert host.hooks["sync"] is not sync
        assert host.hooks["sync"].open_state is immp.OpenState.active
        assert host.plugs["bridge"].open_state is immp.OpenState.active


async def test_a_plug_restarted_by_a_reload_keeps_counting():
    # Its message counters (stats, and the metrics made of them) only grow in one process: a
    # reload that restarts plug b goes on from what the old b counted.
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        await host.plugs["b"].receive("one", channel="rb")
        await host.plugs["b"].receive("two", channel="rb")
        await host.plugs["a"].wait_puts(2)
        before = host.stats()["plugs"]["b"]
        assert (before["received"], before["sent"]) == (2, 0)
        new = copy.deepcopy(BASE)
        new["plugs"]["b"]["config"]["interval"] = 3600
        await plan_reload(host, new, BASE).apply()
        await host.plugs["a"].receive("three", channel="ra")
        await host.plugs["b"].wait_puts(1)
        with trio.fail_after(5):  # and its echo is taken in
            while host.stats()["plugs"]["b"]["received"] < 3:
                await trio.sleep(0.01)
        after = host.stats()["plugs"]["b"]
        assert (after["received"], after["sent"]) == (3, 1)  # (received: its echo too)


async def test_a_send_to_a_failed_plug_is_counted_as_a_failure():
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        b = host.plugs["b"]
        b.open_state = immp.OpenState.failed  # as when its open() raised
        with pytest.raises(immp.PlugError, match="plug b is failed: not sent"):
            await host.channels["rb"].send(immp.Message("lost"))
        assert host.stats()["plugs"]["b"]["send_failures"] == 1


async def test_nothing_changed_is_nothing_touched():
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        items = {**host.plugs, **host.hooks}
        plan = plan_reload(host, copy.deepcopy(BASE), BASE)
        await plan.apply()
        assert plan.empty and plan.describe() == "no changes"
        assert {**host.plugs, **host.hooks} == items


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(store="memory"), "store"),  # valid, but another store
        (lambda d: d["channels"].update(rc={"plug": "nope", "source": "x"}), "channels.rc.plug"),
        (lambda d: d["hooks"]["sync"]["config"].update(joins="maybe"), "hooks.sync.config.joins"),
    ],
)
async def test_a_file_that_cannot_be_applied_changes_nothing(change, key):
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        items = {**host.plugs, **host.hooks}
        channels = dict(host.channels)
        new = copy.deepcopy(BASE)
        change(new)
        with pytest.raises(immp.ConfigError) as caught:
            plan_reload(host, new, BASE, file="bridge.yaml")
        assert caught.value.path == key and str(caught.value).startswith("bridge.yaml: ")
        if key == "store":
            assert "restart" in str(caught.value)
        assert {**host.plugs, **host.hooks} == items and host.channels == channels
        assert all(i.open_state is immp.OpenState.active for i in items.values())


async def test_a_hook_that_fails_to_open_is_named_in_the_summary():
    # "restarted hook metrics" alone read as a success while the hook had failed (its port was
    # taken): the summary says what did not open.
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        host = immp.build_host(copy.deepcopy(BASE))
        async with running(host):
            new = copy.deepcopy(BASE)
            new["hooks"]["metrics"] = {"path": "metrics", "config": {"listen": f"127.0.0.1:{port}"}}
            plan = plan_reload(host, new, BASE)
            await plan.apply()
            assert host.hooks["metrics"].open_state is immp.OpenState.failed
            assert plan.describe() == (
                "added hook metrics; FAILED to open metrics (see the error above)"
            )
    finally:
        taken.close()


def _hook_changed(new):
    new["hooks"]["sync"]["config"]["plug"] = "bridge2"


def _plug_changed(new):
    new["plugs"]["b"]["config"]["interval"] = 3600


@pytest.mark.parametrize("change", [_hook_changed, _plug_changed], ids=["hook", "plug"])
async def test_messages_received_during_a_reload_are_bridged_in_order(change):
    # A reload that restarts the sync hook (its config changed, or a plug it bridges did) must
    # not let what arrives meanwhile pass by the hook: every message reaches the other side.
    host = immp.build_host(copy.deepcopy(BASE))
    async with running(host):
        old_b = host.plugs["b"]
        new = copy.deepcopy(BASE)
        change(new)
        async with trio.open_nursery() as nursery:

            async def stream():
                for i in range(60):
                    await host.plugs["a"].receive(f"message {i}", channel="ra")
                    await trio.sleep(0.002)

            nursery.start_soon(stream)
            await trio.sleep(0.03)
            await plan_reload(host, new, BASE).apply()
        b = host.plugs["b"]  # a new plug after a change of its own: the old one's puts count

        def got():
            plugs = [old_b] if b is old_b else [old_b, b]
            return [str(m.text) for plug in plugs for _, m in plug.puts]

        with trio.move_on_after(3):
            while len(got()) < 60:
                await trio.sleep(0.01)
    assert got() == [f"message {i}" for i in range(60)]


class GatedDemo(DemoPlug):
    """A demo network whose open waits for ``GatedDemo.gate`` while it is set (a slow server)."""

    gate: trio.Event | None = None

    async def open(self):
        if GatedDemo.gate is not None:
            await GatedDemo.gate.wait()
        await super().open()

    async def edit(self, receipt, msg):
        if self.open_state is not immp.OpenState.active:  # as a network's connection would
            raise immp.PlugError(f"{self.name} is {self.open_state.value}: not edited")
        return await super().edit(receipt, msg)


class ReadyProbe(immp.Hook):
    """A hook that notes, in on_ready, whether plug c was open then."""

    seen: list = []

    async def on_ready(self):
        ReadyProbe.seen.append(self.host.plugs["c"].open_state)


async def test_a_plug_slow_to_open_after_a_reload_holds_back_only_what_goes_to_it():
    # A reload that changes plug c restarts the sync hook that bridges it with a and b. While
    # the new c takes its time to open, a and b go on bridging; what goes to c waits for it,
    # and arrives once it is open. Before, the hook opened only after c: every bridge waited.
    base = copy.deepcopy(BASE)
    base["plugs"]["c"] = {"path": f"{__name__}.GatedDemo", "config": {"interval": None}}
    base["channels"]["rc"] = {"plug": "c", "source": "rc"}
    base["hooks"]["sync"]["config"]["channels"]["main"].append("rc")
    # Restarted with the rest (it names channel rc): ready once c is open, not before.
    base["hooks"]["probe"] = {"path": f"{__name__}.ReadyProbe", "config": {"channel": "rc"}}
    ReadyProbe.seen = []
    host = immp.build_host(copy.deepcopy(base))
    async with running(host):
        a = host.plugs["a"]
        before = await a.receive("before", channel="ra")
        await host.plugs["c"].wait_puts(1)
        new = copy.deepcopy(base)
        new["plugs"]["c"]["config"]["interval"] = 3600
        plan = plan_reload(host, new, base)
        old = host.hooks["sync"]
        GatedDemo.gate = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(plan.apply)
                with trio.fail_after(5):
                    while (sync := host.hooks.get("sync")) is old or (
                        sync is None or sync.open_state is not immp.OpenState.active
                    ):
                        await trio.sleep(0.01)
                # An edit goes to the plug itself, not through a send: it waits for c too.
                await a.edit_message(before.id, "before, edited")
                await a.receive("while c opens", channel="ra")
                await host.plugs["b"].wait_puts(3)
                c = host.plugs["c"]
                assert c.open_state is immp.OpenState.starting and not c.puts
                GatedDemo.gate.set()
                await c.wait_puts(2)
        finally:
            GatedDemo.gate = None
        assert [(str(m.text), m.edited) for _, m in c.puts] == [
            ("before, edited", True),
            ("while c opens", False),
        ]
        assert [str(m.text) for _, m in host.plugs["b"].puts] == [
            "before",
            "before, edited",
            "while c opens",
        ]
        assert plan.describe() == (
            "restarted plug c; restarted channel rc; restarted hooks sync, probe"
        )
        with trio.fail_after(5):
            while len(ReadyProbe.seen) < 2:
                await trio.sleep(0.01)
        assert ReadyProbe.seen == [immp.OpenState.active] * 2  # at start, and after the reload
