"""
A multi-line answer in a bridged IRC channel reaches the other network whole (issue 13, item
1), over a real ``immp`` process and two real IRC servers: ngircd (no echo-message: the IRC
plug shows hooks its own lines) and InspIRCd with echo-message (the server echoes each line).
The plug splits the answer into one PRIVMSG per line, each with its own receipt and echo; the
host still hands every hook the whole message once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from tests.irc.conftest import ngircd_available  # noqa: F401 (a fixture)
from tests.irc.test_nick import inspircd
from tests.ngircd import NgircdServer, RawClient, parse_privmsg

ECHO_MESSAGE = ("cap", "ircv3", "ircv3_echomessage")


def _config(ngircd_port: int, inspircd_port: int) -> dict:
    def plug(port: int, nick: str) -> dict:
        return {
            "path": "irc",
            "config": {
                "server": {"host": "127.0.0.1", "port": port},
                "user": {"nick": nick, "real-name": "IMMP bridge"},
                "send-delay": 0.005,
            },
        }

    return {
        "plugs": {"ng": plug(ngircd_port, "bridge-ng"), "insp": plug(inspircd_port, "bridge-in")},
        "channels": {
            "room-ng": {"plug": "ng", "source": "#room"},
            "room-insp": {"plug": "insp", "source": "#room"},
        },
        "hooks": {
            "sync": {"path": "sync", "config": {"channels": {"main": ["room-ng", "room-insp"]}}},
            "commands": {"path": "commands", "config": {"prefix": ["!"]}},
        },
    }


async def _lines_from(client: RawClient, nick: str, seconds: float) -> list[str]:
    """The texts of the PRIVMSGs from ``nick`` that arrive within ``seconds`` of quiet."""
    texts = []
    while True:
        new = await client.quiet(seconds)
        got = [parse_privmsg(line)[2] for line in new if " PRIVMSG " in line]
        got = [t for line, t in zip([ln for ln in new if " PRIVMSG " in ln], got, strict=True)
               if line.startswith(f":{nick}!")]  # fmt: skip
        if not got:
            return texts
        texts += got


@pytest.mark.usefixtures("ngircd_available")
async def test_a_multi_line_answer_is_bridged_whole_both_ways(tmp_path: Path, immp_exe, clean_env):
    async with (
        NgircdServer.running(tmp_path / "ngircd") as ngircd,
        inspircd(tmp_path / "inspircd", ECHO_MESSAGE) as insp_port,
        RawClient.connected(ngircd.port, "alice") as alice,
        RawClient.connected(insp_port, "bob") as bob,
    ):
        await alice.join("#room")
        await bob.join("#room")
        file = tmp_path / "bridge.json"
        file.write_text(json.dumps(_config(ngircd.port, insp_port)))
        log = (tmp_path / "immp.log").open("wb")
        process = await trio.lowlevel.open_process(
            [immp_exe, str(file)], stdout=log, stderr=subprocess.STDOUT, env=clean_env
        )
        log.close()
        try:
            await alice.expect(":bridge-ng!", "JOIN", "#room", timeout=30)
            await bob.expect(":bridge-in!", "JOIN", "#room", timeout=30)
            await trio.sleep(0.5)  # both plugs registered and joined; let the joins settle

            # On ngircd (no echo-message): the answer there is the plug's own lines.
            await alice.privmsg("#room", "!help")
            answer_ng = await _lines_from(alice, "bridge-ng", 1.5)
            bridged_to_insp = await _lines_from(bob, "bridge-in", 1.5)
            # On InspIRCd (echo-message): the answer there comes back from the server.
            await bob.privmsg("#room", "!help")
            answer_insp = await _lines_from(bob, "bridge-in", 1.5)
            bridged_to_ng = await _lines_from(alice, "bridge-ng", 1.5)
        finally:
            process.terminate()
            with trio.move_on_after(15):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()
    output = (tmp_path / "immp.log").read_text(errors="replace")
    assert "Traceback" not in output, output
    assert len(answer_ng) > 3 and answer_ng[0] == "Global commands:", answer_ng
    assert answer_insp == answer_ng
    # The bridge copies carry the author's name ahead of the text; every line is there, in
    # order: alice's !help first, then the whole answer.
    for bridged, author in ((bridged_to_insp, "alice"), (bridged_to_ng, "bob")):
        assert len(bridged) == 1 + len(answer_ng), (bridged, output)
        assert bridged[0].endswith("!help") and author in bridged[0]
        assert [line.split("> ", 1)[-1] for line in bridged[1:]] == answer_ng, bridged
