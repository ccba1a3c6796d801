"""
What the kill tests over real servers share: the IRC side of a bridge (the plug's config, a
reader of the channel), the Matrix side (a room the bridge's bot is in), the logging config of
the ``immp`` process, and a wait for that process to be ready.
"""

from __future__ import annotations

import re

import trio

from tests.faults.helpers import ImmpProcess
from tests.ngircd import RawClient, parse_privmsg
from tests.synapse import MatrixUser

#: INFO and up to stderr, where :class:`ImmpProcess` reads it.
LOGGING = {
    "version": 1,
    "root": {"level": "INFO", "handlers": ["err"]},
    "handlers": {"err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
}


def irc_plug(port: int, **changes) -> dict:
    """The IRC plug as ``bridge`` on a local ngircd: quick flood control, quick reconnects."""
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "user": {"nick": "bridge"},
        "send-delay": 0.01,
        "send-burst": 5,
        "reconnect-delay": 0.2,
        **changes,
    }
    return {"path": "irc", "config": config}


def number(text: str) -> int | None:
    """The ``N`` of a streamed message ``mN`` (at the end of a line, after any name)."""
    found = re.search(r"m(\d+)$", text)
    return int(found.group(1)) if found else None


async def read_numbers(watcher: RawClient, got: list[int], until: int, timeout: float) -> None:
    """Append the numbers of the channel's messages to ``got`` until ``until`` or ``timeout``."""
    with trio.move_on_after(timeout):
        while not got or got[-1] < until:
            line = await watcher.expect("PRIVMSG", timeout=timeout)
            found = number(parse_privmsg(line)[2])
            if found is not None:
                got.append(found)


def in_doubt(stderr: str) -> list[int]:
    """The numbers of the messages a restarted process logged as in doubt (and dropped)."""
    return [int(n) for n in re.findall(r"in doubt, not sent again.*m(\d+)\n", stderr)]


def doubt_count(stderr: str) -> int:
    """How many deliveries a restarted process found in doubt (its journal's start-up line)."""
    found = re.search(
        r"(?:entry|entries) from the last run \((\d+) (?:delivery|deliveries) in doubt\)", stderr
    )
    return int(found.group(1)) if found else 0


async def ready(proc: ImmpProcess, timeout: float = 60) -> None:
    """Wait until the process logged that every plug is open."""
    with trio.fail_after(timeout):
        while not is_ready(proc):
            if proc.proc.poll() is not None:
                raise AssertionError(f"immp exited {proc.proc.returncode}: {proc.stderr()}")
            await trio.sleep(0.05)


def is_ready(proc: ImmpProcess) -> bool:
    """Whether the process logged that every plug is open."""
    return any("Ready" in line for line in proc.err)


async def room_with(owner: MatrixUser, bot: MatrixUser) -> str:
    """A new room of ``owner``'s that ``bot`` has joined."""
    room = await owner.create_room(invite=[bot.user_id])
    await bot.join(room)
    return room
