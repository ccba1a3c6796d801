"""A bridge target that hangs or fails: the others get everything, the host keeps answering."""

from __future__ import annotations

import pytest
import trio

import immp
from immp.testing import running

from .helpers import catch_logs, demo_texts

QUEUE = 20
COUNT = 300


def config(stuck_path: str, send_timeout) -> dict:
    demo = {"interval": None, "channel": "room", "history": 5000}
    return {
        "plugs": {
            "a": {"path": "demo", "config": demo},
            "b": {"path": "demo", "config": demo},
            "c": {"path": "demo", "config": demo},
            "stuck": {"path": stuck_path, "config": demo},
        },
        "channels": {f"{n}-room": {"plug": n, "source": "room"} for n in ("a", "b", "c", "stuck")},
        "hooks": {
            "sync": {"path": "sync", "config": {
                "channels": {"main": ["a-room", "b-room", "c-room", "stuck-room"]},
                "queue-size": QUEUE, "send-timeout": send_timeout}},
            "commands": {"path": "commands", "config": {}},
        },
    }  # fmt: skip


CASES = [
    pytest.param("tests.faults.helpers.HangingPlug", None, id="hangs-forever"),
    pytest.param("tests.faults.helpers.HangingPlug", 0.2, id="hangs-with-send-timeout"),
    pytest.param("tests.faults.helpers.FailingPlug", 30, id="raises"),
]


@pytest.mark.parametrize(("stuck_path", "send_timeout"), CASES)
async def test_a_bad_target_holds_up_nobody(stuck_path, send_timeout):
    host = immp.build_host(config(stuck_path, send_timeout))
    a, b, c, stuck = (host.plugs[n] for n in ("a", "b", "c", "stuck"))
    logs, undo = catch_logs()
    try:
        async with running(host):
            with trio.fail_after(30):
                for n in range(COUNT):
                    await a.receive(f"m{n}")
                await b.wait_puts(COUNT, timeout=20)
                await c.wait_puts(COUNT, timeout=20)
                # The host still answers commands, through the same bridge.
                await a.receive("!help", user=a.console_user)
                while not any("!help NAME" in t for t in demo_texts(a)):
                    await trio.sleep(0.02)
            target = host.hooks["sync"]._targets[host.channels["stuck-room"]]
            waiting = len(target)
    finally:
        undo()
    expected = [f"m{n}" for n in range(COUNT)]
    assert [t for t in demo_texts(b) if t.startswith("m")] == expected
    assert [t for t in demo_texts(c) if t.startswith("m")] == expected
    assert waiting <= QUEUE  # the stuck target's buffer is bounded
    text = logs.text()
    assert stuck.put_count >= 1
    if "Hanging" in stuck_path:
        assert target.dropped > 0
        assert "Target stuck-room is stuck" in text and "dropping messages" in text
        if send_timeout is not None:
            assert "Sending to stuck-room timed out after 0.2s" in text
    else:
        assert stuck.put_count >= COUNT  # each copy was tried, and failed on its own
        assert "Sending to stuck-room failed: PlugError: the network is down" in text
    assert "Traceback" not in "\n".join(logs.lines(30))  # no traceback at WARNING and above
