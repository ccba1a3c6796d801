"""Hooks that raise or hang in ``before_receive`` / ``on_receive``: the others still run."""

from __future__ import annotations

import trio

import immp
from immp.testing import running

from .helpers import catch_logs

BAD = "tests.faults.helpers.BadHook"
RECORDER = "immp.testing.Recorder"


def config(**hooks) -> dict:
    return {
        "plugs": {"chat": {"path": "demo", "config": {"interval": None, "channel": "room"}}},
        "channels": {"room": {"plug": "chat", "source": "room"}},
        "hooks": hooks,
    }


async def test_raising_and_hanging_hooks_are_cut_off_and_the_rest_run():
    host = immp.build_host(config(
        first={"path": RECORDER, "priority": 0},
        raiser={"path": BAD, "priority": 1,
                "config": {"before_receive": "raise", "on_receive": "raise"}},
        hanger={"path": BAD, "priority": 2, "timeout": 0.3,
                "config": {"before_receive": "hang"}},
        after={"path": RECORDER, "priority": 3},
        loose_raiser={"path": BAD, "config": {"on_receive": "raise"}},
        loose_hanger={"path": BAD, "timeout": 0.3, "config": {"on_receive": "hang"}},
        loose={"path": RECORDER},
    ))  # fmt: skip
    chat = host.plugs["chat"]
    logs, undo = catch_logs()
    try:
        async with running(host):
            start = trio.current_time()
            for n in range(5):
                await chat.receive(f"m{n}")
            for name in ("first", "after", "loose"):
                await host.hooks[name].wait_for(lambda s: str(s.text) == "m4", timeout=15)
            elapsed = trio.current_time() - start
    finally:
        undo()
    for name in ("first", "after", "loose"):
        assert host.hooks[name].texts() == [f"m{n}" for n in range(5)], name
    # Every message went through every bad hook, each cut off after its timeout.
    assert host.hooks["raiser"].calls == {"before_receive": 5, "on_receive": 5}
    assert host.hooks["hanger"].calls["before_receive"] == 5
    assert host.hooks["loose_hanger"].calls["on_receive"] >= 1
    assert elapsed < 10  # 5 x 0.3 s of before_receive timeouts, generously
    text = logs.text()
    assert text.count("Hook hanger: before_receive timed out after 0.3s") == 5
    assert "Hook raiser: before_receive failed: RuntimeError: raiser broke in" in text
    assert "Hook raiser: on_receive failed" in text
    assert "Hook loose_raiser: on_receive failed" in text
    assert "Hook loose_hanger: on_receive timed out after 0.3s" in text


async def test_a_hook_that_never_returns_does_not_stall_the_others():
    # No timeout at all: the hook's own inbox fills up; the other hooks must not wait for it.
    count = 600
    host = immp.build_host(config(
        stuck={"path": BAD, "timeout": None, "config": {"on_receive": "hang"}},
        loose={"path": RECORDER},
        ordered={"path": RECORDER, "priority": 1},
    ))  # fmt: skip
    chat = host.plugs["chat"]
    logs, undo = catch_logs()
    try:
        async with running(host):
            with trio.fail_after(20):
                for n in range(count):
                    await chat.receive(f"m{n}")
                for name in ("loose", "ordered"):
                    await host.hooks[name].wait_for(lambda s: str(s.text) == f"m{count - 1}")
    finally:
        undo()
    for name in ("loose", "ordered"):
        assert host.hooks[name].texts() == [f"m{n}" for n in range(count)], name
    assert "Hook stuck is stuck" in logs.text()
