"""
Taking the configured nick back from someone who held it at registration, on a real ngircd
(which offers no MONITOR: the plug watches for the holder leaving, and retries on a timer) and,
where it is installed, a real InspIRCd with its monitor module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import immp
from tests.ngircd import RawClient, free_port, wait_listening

from .conftest import irc_host, plug_config

INSPIRCD = shutil.which("inspircd") or ("/usr/sbin/inspircd" if os.path.exists(
    "/usr/sbin/inspircd") else None)  # fmt: skip

# Longer than any test: a nick regained within it was regained because its holder left.
NO_TIMER = 3600


def _own_nick_changes(recorder) -> list[str]:
    """Relayed "is now known as bot" messages: the plug's own NICK shown as someone else's."""
    return [str(sent.text) for sent, _, _ in recorder.seen
            if sent.text and str(sent.text) == "is now known as bot"]  # fmt: skip


@contextlib.asynccontextmanager
async def _nick_held(server):
    """``bot`` held by a raw client in ``#test``, alice there too, and the plug in as ``bot_``."""
    async with (
        RawClient.connected(server.port, "bot") as holder,
        RawClient.connected(server.port, "alice") as alice,
    ):
        await holder.join("#test")
        await alice.join("#test")
        config = plug_config(server.port, **{"nick-retry": NO_TIMER})
        async with irc_host(config) as (host, plug, recorder):
            await alice.expect(":bot_!", "JOIN", "#test")
            yield holder, alice, host, plug, recorder


async def test_nick_taken_back_at_once_when_its_holder_quits(server):
    async with _nick_held(server) as (holder, alice, host, plug, recorder):
        await holder.send("QUIT :ghost gone")
        await alice.expect(":bot_!", " NICK :bot", timeout=20)
        # A message right after the change goes out under the nick, and the host still
        # knows its echo for our own send.
        msg = immp.Message("right after")
        [receipt] = await host.channels["chan0"].send(msg)
        line = await alice.expect("PRIVMSG #test")
        assert line.startswith(":bot!") and line.endswith(":right after")
        await recorder.wait_for(lambda sent: sent.id == receipt.id)
        sources = [source for sent, source, _ in recorder.seen
                   if str(sent.text) == "right after"]  # fmt: skip
        assert len(sources) == 1 and sources[0] is msg
        assert await plug.user_is_system(await plug.user_from_username("bot"))
        await alice.privmsg("#test", "welcome back")
        heard = await recorder.wait_for(lambda sent: str(sent.text) == "welcome back")
        assert heard.user.username == "alice"
        assert not await plug.user_is_system(heard.user)
        # The holder's quit is relayed; the plug's own nick change is not.
        assert any(sent.left and sent.left[0].username == "bot" for sent, _, _ in
                   recorder.seen)  # fmt: skip
        assert _own_nick_changes(recorder) == []


async def test_nick_taken_back_at_once_when_its_holder_changes_nick(server):
    async with _nick_held(server) as (holder, alice, host, _, recorder):
        await holder.send("NICK someone")
        await alice.expect(":bot_!", " NICK :bot", timeout=20)
        await host.channels["chan0"].send(immp.Message("back as bot"))
        line = await alice.expect("PRIVMSG #test")
        assert line.startswith(":bot!") and line.endswith(":back as bot")
        renamed = await recorder.wait_for(lambda sent: str(sent.text) == "is now known as someone")
        assert renamed.user.username == "bot"  # the holder, under the nick it left
        assert _own_nick_changes(recorder) == []


async def test_nick_taken_back_on_the_timer_when_no_channel_is_shared(server, caplog):
    caplog.set_level(logging.DEBUG, logger="immp_irc")

    def records(text: str, level: int = logging.DEBUG) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("immp_irc")
                and r.levelno >= level and text in r.getMessage()]  # fmt: skip

    async with (
        RawClient.connected(server.port, "bot") as holder,
        RawClient.connected(server.port, "alice") as alice,
    ):
        await alice.join("#test")
        config = plug_config(server.port, **{"nick-retry": 0.2})
        async with irc_host(config) as (_, plug, _):
            await alice.expect(":bot_!", "JOIN", "#test")
            # ngircd offers no MONITOR, so this is the path a real ngircd takes.
            assert plug.connection.state.isupport.monitor is None
            with trio.fail_after(30):
                while len(records("Asking for nick bot")) < 3:
                    await trio.sleep(0.05)
            # Refused attempts after registration neither pick another alternative nor
            # complain: one note that the nick is held, the rest at DEBUG.
            assert plug.connection.state.nickname == "bot_"
            assert records("", logging.WARNING) == []
            assert len(records("held by someone else", logging.INFO)) == 1
            await holder.send("QUIT :gone")
            await alice.expect(":bot_!", " NICK :bot", timeout=30)
            with trio.fail_after(10):
                while not records("Regained nick bot", logging.INFO):
                    await trio.sleep(0.05)
            assert records("", logging.WARNING) == []


async def test_nick_taken_back_again_after_a_reconnect(server):
    # The plug waits at least 2s before reconnecting: time for the holder to come back first.
    config = plug_config(server.port, **{"nick-retry": NO_TIMER, "reconnect-delay": 4,
                                         "reconnect-max": 4})  # fmt: skip
    async with (
        RawClient.connected(server.port, "bot") as holder,
        RawClient.connected(server.port, "alice") as alice,
    ):
        await holder.join("#test")
        await alice.join("#test")
        async with irc_host(config) as (_, plug, _):
            await alice.expect(":bot_!", "JOIN", "#test")
            await holder.send("QUIT :gone")
            await alice.expect(":bot_!", " NICK :bot", timeout=20)
            await server.restart(kill=True)
            async with (
                RawClient.connected(server.port, "bot") as holder_again,
                RawClient.connected(server.port, "alice") as alice_again,
            ):
                await holder_again.join("#test")
                await alice_again.join("#test")
                await alice_again.expect(":bot_!", "JOIN", "#test", timeout=20)
                assert plug.connection.registrations == 2
                await holder_again.send("QUIT :gone again")
                await alice_again.expect(":bot_!", " NICK :bot", timeout=20)


def _inspircd_config(directory: Path, port: int, modules=()) -> Path:
    """
    Write an InspIRCd 3 config for a test server on ``port`` (no DNS, ident or fake lag), with
    the monitor module and ``modules`` (e.g. ``("cap", "ircv3", "ircv3_echomessage")``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "motd").write_text("test server\n")
    config = directory / "inspircd.conf"
    config.write_text(
        f"""
<server name="irc.test" description="IMMP test server" network="Test">
<admin name="test" nick="test" email="test@irc.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" timeout="60" pingfreq="120" localmax="100" globalmax="100"
  maxconnwarn="off" useident="no" resolvehostnames="no" fakelag="off" threshold="1000"
  commandrate="100000" limit="100">
<files motd="{directory}/motd">
<path moduledir="/usr/lib/inspircd/modules" datadir="{directory}" logdir="{directory}"
  runtimedir="{directory}">
<pid file="{directory}/inspircd.pid">
<dns timeout="1">
<limits maxnick="30">
<module name="monitor">
"""
        + "".join(f'<module name="{name}">\n' for name in modules)
    )
    return config


@contextlib.asynccontextmanager
async def inspircd(directory: Path, modules=()) -> AsyncIterator[int]:
    """
    A real InspIRCd 3 with its monitor module and ``modules``, on a free loopback port
    (yielded).
    """
    if INSPIRCD is None:
        if os.environ.get("CI"):
            pytest.fail("inspircd is not installed, and CI is set: install it (apt-get install "
                        "inspircd); .ci/run does")  # fmt: skip
        pytest.skip("inspircd is not installed (apt-get install inspircd)")
    port = free_port()
    config = _inspircd_config(directory, port, modules)
    log_path = directory / "inspircd.log"
    log = log_path.open("ab")  # a local file, handed to the process
    process = await trio.lowlevel.open_process(
        [INSPIRCD, "--nofork", "--runasroot", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    log.close()
    try:
        with trio.fail_after(10):
            await wait_listening(process, port, log_path)
        yield port
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(5):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()


async def test_nick_taken_back_when_monitor_says_it_is_free(tmp_path, caplog):
    # The holder shares no channel with the plug and there is no timer: only MONITOR can tell.
    caplog.set_level(logging.DEBUG, logger="immp_irc")
    async with inspircd(tmp_path / "inspircd") as port:
        async with (
            RawClient.connected(port, "bot") as holder,
            RawClient.connected(port, "alice") as alice,
        ):
            await alice.join("#test")
            async with irc_host(plug_config(port, **{"nick-retry": NO_TIMER})) as (_, plug, _):
                await alice.expect(":bot_!", "JOIN", "#test")
                assert plug.connection.state.isupport.monitor
                # The server has told the plug the holder is online (730), so the quit below
                # reaches it as 731 RPL_MONOFFLINE.
                with trio.fail_after(10):
                    while " 730 bot_ :bot" not in caplog.text:
                        await trio.sleep(0.05)
                await holder.send("QUIT :gone")
                await alice.expect(":bot_!", " NICK :bot", timeout=20)
