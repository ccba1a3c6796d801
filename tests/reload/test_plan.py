"""
Reload in one process (the plan and its application on a running host, demo plugs): what stays,
what restarts, and what is refused with nothing changed.
"""

from __future__ import annotations

import copy

import pytest

import immp
from immp._config import plan_reload
from immp.testing import running

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
