"""
A real Synapse homeserver for tests and benchmarks, plus a small Matrix client for the test's
own users.

Synapse (``matrix-synapse`` from PyPI) lives in a venv of its own, so that its pinned
dependencies stay apart from ours: :func:`ensure_synapse` creates it at
``~/.cache/immp-tests/synapse-venv`` (or ``$IMMP_SYNAPSE_VENV``) on first use. One server runs
per test session (:meth:`SynapseServer.start`); tests make new users and rooms.

The server's config is Synapse's generated one plus an override: a plain-HTTP listener on a free
loopback port with only the ``client`` resource, a registration shared secret, fast bcrypt, no
key servers, no /sync response cache (identical /sync requests would otherwise be answered from
a two-minute cache), and every rate limit raised except ``rc_message``, which stays on (at
:data:`MESSAGES_PER_SECOND`, :data:`MESSAGE_BURST`) so that a test can provoke 429s; test users
are exempted from it (:meth:`SynapseServer.register` with ``exempt=True``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import trio

from tests.ngircd import free_port

SYNAPSE_VERSION = "matrix-synapse>=1.163"
VENV = Path(os.environ.get("IMMP_SYNAPSE_VENV", Path.home() / ".cache/immp-tests/synapse-venv"))
PYTHON = VENV / "bin" / "python"
#: The message rate limit kept on for users that are not exempt (the bridge bot in tests).
MESSAGES_PER_SECOND = 10.0
MESSAGE_BURST = 10


def synapse_installed() -> bool:
    if not PYTHON.exists():
        return False
    probe = subprocess.run([str(PYTHON), "-c", "import synapse"], capture_output=True)
    return probe.returncode == 0


def ensure_synapse() -> None:
    """Create the Synapse venv if it is missing (about 20 s with a warm pip cache)."""
    if synapse_installed():
        return
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", SYNAPSE_VERSION], check=True)


def _raised_limits() -> dict:
    many = {"per_second": 10_000, "burst_count": 10_000}
    return {
        "rc_message": {"per_second": MESSAGES_PER_SECOND, "burst_count": MESSAGE_BURST},
        "rc_registration": many,
        "rc_registration_token_validity": many,
        "rc_login": {"address": many, "account": many, "failed_attempts": many},
        "rc_admin_redaction": many,
        "rc_joins": {"local": many, "remote": many},
        "rc_joins_per_room": many,
        "rc_invites": {"per_room": many, "per_user": many, "per_issuer": many},
        "rc_3pid_validation": many,
        "rc_room_creation": many,
        "rc_presence": {"per_user": many},
        "rc_delayed_event_mgmt": many,
        "rc_media_create": many,
        "rc_reports": many,
    }


class SynapseServer:
    """One Synapse process with SQLite, on ``127.0.0.1:port``, server name ``localhost``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "homeserver.log"
        self._names = itertools.count(1)
        self._admin_token: str | None = None

    def _configure(self) -> list[Path]:
        main = self.directory / "homeserver.yaml"
        if not main.exists():
            subprocess.run(
                [
                    str(PYTHON),
                    "-m",
                    "synapse.app.homeserver",
                    "--server-name",
                    "localhost",
                    "--config-path",
                    str(main),
                    "--generate-config",
                    "--report-stats=no",
                    "--data-directory",
                    str(self.directory / "data"),
                ],
                check=True,
                capture_output=True,
                cwd=self.directory,
            )
        override = {
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "registration_shared_secret": self.secret,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "caches": {"sync_response_cache_duration": 0},
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "report_stats": False,
            **_raised_limits(),
        }
        extra = self.directory / "override.yaml"
        # JSON is YAML: no YAML writer needed.
        extra.write_text(json.dumps(override, indent=1))
        return [main, extra]

    def start(self, timeout: float = 60.0) -> None:
        """Start Synapse and wait until its client API answers."""
        configs = self._configure()
        args = [str(PYTHON), "-m", "synapse.app.homeserver"]
        for path in configs:
            args += ["-c", str(path)]
        out = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory
        )
        out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = (self.directory / "stdout.log").read_text()[-3000:]
                raise RuntimeError(f"Synapse exited: {tail}")
            try:
                if httpx.get(f"{self.url}/_matrix/client/versions", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Synapse did not start in time")
            time.sleep(0.1)
        self._admin_token = self.register_sync("admin", admin=True)["access_token"]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def refusals(self, user_id: str, status: int = 429) -> int:
        """How many requests of ``user_id`` Synapse's access log shows answered with ``status``."""
        needle = "{" + user_id + "}"
        with self.log_path.open(errors="replace") as log:
            return sum(1 for line in log if needle in line and f" {status} " in line)

    # -- users --------------------------------------------------------------------------------

    def unique(self, prefix: str) -> str:
        """A localpart nobody used in this session: ``prefix`` plus a counter."""
        return f"{prefix}{next(self._names)}"

    def _registration(self, localpart: str, password: str, admin: bool, nonce: str) -> dict:
        mac = hmac.new(self.secret.encode(), digestmod=hashlib.sha1)
        mac.update(
            b"\x00".join(
                [
                    nonce.encode(),
                    localpart.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            )
        )
        return {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }

    def register_sync(
        self, localpart: str, password: str = "secret", *, admin: bool = False, exempt: bool = False
    ) -> dict:
        """Register a user with the shared secret (blocking; for fixtures and benchmarks)."""
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = httpx.get(endpoint).json()["nonce"]
        reply = httpx.post(endpoint, json=self._registration(localpart, password, admin, nonce))
        reply.raise_for_status()
        account = reply.json()
        if exempt:
            self.exempt_sync(account["user_id"])
        return account

    def exempt_sync(self, user_id: str) -> None:
        """Exempt a user from every rate limit (Synapse's admin ``override_ratelimit``)."""
        self.limit_sync(user_id, 0, 0)

    def limit_sync(self, user_id: str, per_second: float, burst: int) -> None:
        """Give a user a message rate limit of its own (0 and 0: none)."""
        quoted = urllib.parse.quote(user_id)
        httpx.post(
            f"{self.url}/_synapse/admin/v1/users/{quoted}/override_ratelimit",
            json={"messages_per_second": per_second, "burst_count": burst},
            headers={"Authorization": f"Bearer {self._admin_token}"},
        ).raise_for_status()

    async def register(
        self, prefix: str = "user", *, exempt: bool = True, password: str = "secret"
    ) -> MatrixUser:
        """A new user (exempt from rate limits unless told otherwise), logged in."""
        localpart = self.unique(prefix)
        account = await trio.to_thread.run_sync(
            lambda: self.register_sync(localpart, password, exempt=exempt)
        )
        return MatrixUser(self, account["user_id"], account["access_token"], password)


class MatrixUser:
    """A test's own Matrix user: a thin async client for setting up and checking rooms."""

    def __init__(self, server: SynapseServer, user_id: str, token: str, password: str):
        self.server = server
        self.user_id = user_id
        self.token = token
        self.password = password
        self.http = httpx.AsyncClient(
            base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        self._txn = itertools.count()
        self.since: str | None = None

    async def call(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        reply = await self.http.request(
            method, f"/_matrix/client/v3{path}", json=body, params=params or None
        )
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text}")
        return reply.json()

    async def create_room(
        self,
        *,
        invite: list[str] = (),
        name: str | None = None,
        alias: str | None = None,
        public: bool = True,
        **extra,
    ) -> str:
        body: dict = {
            "preset": "public_chat" if public else "private_chat",
            "invite": list(invite),
            **extra,
        }
        if name:
            body["name"] = name
        if alias:
            body["room_alias_name"] = alias
        return (await self.call("POST", "/createRoom", body))["room_id"]

    async def join(self, room: str) -> str:
        return (await self.call("POST", f"/join/{urllib.parse.quote(room)}", {}))["room_id"]

    async def send(self, room: str, content: dict | str, type: str = "m.room.message") -> str:
        if isinstance(content, str):
            content = {"msgtype": "m.text", "body": content}
        txn = f"t{next(self._txn)}.{time.time_ns()}"
        path = f"/rooms/{urllib.parse.quote(room)}/send/{type}/{txn}"
        return (await self.call("PUT", path, content))["event_id"]

    async def state(self, room: str, type: str, content: dict, key: str = "") -> str:
        path = f"/rooms/{urllib.parse.quote(room)}/state/{type}/{urllib.parse.quote(key)}"
        return (await self.call("PUT", path, content))["event_id"]

    async def redact(self, room: str, event_id: str) -> str:
        txn = f"r{next(self._txn)}.{time.time_ns()}"
        path = f"/rooms/{urllib.parse.quote(room)}/redact/{urllib.parse.quote(event_id)}/{txn}"
        return (await self.call("PUT", path, {}))["event_id"]

    async def messages(self, room: str, limit: int = 100) -> list[dict]:
        """The room's latest timeline events, oldest first."""
        reply = await self.call(
            "GET", f"/rooms/{urllib.parse.quote(room)}/messages", dir="b", limit=str(limit)
        )
        return list(reversed(reply["chunk"]))

    async def texts(self, room: str, sender: str | None = None) -> list[str]:
        """Bodies of the room's m.room.message events (from ``sender`` if given), oldest first."""
        return [
            ev["content"].get("body")
            for ev in await self.messages(room)
            if ev["type"] == "m.room.message"
            and "body" in ev["content"]
            and (sender is None or ev["sender"] == sender)
        ]

    async def wait_for(self, room: str, check, timeout: float = 20.0) -> dict:
        """The first event in ``room`` (old or new) for which ``check(event)`` is true."""
        with trio.fail_after(timeout):
            while True:
                for event in await self.messages(room):
                    if check(event):
                        return event
                await trio.sleep(0.1)

    async def aclose(self) -> None:
        await self.http.aclose()
