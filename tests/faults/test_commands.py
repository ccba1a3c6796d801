"""Bad commands through the real commands hook: refused, answered at most once, no side effects."""

from __future__ import annotations

import pytest
import trio

import immp
from immp.testing import running

from .helpers import demo_texts


def config() -> dict:
    return {
        "plugs": {
            "chat": {"path": "demo", "config": {"interval": None, "channel": "room",
                                                "console-user": "mallory"}},
            "timer": {"path": "demo", "config": {"interval": None}},
        },
        "hooks": {"commands": {"path": "commands", "config": {
            "admins": {"chat": ["console:root", "mallory"]}, "max-length": 4000}}},
    }  # fmt: skip


CASES = [
    pytest.param("!nosuchcommand", None, id="unknown"),
    pytest.param("!disable", "is for admins only", id="admin-missing-argument"),
    pytest.param("!disable timer", "is for admins only", id="admin-from-non-admin"),
    pytest.param("!channel-add x timer room", "is for admins only", id="admin-add"),
    pytest.param("!help a b c d", "sage", id="extra-arguments"),
    pytest.param('!help "unbalanced', None, id="unbalanced-quote"),
    pytest.param("!help " + "x" * 100_000, "command too long", id="100kb-line"),
    pytest.param("!" + "h" * 100_000, None, id="100kb-name"),
]


@pytest.mark.parametrize(("line", "answer"), CASES)
async def test_a_bad_command_is_refused_without_side_effects(line, answer):
    host = immp.build_host(config())
    chat = host.plugs["chat"]
    # "mallory" is listed as an admin by name; the ID is console:mallory, so she is not one.
    async with running(host):
        before = {name: item.open_state for name, item in {**host.plugs, **host.hooks}.items()}
        channels = dict(host.channels)
        await chat.receive(line, user=chat.console_user)  # ID console:mallory, not an admin
        await chat.receive("!help", user=chat.console_user)
        with trio.fail_after(10):
            while not any("!help NAME" in t for t in demo_texts(chat)):
                await trio.sleep(0.01)
        answers = demo_texts(chat)[:-1]
        after = {name: item.open_state for name, item in {**host.plugs, **host.hooks}.items()}
        assert after == before and dict(host.channels) == channels
    if answer is None:
        assert answers == [] or all("sage" in a or "No command" in a for a in answers)
    else:
        assert len(answers) == 1 and answer in answers[0], answers
    assert all(len(a) < 2000 for a in answers)
