"""Flood control, reconnection, TLS, server passwords, SASL and keepalive."""

from __future__ import annotations

import base64
import logging
import signal

import pytest
import trio

import immp
from immp.testing import running
from immp_demo.plug import DemoPlug
from immp_irc import IRCPlug
from immp_sync import SyncHook
from tests.faults.peer import ScriptedServer
from tests.ngircd import NgircdServer, RawClient, parse_privmsg

from .conftest import irc_host, plug_config

log = logging.getLogger(__name__)


@pytest.mark.slow
async def test_burst_of_500_arrives_complete_in_order_without_flood_kick(ngircd_available,
                                                                          tmp_path):  # fmt: skip
    # ngircd's penalties only slow a client down (it took about three minutes for 500 lines
    # with them on, and no disconnect); off here to keep the suite fast.
    async with NgircdServer.running(tmp_path) as server:
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            config = plug_config(server.port, **{"send-delay": 0.01, "send-burst": 5})
            async with irc_host(config) as (host, plug, _):
                await alice.expect(":bot!", "JOIN", "#test")
                start = trio.current_time()
                for n in range(500):
                    await host.channels["chan0"].send(immp.Message(f"message {n}"))
                lines = await alice.collect("PRIVMSG", 500, timeout=120)
                log.warning("burst of 500: %.2fs", trio.current_time() - start)
                assert [parse_privmsg(ln)[2] for ln in lines] == [
                    f"message {n}" for n in range(500)
                ]
                assert plug.connection.registrations == 1  # never disconnected
                await alice.send("NAMES #test")
                assert "bot" in await alice.expect(" 353 ", "#test")


async def test_a_burst_of_ctcp_requests_is_answered_under_flood_control(caplog):
    # A long send-delay: after its burst the plug may send nothing more during the test.
    caplog.set_level(logging.WARNING, logger="immp_irc")
    config = plug_config(0, **{"send-burst": 4, "send-delay": 600})
    async with ScriptedServer.running() as peer:
        config["server"]["port"] = peer.port
        async with irc_host(config, channels=("#room",)) as (_, plug, _):
            # The JOIN and the WHO after it took two of the four tokens.
            await peer.wait_for(b"WHO #room")

            def replies() -> list[bytes]:
                return [line for line in peer.received if line.startswith(b"NOTICE mallory ")]

            request = b":mallory!m@h PRIVMSG bot :\x01VERSION\x01"
            await peer.send(*[request] * 20, b"PING :first")
            # The server's PING is answered at once, while the replies wait for tokens.
            await peer.wait_for(b"PONG first")
            assert len(replies()) <= 2
            await peer.send(b"PING :second")
            await peer.wait_for(b"PONG second")
            assert len(replies()) == 2
            assert all(b"\x01VERSION IMMP" in line for line in replies())
            assert plug.connection.registrations == 1  # still the first connection
            assert plug.connection.ready
    dropped = [r for r in caplog.records if r.name.startswith("immp_irc")
               and r.levelno >= logging.WARNING and "dropping" in r.getMessage()]  # fmt: skip
    assert len(dropped) == 1


async def test_a_line_sent_again_after_a_reconnect_reaches_hooks_once(server, caplog):
    # Without echo-message (ngircd has none) the plug shows hooks what it wrote itself.
    caplog.set_level(logging.DEBUG, logger="immp_irc")

    def written(text: str) -> int:
        return sum(r.getMessage() == f">> PRIVMSG #test :{text}" for r in caplog.records)

    async with irc_host(plug_config(server.port)) as (host, plug, recorder):
        with trio.fail_after(10):
            while not plug.connection.state.has_channel("#test"):
                await trio.sleep(0.02)
        # A frozen server reads nothing and answers nothing: the line written now stays
        # unacknowledged until the server dies, so it is written again after the reconnect.
        server.process.send_signal(signal.SIGSTOP)
        await host.channels["chan0"].send(immp.Message("while frozen"))
        with trio.fail_after(10):
            while not written("while frozen"):
                await trio.sleep(0.02)
        await server.restart(kill=True)
        with trio.fail_after(20):
            while written("while frozen") < 2:
                await trio.sleep(0.02)
        assert plug.connection.registrations == 2
        assert await plug.connection.outgoing.drain(10)
        await host.channels["chan0"].send(immp.Message("after"))
        await recorder.wait_for(lambda sent: str(sent.text) == "after")
        frozen = [sent for sent in (s for s, _, _ in recorder.seen)
                  if str(sent.text) == "while frozen"]  # fmt: skip
        assert len(frozen) == 1


async def test_server_killed_and_restarted_mid_stream_loses_nothing(ngircd_available, tmp_path):
    async with NgircdServer.running(tmp_path) as server:
        # The bot reconnects 1.5 to 3 s after the server dies: alice, who must see the lines
        # it sends then, rejoins first even on a loaded machine (with 0.5 to 1 s she once lost).
        config = plug_config(server.port, **{"send-delay": 0.02, "reconnect-delay": 3.0})
        async with irc_host(config) as (host, plug, _):
            received: list[str] = []
            alice_cm = RawClient.connected(server.port, "alice")
            alice = await alice_cm.__aenter__()
            await alice.join("#test")
            await alice.until_in_channel("bot", "#test")  # the bot may have joined first
            for n in range(60):
                await host.channels["chan0"].send(immp.Message(f"m{n}"))
            # Some lines are through, many still queued: now the server dies.
            received += [parse_privmsg(ln)[2] for ln in await alice.collect("PRIVMSG", 5)]
            await server.restart(kill=True)
            # (What she read before the server closed her connection counts too.)
            received += [parse_privmsg(ln)[2] for ln in await alice.quiet(0.2)
                         if " PRIVMSG " in ln]  # fmt: skip
            await alice_cm.__aexit__(None, None, None)
            for n in range(60, 80):  # sent while the bot is disconnected
                await host.channels["chan0"].send(immp.Message(f"m{n}"))
            async with RawClient.connected(server.port, "alice") as alice:
                await alice.join("#test")
                # She is back before the bot (see reconnect-delay), so she sees what it sends.
                await alice.expect(":bot!", "JOIN", "#test")
                while "m79" not in received:
                    line = await alice.expect("PRIVMSG #test", timeout=20)
                    received.append(parse_privmsg(line)[2])
            assert plug.connection.registrations == 2
            # Nothing lost, nothing out of order; a line the dying server may or may not have
            # relayed can arrive twice (at-least-once).
            firsts = list(dict.fromkeys(received))
            assert firsts == [f"m{n}" for n in range(80)]
            log.warning("kill/restart: %d duplicates", len(received) - len(firsts))


async def test_reconnects_after_a_server_restart_once_the_plug_was_restarted(server):
    # The host reuses the plug across a restart: its earlier close must not stop the new
    # connection from reconnecting.
    async with irc_host(plug_config(server.port)) as (host, _, _):
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.until_in_channel("bot", "#test")
            assert await host.restart("irc")
            await alice.expect(":bot!", "QUIT")
            await alice.expect(":bot!", "JOIN", "#test")
        await server.restart(kill=True)
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.until_in_channel("bot", "#test")
            await host.channels["chan0"].send(immp.Message("back again"))
            line = await alice.expect("PRIVMSG #test")
            assert line.startswith(":bot!") and line.endswith(":back again")


async def test_tls_with_a_private_ca(ngircd_available, tmp_path, ca):
    async with NgircdServer.running(tmp_path, tls=ca) as server:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            config = plug_config(server.tls_port, server={
                "host": "localhost", "ssl": True, "ca-file": str(ca_file)})  # fmt: skip
            async with irc_host(config) as (host, _, _):
                await alice.expect(":bot!", "JOIN", "#test")
                await host.channels["chan0"].send(immp.Message("over TLS"))
                assert (await alice.expect("PRIVMSG")).endswith(":over TLS")


async def test_tls_refuses_an_untrusted_certificate(ngircd_available, tmp_path, ca, caplog):
    async with NgircdServer.running(tmp_path, tls=ca) as server:
        config = plug_config(server.tls_port, server={"host": "localhost", "ssl": True})
        async with irc_host(config) as (_, plug, _):
            with trio.fail_after(10):
                while "CERTIFICATE_VERIFY_FAILED" not in caplog.text:
                    await trio.sleep(0.05)
            assert plug.connection.registrations == 0


async def test_server_password(ngircd_available, tmp_path):
    async with NgircdServer.running(tmp_path, password="opensesame") as server:
        async with RawClient.connected(server.port, "alice", register=False) as alice:
            await alice.send("PASS opensesame")
            await alice.register()
            await alice.join("#test")
            config = plug_config(server.port, server={"password": "opensesame"})
            async with irc_host(config):
                await alice.expect(":bot!", "JOIN", "#test")


class ScriptedPeer:
    """
    A tiny IRC server for what ngircd lacks: speaks the IRCv3 CAP LS 302 / SASL PLAIN exchange
    and, if asked, stops answering PINGs or sends more lines after the MOTD. Records every line
    it receives per connection.
    """

    def __init__(self, *, caps: str = "sasl=PLAIN,EXTERNAL server-time multi-prefix",
                 accept: tuple[str, str] = ("alice", "s3cret"),
                 answer_pings: bool = True, welcome: tuple[str, ...] = ()):  # fmt: skip
        self.caps = caps
        self.welcome = welcome  # more lines to send after the MOTD
        self.accept = accept
        self.answer_pings = answer_pings
        self.connections: list[list[str]] = []
        self.registered = trio.Event()
        self.port = 0

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._client, listeners)

    async def _client(self, stream):
        received: list[str] = []
        self.connections.append(received)
        buffer, nick, ended_caps = b"", "*", False

        async def send(line):
            await stream.send_all(line.encode() + b"\r\n")

        async with stream:
            while True:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for raw in lines:
                    line = raw.decode()
                    received.append(line)
                    words = line.split(" ")
                    if line == "CAP LS 302":
                        await send(f":peer CAP * LS :{self.caps}")
                    elif words[:2] == ["CAP", "REQ"]:
                        await send(f":peer CAP * ACK {' '.join(words[2:])}")
                    elif line == "AUTHENTICATE PLAIN":
                        await send("AUTHENTICATE +")
                    elif words[0] == "AUTHENTICATE":
                        user, password = self.accept
                        expected = base64.b64encode(f"{user}\0{user}\0{password}".encode())
                        if words[1].encode() == expected:
                            await send(f":peer 900 {nick} {nick}!u@h {user} :You are now "
                                       f"logged in as {user}")  # fmt: skip
                            await send(f":peer 903 {nick} :SASL authentication successful")
                        else:
                            await send(f":peer 904 {nick} :SASL authentication failed")
                    elif line == "CAP END":
                        ended_caps = True
                    elif words[0] == "NICK":
                        nick = words[1]
                    elif words[0] == "QUIT":
                        return
                    elif words[0] == "PING" and self.answer_pings:
                        await send(f":peer PONG peer {words[-1]}")
                    if ended_caps and nick != "*" and any(ln.startswith("USER ")
                                                          for ln in received):  # fmt: skip
                        ended_caps = False
                        await send(f":peer 001 {nick} :Welcome")
                        await send(f":peer 376 {nick} :End of MOTD")
                        for extra in self.welcome:
                            await send(extra)
                        self.registered.set()


async def test_sasl_plain_follows_the_ircv3_exchange():
    peer = ScriptedPeer()
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.serve)
        config = plug_config(peer.port, sasl={"username": "alice", "password": "s3cret"})
        async with irc_host(config, channels=()):
            with trio.fail_after(10):
                await peer.registered.wait()
        nursery.cancel_scope.cancel()
    lines = peer.connections[0]
    payload = base64.b64encode(b"alice\0alice\0s3cret").decode()
    exchange = [ln for ln in lines if ln.startswith(("CAP", "AUTHENTICATE"))]
    assert exchange == ["CAP LS 302", "CAP REQ :server-time multi-prefix sasl",
                        "AUTHENTICATE PLAIN", f"AUTHENTICATE {payload}", "CAP END"]  # fmt: skip
    assert lines.index("CAP END") > lines.index(f"AUTHENTICATE {payload}")


async def test_no_answer_to_ping_means_reconnect():
    peer = ScriptedPeer(caps="", answer_pings=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.serve)
        config = plug_config(peer.port, **{"ping-interval": 0.2, "ping-timeout": 0.2,
                                           "reconnect-delay": 0.1})  # fmt: skip
        async with irc_host(config, channels=()):
            with trio.fail_after(10):
                while len(peer.connections) < 2:
                    await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert "PING :immp-keepalive" in peer.connections[0]
    # It registered again on the new connection.
    assert any(line.startswith("NICK ") for line in peer.connections[1])


async def _plug_failed(plug, caplog) -> str:
    """Wait until the plug failed; the one error line that says why."""
    with trio.fail_after(20):
        while plug.open_state is not immp.OpenState.failed:
            await trio.sleep(0.02)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


SASL = {"username": "alice", "password": "s3cret"}


async def test_sasl_required_stops_the_plug_on_a_server_without_sasl(server, caplog):
    # ngircd offers no SASL: with sasl configured, that is a failed login.
    async with RawClient.connected(server.port, "watcher") as watcher:
        await watcher.join("#test")
        async with irc_host(plug_config(server.port, sasl=SASL)) as (_, plug, _):
            error = await _plug_failed(plug, caplog)
            assert plug.connection.registrations == 0
            # It never registered, so it never joined; and it does not try again.
            assert not any(":bot!" in ln for ln in await watcher.quiet(1))
            assert not any("retrying" in r.getMessage() for r in caplog.records)
    assert error == ("Failed to run plug irc: SASLFailed: SASL login as alice failed (the "
                     "server offers no SASL); not going on without it (sasl-required)")  # fmt: skip


async def test_sasl_not_required_goes_on_without_it_after_one_warning(server, caplog):
    caplog.set_level(logging.WARNING, logger="immp_irc")
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        config = plug_config(server.port, sasl=SASL, **{"sasl-required": False})
        async with irc_host(config) as (_, plug, _):
            await alice.expect(":bot!", "JOIN", "#test", timeout=20)
            assert plug.open_state is immp.OpenState.active
    warnings = [r.getMessage() for r in caplog.records if "SASL" in r.getMessage()]
    assert warnings == ["SASL login as alice failed (the server offers no SASL); going on "
                        "without it"]  # fmt: skip


async def test_a_wrong_sasl_password_stops_the_plug_when_required(caplog):
    peer = ScriptedPeer(accept=("alice", "the-right-one"))
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.serve)
        async with irc_host(plug_config(peer.port, sasl=SASL), channels=()) as (_, plug, _):
            error = await _plug_failed(plug, caplog)
        nursery.cancel_scope.cancel()
    assert error == ("Failed to run plug irc: SASLFailed: SASL login as alice failed (904 SASL "
                     "authentication failed); not going on without it (sasl-required)")  # fmt: skip
    assert not peer.registered.is_set()
    assert len(peer.connections) == 1  # not retried
    assert "CAP END" not in peer.connections[0]


async def test_a_wrong_sasl_password_goes_on_when_not_required(caplog):
    caplog.set_level(logging.WARNING, logger="immp_irc")
    peer = ScriptedPeer(accept=("alice", "the-right-one"))
    async with trio.open_nursery() as nursery:
        await nursery.start(peer.serve)
        config = plug_config(peer.port, sasl=SASL, **{"sasl-required": False})
        async with irc_host(config, channels=()) as (_, plug, _):
            with trio.fail_after(10):
                await peer.registered.wait()
            assert plug.open_state is immp.OpenState.active
        nursery.cancel_scope.cancel()
    assert any("SASL login as alice failed (904" in r.getMessage() for r in caplog.records)


async def test_our_own_quit_is_not_logged_as_a_server_error(server, caplog):
    # ngircd answers our QUIT with ERROR ("Disconnecting"): that is the goodbye, not a fault.
    caplog.set_level(logging.INFO, logger="immp_irc")
    async with irc_host(plug_config(server.port)) as (host, _, _):
        async with RawClient.connected(server.port, "alice") as alice:
            await alice.join("#test")
            await alice.until_in_channel("bot", "#test")
            await host.stop("irc")
            await alice.expect(":bot!", "QUIT")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("immp_irc")]
    assert not any("Server error" in m for m in messages)
    assert any("Server closed the link after our QUIT" in m for m in messages)


async def test_copies_sent_while_the_plug_restarts_go_out_on_the_new_connection_in_order(server):
    # `!restart irc` while another network's messages are bridged here: the copies made while
    # the plug says QUIT and connects again wait for the new connection; none is lost or
    # reordered, and nothing fails.
    host = immp.Host()
    irc = host.add_plug(IRCPlug("irc", plug_config(server.port), host))
    demo = host.add_plug(DemoPlug("demo", {"interval": None, "channel": "room"}, host))
    host.add_channel("irc-room", immp.Channel(irc, "#test"))
    host.add_channel("demo-room", immp.Channel(demo, "room"))
    host.add_hook(SyncHook("sync", {"channels": {"main": ["irc-room", "demo-room"]}}, host))
    failures = []
    host.add_observer(type("Failures", (), {"send_failed": lambda self, *a: failures.append(a)})())
    async with RawClient.connected(server.port, "alice") as alice:
        await alice.join("#test")
        async with running(host):
            await alice.until_in_channel("bot", "#test")
            async with trio.open_nursery() as nursery:

                async def stream():
                    for i in range(30):
                        await demo.receive(f"line {i}")
                        await trio.sleep(0.01)

                nursery.start_soon(stream)
                await trio.sleep(0.05)
                assert await host.restart("irc")
            lines = await alice.collect("PRIVMSG", 30, timeout=20)
    assert [parse_privmsg(ln)[2] for ln in lines] == [f"<demo> line {i}" for i in range(30)]
    assert failures == []
