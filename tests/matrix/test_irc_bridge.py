"""
End to end: a real ``immp`` process (``examples/irc-matrix.yaml`` pointed at the test servers)
bridging a Synapse room and an ngircd channel.
"""

from __future__ import annotations

import signal

import pytest
import trio
import yaml

from tests.conftest import ROOT
from tests.faults.helpers import ImmpProcess
from tests.ngircd import NgircdServer, RawClient

pytestmark = [pytest.mark.matrix, pytest.mark.irc, pytest.mark.slow]


def bridge_config(irc_port: int, synapse, bot, room: str) -> dict:
    config = yaml.safe_load((ROOT / "examples/irc-matrix.yaml").read_text())
    irc = config["plugs"]["irc"]["config"]
    irc["server"] = {"host": "127.0.0.1", "port": irc_port}
    irc.update({"send-delay": 0.01, "send-burst": 50})
    config["plugs"]["matrix"]["config"].update(
        {
            "homeserver": synapse.url,
            "user": bot.user_id,
            "password": bot.password,
            "device": "IMMPTEST",
            "sync-timeout": 5,
        }
    )
    config["channels"]["matrix-room"]["source"] = room
    config["logging"]["root"]["level"] = "INFO"
    config["logging"]["handlers"]["console"]["stream"] = "ext://sys.stderr"
    return config


def _content(event: dict) -> dict:
    return event["content"]


async def test_irc_matrix_bridge_end_to_end(
    ngircd_available, synapse, alice, bot, tmp_path, immp_exe, clean_env
):
    room = await alice.create_room(invite=[bot.user_id])
    await bot.join(room)
    # A tight limit for the bot, so that the burst meets it however slow the machine is.
    await trio.to_thread.run_sync(synapse.limit_sync, bot.user_id, 4, 3)
    async with NgircdServer.running(tmp_path / "ngircd") as server:
        file = tmp_path / "immp.yaml"
        file.write_text(yaml.safe_dump(bridge_config(server.port, synapse, bot, room)))
        async with RawClient.connected(server.port, "carol") as carol:
            await carol.join("#bridge")
            proc = ImmpProcess([immp_exe, str(file)], env=clean_env)
            try:
                await carol.expect(":bridge!", "JOIN", "#bridge", timeout=30)
                with trio.fail_after(30):
                    while not any("Ready" in line for line in proc.err):
                        await trio.sleep(0.1)

                def from_bot(check):
                    return lambda ev: ev["sender"] == bot.user_id and check(_content(ev))

                # IRC -> Matrix: the name, IRC bold as HTML, HTML typed on IRC as text.
                await carol.privmsg("#bridge", "hello \x02world\x02")
                ev = await alice.wait_for(room, from_bot(lambda c: "hello" in c.get("body", "")))
                assert ev["content"]["body"] == "carol: hello world"
                assert ev["content"]["formatted_body"] == (
                    "<strong>carol</strong>: hello <strong>world</strong>"
                )
                await carol.privmsg("#bridge", "<b>not bold</b> & <script>")
                ev = await alice.wait_for(room, from_bot(lambda c: "not bold" in c.get("body", "")))
                assert ev["content"]["body"] == "carol: <b>not bold</b> & <script>"
                assert "<b>" not in ev["content"]["formatted_body"]
                assert (
                    "&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;script&gt;"
                    in (ev["content"]["formatted_body"])
                )
                await carol.privmsg("#bridge", "\x01ACTION waves\x01")
                ev = await alice.wait_for(room, from_bot(lambda c: c.get("msgtype") == "m.emote"))
                assert ev["content"]["body"] == "carol waves"

                # Matrix -> IRC: the name, HTML as IRC formatting, emotes, lines, edits.
                await alice.send(
                    room,
                    {
                        "msgtype": "m.text",
                        "body": "**hi** there",
                        "format": "org.matrix.custom.html",
                        "formatted_body": "<strong>hi</strong> there",
                    },
                )
                line = await carol.expect("PRIVMSG #bridge", "there", timeout=20)
                assert "\x02hi\x02 there" in line and alice.user_id.split(":")[0][1:] in line
                await alice.send(room, {"msgtype": "m.emote", "body": "dances"})
                line = await carol.expect("PRIVMSG #bridge", "dances", timeout=20)
                assert "ACTION" in line or "* " in line
                await alice.send(room, "first line\nsecond line")
                await carol.expect("PRIVMSG #bridge", "first line", timeout=20)
                await carol.expect("PRIVMSG #bridge", "second line", timeout=20)
                typo = await alice.send(room, "teh typo")
                await carol.expect("PRIVMSG #bridge", "teh typo", timeout=20)
                await alice.send(
                    room,
                    {
                        "msgtype": "m.text",
                        "body": "* the typo",
                        "m.new_content": {"msgtype": "m.text", "body": "the typo"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": typo},
                    },
                )
                line = await carol.expect("PRIVMSG #bridge", "the typo", timeout=20)
                assert "edited" in line

                # A burst from IRC, through the bot's own Matrix rate limit: all, in order.
                limited = synapse.refusals(bot.user_id)
                for index in range(20):
                    await carol.privmsg("#bridge", f"burst {index}")
                await alice.wait_for(
                    room, from_bot(lambda c: c.get("body", "") == "carol: burst 19"), timeout=60
                )
                assert synapse.refusals(bot.user_id) > limited  # the limit was met
                bodies = await alice.texts(room, bot.user_id)
                assert [b for b in bodies if "burst" in b] == [
                    f"carol: burst {index}" for index in range(20)
                ]

                # No loops: nothing the bridge posted came back to either side.
                await alice.send(room, "the end")
                await carol.expect("PRIVMSG #bridge", "the end", timeout=20)
                await trio.sleep(1)
                bodies = await alice.texts(room, bot.user_id)
                assert len(bodies) == 3 + 20  # hello, not bold, waves, the burst
                assert not any(b.startswith("carol: carol") for b in bodies)
                assert not [ln for ln in carol.lines if "PRIVMSG #bridge" in ln and "carol:" in ln]
            finally:
                if proc.proc.poll() is None:
                    proc.proc.send_signal(signal.SIGTERM)
                    try:
                        await trio.to_thread.run_sync(proc.proc.wait, 15)
                    except Exception:
                        proc.proc.kill()
            assert "Traceback" not in "".join(proc.err), "".join(proc.err)[-3000:]


def test_example_config_is_valid(immp_command):
    result = immp_command("--check", str(ROOT / "examples/irc-matrix.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK (2 plugs, 2 channels" in result.stdout + result.stderr
