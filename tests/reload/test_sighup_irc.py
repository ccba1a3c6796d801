"""
Reload over a real ``immp`` process and a real ngircd: what an IRC user sees when the config file
changes and the process gets SIGHUP (or an admin types ``!reload``).
"""

from __future__ import annotations

import os
import signal

import trio
import yaml

from tests.faults.helpers import ImmpProcess
from tests.irc.conftest import plug_config
from tests.ngircd import RawClient, parse_privmsg


def bridge_config(port: int, admin: str = "nobody!x@y") -> dict:
    return {
        "plugs": {
            "irc-a": {"path": "irc", "config": plug_config(port, user={"nick": "bota"})},
            "irc-b": {"path": "irc", "config": plug_config(port, user={"nick": "botb"})},
        },
        "channels": {
            "alpha": {"plug": "irc-a", "source": "#alpha"},
            "beta": {"plug": "irc-b", "source": "#beta"},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {
                "channels": {"main": ["alpha", "beta"]}}},
            "commands": {"path": "commands", "config": {"admins": {"irc-a": [admin]}}},
        },
    }  # fmt: skip


def write(path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


async def relayed(client: RawClient, bot: str, channel: str, text: str = "",
                  timeout: float = 20) -> str:  # fmt: skip
    """The text of the next PRIVMSG ``bot`` sends to ``channel`` (that contains ``text``)."""
    line = await client.expect(f":{bot}!", f"PRIVMSG {channel} ", text, timeout=timeout)
    return parse_privmsg(line)[2]


async def copies_of(client: RawClient, text: str, count: int) -> set[tuple[str, str, str]]:
    """``(bot, channel, text)`` of the first ``count`` messages containing ``text``, any order."""
    found: set[tuple[str, str, str]] = set()
    with trio.fail_after(20):
        while len(found) < count:
            for line in client.lines:
                if line.startswith((":bota!", ":botb!")) and " PRIVMSG " in line and text in line:
                    found.add(parse_privmsg(line))
            await client.quiet(0.1)
    return found


async def signon(client: RawClient, nick: str) -> str:
    """When the server says ``nick`` connected (WHOIS, RPL_WHOISIDLE's signon time)."""
    await client.send(f"WHOIS {nick}")
    return (await client.expect(" 317 ", f" {nick} ")).split(" ")[5]


def no_quit_or_join(lines: list[str]) -> None:
    bots = [ln for ln in lines if ln.startswith((":bota!", ":botb!"))]
    assert not [ln for ln in bots if " QUIT " in ln or (" JOIN " in ln and "#gamma" not in ln)], (
        bots
    )


async def start(tmp_path, immp_exe, clean_env, data) -> tuple[ImmpProcess, object]:
    file = tmp_path / "bridge.yaml"
    write(file, data)
    proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
    return proc, file


async def joined(client: RawClient, *pairs: tuple[str, str]) -> None:
    """Wait until each ``(bot, channel)`` JOIN was seen, in any order."""
    wanted = set(pairs)
    with trio.fail_after(30):
        while True:
            for line in client.lines:
                for bot, channel in list(wanted):
                    if line.startswith(f":{bot}!") and " JOIN " in line and channel in line:
                        wanted.discard((bot, channel))
            if not wanted:
                return
            await client.quiet(0.2)


async def test_sighup_adds_a_channel_without_dropping_the_connections(
    server, tmp_path, immp_exe, clean_env
):
    async with RawClient.connected(server.port, "watcher") as watcher:
        for channel in ("#alpha", "#beta", "#gamma"):
            await watcher.join(channel)
        data = bridge_config(server.port)
        proc, file = await start(tmp_path, immp_exe, clean_env, data)
        try:
            await joined(watcher, ("bota", "#alpha"), ("botb", "#beta"))
            before = (await signon(watcher, "bota"), await signon(watcher, "botb"))
            await watcher.quiet(0.5)
            seen_from = len(watcher.lines)

            data["channels"]["gamma"] = {"plug": "irc-a", "source": "#gamma"}
            data["hooks"]["sync"]["config"]["channels"]["main"].append("gamma")
            write(file, data)
            os.kill(proc.proc.pid, signal.SIGHUP)
            await trio.to_thread.run_sync(proc.wait_for, "Reloaded")
            # The unchanged plug irc-a joins the new channel on its open connection...
            await joined(watcher, ("bota", "#gamma"))
            # ...and the new channel is in the bridge: said there, copied to both others.
            await watcher.privmsg("#gamma", "hello from gamma")
            copies = await copies_of(watcher, "hello from gamma", 2)
            assert copies == {
                ("botb", "#beta", "<watcher> hello from gamma"),
                ("bota", "#alpha", "<watcher> hello from gamma"),
            }, copies
            # Neither bot left or reconnected: no QUIT, no new JOIN of the old channels, and
            # the server still has the connections it had (same signon time).
            no_quit_or_join(watcher.lines[seen_from:] + await watcher.quiet(0.5))
            assert (await signon(watcher, "bota"), await signon(watcher, "botb")) == before
            assert "Reloaded" in proc.stderr() and "added channel gamma" in proc.stderr()
        finally:
            proc.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(proc.finish) == 0


async def test_sighup_with_a_broken_file_changes_nothing(server, tmp_path, immp_exe, clean_env):
    async with RawClient.connected(server.port, "watcher") as watcher:
        for channel in ("#alpha", "#beta"):
            await watcher.join(channel)
        data = bridge_config(server.port)
        proc, file = await start(tmp_path, immp_exe, clean_env, data)
        try:
            await joined(watcher, ("bota", "#alpha"), ("botb", "#beta"))
            seen_from = len(watcher.lines)
            errors_before = len(proc.err)
            # A channel on a plug that does not exist, and the sync hook told to drop beta.
            data["channels"]["gamma"] = {"plug": "irc-c", "source": "#gamma"}
            data["hooks"]["sync"]["config"]["channels"]["main"] = ["alpha"]
            write(file, data)
            os.kill(proc.proc.pid, signal.SIGHUP)
            line = await trio.to_thread.run_sync(proc.wait_for, "Reload failed")
            assert str(file) in line and "channels.gamma.plug" in line, line
            # The bridge runs as before: beta still gets what alpha says.
            await watcher.privmsg("#alpha", "still bridged")
            assert await relayed(watcher, "botb", "#beta") == "<watcher> still bridged"
            no_quit_or_join(watcher.lines[seen_from:] + await watcher.quiet(0.5))
            assert proc.proc.poll() is None
            new_lines = proc.err[errors_before:]
            assert len([ln for ln in new_lines if "eload" in ln]) == 1, new_lines
        finally:
            proc.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(proc.finish) == 0


async def test_reload_command_changes_and_removes_a_hook(server, tmp_path, immp_exe, clean_env):
    async with RawClient.connected(server.port, "watcher") as watcher:
        await watcher.send("WHOIS watcher")
        words = (await watcher.expect(" 311 ", " watcher ")).split(" ")
        admin = f"{words[3]}!{words[4]}@{words[5]}"
        for channel in ("#alpha", "#beta"):
            await watcher.join(channel)
        data = bridge_config(server.port, admin)
        proc, file = await start(tmp_path, immp_exe, clean_env, data)

        async def command(text: str) -> str:
            await watcher.privmsg("#alpha", text)
            return await relayed(watcher, "bota", "#alpha")

        try:
            await joined(watcher, ("bota", "#alpha"), ("botb", "#beta"))
            seen_from = len(watcher.lines)
            await watcher.privmsg("#alpha", "one")
            assert await relayed(watcher, "botb", "#beta") == "<watcher> one"

            # A changed hook restarts with its new config: copies now carry the new name.
            data["hooks"]["sync"]["config"]["name-format"] = "{{ user.name }} (via alpha)"
            write(file, data)
            assert await command("!reload") == "Reloaded: restarted hook sync."
            await watcher.privmsg("#alpha", "two")
            assert await relayed(watcher, "botb", "#beta", "two") == "<watcher (via alpha)> two"

            # A broken file: the answer says why, and the bridge goes on as it was.
            file.write_text(file.read_text() + "hooks: {}\n")  # a second `hooks`
            answer = await command("!reload")
            assert answer.startswith("Reload failed, nothing changed: "), answer
            assert "duplicate key 'hooks'" in answer, answer
            # ...and the log says it too, in the same words (not only the chat that asked).
            line = await trio.to_thread.run_sync(proc.wait_for, "Reload failed")
            assert answer in line, line
            await watcher.privmsg("#alpha", "three")
            assert await relayed(watcher, "botb", "#beta", "three") == "<watcher (via alpha)> three"

            # A removed hook stops: nothing is copied any more.
            del data["hooks"]["sync"]
            write(file, data)
            assert await command("!reload") == "Reloaded: removed hook sync."
            await watcher.privmsg("#alpha", "four")
            later = await watcher.quiet(2)
            assert not [ln for ln in later if ln.startswith(":botb!") and "four" in ln], later
            no_quit_or_join(watcher.lines[seen_from:])
        finally:
            proc.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(proc.finish) == 0


async def test_messages_said_during_a_reload_that_restarts_the_bridge_all_arrive_in_order(
    server, tmp_path, immp_exe, clean_env
):
    # A reload that changes an IRC plug reconnects it, and closes the sync hook bridging it and
    # opens a new one once the plug is back: what IRC users on the other network say meanwhile
    # waits for the new hook and is bridged, in order, none of it dropped.
    async with (
        RawClient.connected(server.port, "speaker") as speaker,
        RawClient.connected(server.port, "watcher") as watcher,
    ):
        await speaker.join("#alpha")
        await watcher.join("#beta")
        data = bridge_config(server.port)
        proc, file = await start(tmp_path, immp_exe, clean_env, data)
        try:
            await joined(watcher, ("botb", "#beta"))
            await joined(speaker, ("bota", "#alpha"))
            data["plugs"]["irc-b"]["config"]["rejoin-delay"] = 0.2  # irc-b and the hook restart
            write(file, data)
            for i in range(30):
                await speaker.privmsg("#alpha", f"line {i}")
                if i == 10:
                    os.kill(proc.proc.pid, signal.SIGHUP)
                await trio.sleep(0.05)
            texts = [await relayed(watcher, "botb", "#beta", "line ") for _ in range(30)]
            assert texts == [f"<speaker> line {i}" for i in range(30)]
            await trio.to_thread.run_sync(proc.wait_for, "Reloaded")
            assert "restarted plug irc-b" in proc.stderr()
            assert "restarted hook sync" in proc.stderr()
        finally:
            proc.proc.send_signal(signal.SIGTERM)
            assert await trio.to_thread.run_sync(proc.finish) == 0
