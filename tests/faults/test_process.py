"""
A real ``immp`` process: shutdown during a burst (SIGTERM, IRC QUIT seen on ngircd), secrets
kept out of DEBUG logs that do show the raw protocol, and ``-w`` killed at random moments while
the config keeps changing. The SASL password, which ngircd cannot ask for, is checked against a
scripted SASL peer through the real plug.
"""

from __future__ import annotations

import base64
import random
import re
import signal
import time

import pytest
import trio
import yaml

from immp_irc.redact import Redactor, redact
from tests.conftest import ROOT
from tests.irc.conftest import irc_host, plug_config
from tests.irc.inspircd import IRCV3_MODULES, inspircd
from tests.irc.test_connection import ScriptedPeer
from tests.ngircd import NgircdServer, RawClient

from .helpers import ImmpProcess, catch_logs

SERVER_PASSWORD = "srv-Pa55-7f3a9c"
SASL_PASSWORD = "sasl-Pa55-e1d0b2"
NICKSERV_PASSWORD = "ns-Pa55-4c8e21"
OPER_PASSWORD = "oper-Pa55-90ab7d"
# A login by a verb the redaction does not know (QuakeNet-style services have others).
LOGON_PASSWORD = "logon-Pa55-5d17ce"
QUIT = "Bye from the faults suite"
REPLY = "alice says hi"
# Services logins as people write them in ``perform``; ngircd has no services and answers
# "no such nick" or "unknown command", which shows the line went out.
PERFORM = [f"PRIVMSG NickServ :IDENTIFY bot {NICKSERV_PASSWORD}",
           f"NS IDENTIFY {NICKSERV_PASSWORD}", f"PRIVMSG Q@CServe.test :LOGON bot {LOGON_PASSWORD}",
           f"OPER bot {OPER_PASSWORD}"]  # fmt: skip
SECRETS = (SERVER_PASSWORD, SASL_PASSWORD, NICKSERV_PASSWORD, OPER_PASSWORD, LOGON_PASSWORD)


def bridge_config(port: int) -> dict:
    return {
        "plugs": {
            "irc": {"path": "irc", "config": {
                "server": {"host": "127.0.0.1", "port": port, "password": SERVER_PASSWORD},
                "user": {"nick": "bot"}, "sasl": {"username": "bot", "password": SASL_PASSWORD},
                # ngircd offers no SASL: go on without it (the password must still not leak).
                "sasl-required": False,
                "perform": PERFORM, "quit": QUIT, "send-delay": 0.001, "send-burst": 50}},
            "timer": {"path": "demo", "config": {"interval": 0.002, "text": "burst"}},
        },
        "channels": {"irc-room": {"plug": "irc", "source": "#bridge"},
                     "timer-room": {"plug": "timer", "source": "dummy"}},
        "hooks": {"sync": {"path": "sync", "config": {
            "channels": {"main": ["irc-room", "timer-room"]}}}},
        "logging": {"version": 1,
                    "formatters": {"f": {"format": "%(levelname)s %(name)s: %(message)s"}},
                    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "f",
                                         "stream": "ext://sys.stderr"}},
            "root": {"level": "DEBUG", "handlers": ["err"]}},
    }  # fmt: skip


async def test_sigterm_during_a_burst_quits_politely_and_leaks_no_secret(ngircd_available,
                                                                         tmp_path, immp_exe,
                                                                         clean_env):  # fmt: skip
    async with NgircdServer.running(tmp_path / "ngircd", password=SERVER_PASSWORD) as server:
        file = tmp_path / "immp.yaml"
        file.write_text(yaml.safe_dump(bridge_config(server.port)))
        file.chmod(0o640)
        async with RawClient.connected(server.port, "alice", register=False) as alice:
            await alice.send(f"PASS {SERVER_PASSWORD}")
            await alice.register()
            await alice.join("#bridge")
            proc = ImmpProcess([immp_exe, "-w", str(file)], env=clean_env)
            try:
                await alice.expect(":bot!", "JOIN", "#bridge", timeout=20)
                await alice.collect("PRIVMSG", 20)  # the burst is flowing
                proc.proc.send_signal(signal.SIGTERM)
                start = time.monotonic()
                quit_line = await alice.expect(":bot!", " QUIT ", timeout=15)
                with trio.fail_after(15):
                    while proc.proc.poll() is None:
                        await trio.sleep(0.05)
                took = time.monotonic() - start
            finally:
                status = proc.finish(timeout=5)
    err = proc.stderr()
    assert status == 0, err[-3000:]
    assert took < 10
    assert QUIT in quit_line
    assert "INFO immp" in err  # the DEBUG logging config was applied
    # The raw protocol is logged at DEBUG, both ways, one record per line...
    irc = r"DEBUG immp_irc\.plug\.IRCPlug\.irc: "
    for pattern in (r">> PASS \*\*\*$", r">> CAP LS 302$", r">> NICK bot$", r">> USER bot ",
                    r"<< :irc\.test 001 bot :", r"<< :irc\.test 376 bot ", r">> JOIN #bridge$",
                    r">> PRIVMSG #bridge :.*burst$", r"<< PING |<< :irc\.test PONG ",
                    r">> PRIVMSG NickServ :IDENTIFY \*\*\*$", r">> NS IDENTIFY \*\*\*$",
                    r">> PRIVMSG Q@CServe\.test :\*\*\*$", r">> OPER bot \*\*\*$",
                    r"<< :irc\.test 401 bot NickServ ",
                    r"<< :irc\.test 421 bot NS ", r">> QUIT :"):  # fmt: skip
        assert re.search(f"^{irc}(?:{pattern})", err, re.MULTILINE), pattern
    # ... and never a secret, at any level.
    for secret in SECRETS:
        assert secret not in err
        assert secret not in "".join(proc.out)
    assert "Traceback" not in err
    # -w wrote the file back, complete, with its permission bits.
    assert file.stat().st_mode & 0o777 == 0o640
    written = yaml.safe_load(file.read_text())
    assert written["plugs"]["irc"]["config"]["server"]["password"] == SERVER_PASSWORD


async def test_sasl_and_perform_secrets_stay_out_of_debug_logs():
    # ngircd has no SASL: the scripted peer of the IRC tests runs the IRCv3 exchange.
    peer = ScriptedPeer(accept=("bot", SASL_PASSWORD))
    payload = base64.b64encode(f"bot\0bot\0{SASL_PASSWORD}".encode()).decode()
    config = plug_config(peer.port, sasl={"username": "bot", "password": SASL_PASSWORD},
                         perform=PERFORM)  # fmt: skip
    catcher, undo = catch_logs()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.serve)
            config["server"]["port"] = peer.port
            async with irc_host(config, channels=()) as (_, plug, _):
                with trio.fail_after(10):
                    while PERFORM[-1] not in (peer.connections or [[]])[0]:
                        await trio.sleep(0.02)
                assert plug.connection.state.account == "bot"  # SASL really logged in
            nursery.cancel_scope.cancel()
    finally:
        undo()
    # The secrets were on the wire...
    wire = peer.connections[0]
    assert f"AUTHENTICATE {payload}" in wire and all(line in wire for line in PERFORM)
    # ... the exchange is in the log, line by line, with the secrets cut out ...
    lines = [f"{r.name}: {r.getMessage()}" for r in catcher.records]
    for expected in (">> AUTHENTICATE PLAIN", "<< AUTHENTICATE +", ">> AUTHENTICATE ***",
                     "<< :peer 903 bot :SASL authentication successful", ">> CAP END",
                     ">> PRIVMSG NickServ :IDENTIFY ***", ">> NS IDENTIFY ***",
                     ">> PRIVMSG Q@CServe.test :***", ">> OPER bot ***"):  # fmt: skip
        assert f"immp_irc.plug.IRCPlug.irc: {expected}" in lines, expected
    # ... and no record holds a secret, the payload or a piece of it, at any level.
    text = catcher.text()
    for secret in (*SECRETS, payload, payload[:24], payload[-24:]):
        assert secret not in text, secret


async def test_a_perform_line_echoed_by_a_real_server_stays_out_of_the_log(tmp_path):
    # InspIRCd with echo-message sends the bot its own PRIVMSG back: the perform line's text
    # arrives a second time, in a line the plug reads (and logs at DEBUG).
    login = f"PRIVMSG alice :LOGON bot {LOGON_PASSWORD}"
    catcher, undo = catch_logs()
    try:
        async with inspircd(tmp_path / "inspircd", modules=IRCV3_MODULES) as port:
            async with RawClient.connected(port, "alice") as alice:
                async with irc_host(plug_config(port, perform=[login]), channels=()) as hosted:
                    plug = hosted[1]
                    # The line reached alice, whole: it went out as written.
                    line = await alice.expect(":bot!", "PRIVMSG alice", LOGON_PASSWORD, timeout=20)
                    assert line.endswith(f":LOGON bot {LOGON_PASSWORD}")
                    assert "echo-message" in plug.connection.state.agreed_caps
                    with trio.fail_after(10):  # the echo was read (and logged)
                        while not any("<< " in r.getMessage() and "PRIVMSG alice" in
                                      r.getMessage() for r in catcher.records):  # fmt: skip
                            await trio.sleep(0.02)
                    # alice's answer comes after the echo: by then the echo reached the hooks,
                    # had it been let through.
                    await alice.send(f"PRIVMSG bot :{REPLY}")
                    await hosted[2].wait_for(lambda sent: str(sent.text) == REPLY)
                    seen = [str(sent.text) for sent in hosted[2].messages]
    finally:
        undo()
    lines = [r.getMessage() for r in catcher.records if r.name.startswith("immp_irc")]
    assert ">> PRIVMSG alice :***" in lines
    assert any(ln.startswith("<< ") and ln.endswith("PRIVMSG alice :***") for ln in lines), lines
    assert LOGON_PASSWORD not in catcher.text()
    # The echo is the perform line, not a message the hooks could relay (or log) with its text.
    assert seen == [REPLY]


async def test_a_warning_that_quotes_a_bad_line_hides_the_perform_secret_in_it():
    login = f"PRIVMSG Q@CServe.test :LOGON bot {LOGON_PASSWORD}"
    # A line with no command, which irctokens cannot parse, quoting the password.
    peer = ScriptedPeer(caps="", welcome=(f"@a=b :{LOGON_PASSWORD}",))
    catcher, undo = catch_logs()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.serve)
            async with irc_host(plug_config(peer.port, perform=[login]), channels=()):
                with trio.fail_after(10):
                    while not any("unparseable" in r.getMessage() for r in catcher.records):
                        await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    finally:
        undo()
    assert login in peer.connections[0]  # the line went out as written
    warnings = [r.getMessage() for r in catcher.records if "unparseable" in r.getMessage()]
    assert warnings[0].startswith('Ignoring unparseable line "@a=b :***": ')
    assert LOGON_PASSWORD not in catcher.text()


@pytest.mark.parametrize(("line", "logged"), [
    ("PASS hunter2", "PASS ***"), ("PASS :hunter2 x", "PASS ***"),
    ("AUTHENTICATE PLAIN", "AUTHENTICATE PLAIN"), ("AUTHENTICATE +", "AUTHENTICATE +"),
    ("AUTHENTICATE Ym90AGJvdABodW50ZXIy", "AUTHENTICATE ***"),
    ("OPER root hunter2", "OPER root ***"), ("JOIN #a,#b k1,k2", "JOIN #a,#b ***"),
    ("PRIVMSG NickServ :IDENTIFY bot hunter2", "PRIVMSG NickServ :IDENTIFY ***"),
    ("privmsg nickserv :identify hunter2", "privmsg nickserv :identify ***"),
    ("NOTICE NickServ :GHOST bot hunter2", "NOTICE NickServ :GHOST ***"),
    ("PRIVMSG NickServ :SET PASSWORD hunter2", "PRIVMSG NickServ :SET PASSWORD ***"),
    ("PRIVMSG Q@CServe.quakenet.org :AUTH bot hunter2", "PRIVMSG Q@CServe.quakenet.org :AUTH ***"),
    ("NS IDENTIFY hunter2", "NS IDENTIFY ***"), ("NICKSERV ID bot hunter2", "NICKSERV ID ***"),
    ("IDENTIFY hunter2", "IDENTIFY ***"),
    ("/msg NickServ identify hunter2", "/msg NickServ identify ***"),
    ("@time=x :s!u@h PASS hunter2", "@time=x :s!u@h PASS ***"),
    # Not secrets: kept whole.
    ("PRIVMSG #chan :identify hunter2", "PRIVMSG #chan :identify hunter2"),
    ("PRIVMSG @#chan :identify hunter2", "PRIVMSG @#chan :identify hunter2"),
    (":n!u@h JOIN #a account :Real Name", ":n!u@h JOIN #a account :Real Name"),
    (":irc.test 001 bot :Welcome", ":irc.test 001 bot :Welcome"), ("PING :x", "PING :x"),
    ("PRIVMSG #c :a\x03\r\x00b", "PRIVMSG #c :a\\x03\\x0d\\x00b"),
])  # fmt: skip
def test_redact(line, logged):
    assert redact(line) == logged


def test_a_perform_line_is_hidden_after_its_command_and_wherever_it_comes_back():
    redactor = Redactor()
    for line in (
        "PRIVMSG Q@CServe.test :LOGON bot hunter2",
        "PRIVMSG NickServ :IDENTIFY bot pw42",
        "LOGIN bot hunter3",
        "HS ON",
        "PRIVMSG ChanServ :INVITE #hideout",
        "NS GHOST mybot",
        "MODE #ops +k opskey1",
        "MODE bot +x",
        "AWAY :hi",
        "JOIN #ops",
        "PRIVMSG #ops :good morning",
        "PRIVMSG @#ops :hello ops",
    ):
        redactor.keep_out(line, public=["mybot"])
    # The lines as written: what follows the command (or a PRIVMSG's target) is hidden, even
    # for a verb redact() does not know; a known one keeps its verb, as redact() has it.
    assert redactor("PRIVMSG Q@CServe.test :LOGON bot hunter2") == "PRIVMSG Q@CServe.test :***"
    assert redactor("PRIVMSG NickServ :IDENTIFY bot pw42") == "PRIVMSG NickServ :IDENTIFY ***"
    assert redactor("LOGIN bot hunter3") == "LOGIN ***"
    assert redactor("HS ON") == "HS ***"
    assert redactor("MODE #ops +k opskey1") == "MODE #ops +k ***"
    # What the server sends back with the text (an echo-message, a services error quoting it,
    # the password alone, in another case).
    assert redactor(":bot!b@h PRIVMSG Q@CServe.test :LOGON bot hunter2") == (
        ":bot!b@h PRIVMSG Q@CServe.test :***"
    )
    assert redactor(":Q!s@h NOTICE bot :Unknown: LOGON bot hunter2.") == (
        ":Q!s@h NOTICE bot :Unknown: ***."
    )
    assert redactor(":Q!s@h NOTICE bot :Wrong 'HUNTER2' for bot") == (
        ":Q!s@h NOTICE bot :Wrong '***' for bot"
    )
    assert "hunter3" not in redactor(":irc.test 421 bot LOGIN :bot hunter3")
    assert redactor(":op!u@h MODE #ops +k opskey1") == ":op!u@h MODE #ops +k ***"
    # Only as a word: a longer word that contains it is someone else's.
    assert redactor("PRIVMSG #c :hunter22 here") == "PRIVMSG #c :hunter22 here"
    # A channel, the bot's own nick and commands that carry no secret stay visible, in their
    # lines and everywhere else; so does text said in a channel, to all or to its ops.
    assert redactor("PRIVMSG ChanServ :INVITE #hideout") == "PRIVMSG ChanServ :***"
    assert redactor(":s!u@h JOIN #hideout") == ":s!u@h JOIN #hideout"
    assert redactor("NS GHOST mybot") == "NS GHOST ***"
    assert redactor(":mybot!u@h PRIVMSG #c :hi") == ":mybot!u@h PRIVMSG #c :hi"
    assert redactor("MODE bot +x") == "MODE bot +x"
    assert redactor("AWAY :hi") == "AWAY :hi"
    assert redactor("JOIN #ops") == "JOIN #ops"
    assert redactor(":s!u@h PRIVMSG #ops :hi from #ops") == ":s!u@h PRIVMSG #ops :hi from #ops"
    assert redactor("PRIVMSG #ops :good morning") == "PRIVMSG #ops :good morning"
    assert redactor("PRIVMSG #c :good morning all") == "PRIVMSG #c :good morning all"
    assert redactor("PRIVMSG @#ops :hello ops") == "PRIVMSG @#ops :hello ops"
    assert redactor(":n!u@h PRIVMSG #c :hi there") == ":n!u@h PRIVMSG #c :hi there"
    # Everything else is redact()'s, escapes included.
    assert redactor("PASS hunter4") == "PASS ***"
    assert redactor("PRIVMSG #c :a\r\nb") == "PRIVMSG #c :a\\x0d\\x0ab"


def test_what_is_a_channel_is_the_servers_word_not_a_guess():
    # A server whose only channel prefix is "#" (CHANTYPES=#): "&hunter5" is a password
    # there, not a channel, and is hidden wherever it comes back; "#hideout" stays a channel.
    redactor = Redactor()
    redactor.keep_out("PRIVMSG Q :LOGON bot &hunter5", is_channel=lambda word: word[:1] == "#")
    redactor.keep_out("PRIVMSG ChanServ :INVITE #hideout", is_channel=lambda w: w[:1] == "#")
    assert redactor(":Q!s@h NOTICE bot :Bad password &hunter5") == (
        ":Q!s@h NOTICE bot :Bad password ***"
    )
    assert redactor(":s!u@h JOIN #hideout") == ":s!u@h JOIN #hideout"
    # Logged again, a perform line is hidden as it was the first time.
    assert redactor("PRIVMSG Q :LOGON bot &hunter5") == "PRIVMSG Q :***"
    assert redactor("PRIVMSG Q :LOGON bot &hunter5") == "PRIVMSG Q :***"


def test_a_secret_in_a_broken_config_stays_out_of_the_error(tmp_path, immp_command, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump({"plugs": {"irc": {"path": "irc", "config": {
        "server": {"host": "h", "password": [SERVER_PASSWORD]}, "user": {"nick": "bot"},
        "sasl": {"username": "bot", "password": {"x": SASL_PASSWORD}}}}}}))  # fmt: skip
    for args in (["--check", str(file)], [str(file)]):
        result = immp_command(*args, env=clean_env)
        assert result.returncode == 2
        assert SERVER_PASSWORD not in result.stderr and SASL_PASSWORD not in result.stderr
        assert "value hidden" in result.stderr


def churn_config() -> dict:
    return {
        "path": [str(ROOT)],
        "plugs": {"timer": {"path": "demo", "config": {"interval": 0.01}}},
        "hooks": {"churn": {"path": "tests.faults.helpers.ConfigChurn",
                            "config": {"interval": 0.002, "n": 0}}},
    }  # fmt: skip


@pytest.mark.slow
def test_w_killed_at_random_moments_leaves_a_whole_config(tmp_path, immp_exe, clean_env):
    file = tmp_path / "immp.yaml"
    file.write_text(yaml.safe_dump(churn_config()))
    file.chmod(0o604)
    rng = random.Random(8)
    last = 0
    kinds = []
    for _ in range(10):
        proc = ImmpProcess([immp_exe, "-w", str(file)], env=clean_env)
        proc.wait_for("Starting IMMP")
        time.sleep(rng.uniform(0.2, 0.8))
        signum = rng.choice([signal.SIGTERM, signal.SIGKILL])
        kinds.append(signum)
        proc.proc.send_signal(signum)
        status = proc.finish(timeout=15)
        assert status == (0 if signum == signal.SIGTERM else -signal.SIGKILL), proc.stderr()
        # Always a whole file: it parses, validates, and holds a count at least the last one.
        data = yaml.safe_load(file.read_text())
        config = data["hooks"]["churn"]["config"]
        assert config["n"] >= last and config["padding"] == "x" * (config["n"] % 5000)
        assert data["plugs"]["timer"] == {"path": "demo", "config": {"interval": 0.01}}
        last = config["n"]
        assert file.stat().st_mode & 0o777 == 0o604
    assert last > 0
    assert set(kinds) == {signal.SIGTERM, signal.SIGKILL}
    check = ImmpProcess([immp_exe, "--check", str(file)], env=clean_env)
    assert check.finish() == 0, check.stderr()
