"""
Matrix plug: a Matrix account on a homeserver, through the client-server API (``/v3``).

Config: the keys of ``SCHEMA`` below, each with its type, default and ``doc``; the README's table
is generated from it (``hatch run docs``). The device matters: Synapse scopes transaction IDs
per device, so keeping it across restarts is what makes a send repeated after a restart land
only once.

Channels: a ``source`` is a room ID (``!id:server``) or an alias (``#room:server``), anything
else a config error (``source_schema``); the plug joins every configured room at open.

Open returns as soon as the homeserver has answered the login, refused it or failed to answer
(unreachable, 5xx, or no answer within :data:`OPEN_WAIT`): the login, the joins and the first
sync go on in the background, retried with backoff, the plug reported disconnected meanwhile,
and sends wait for them in order. A refused login (a wrong password, an invalid token) fails
the plug, with one line.

Access token: a password login's token is kept in the store (key ``access-token``, with the
homeserver, user and device it belongs to), and the next start with the same ones uses it
(``whoami``) instead of logging in again, so restarts do not run into the homeserver's login
rate limit. A token the homeserver refuses (401 for one logged out, revoked or expired) is one
INFO line and a password login, which stores the new token; a homeserver unreachable meanwhile
is waited for, the token kept. The token is never logged.

A token refused while the plug runs (to a sync, a send, any request) is one WARNING line and a
password login on the same device, which stores the new token; the refused request is then made
again with it: the sync from its ``since``, a send with its transaction ID (it lands once).
Without a password (a ``token`` config), a refused login, or the new token refused before the
homeserver took it once, the plug fails with one line (see :meth:`MatrixPlug._token_refused`).

Queries (users, channel titles and members, rooms) made before the plug is logged in wait for
it, at most the host's open-timeout; not logged in by then, they answer ``None`` ("cannot
tell"), and a rename (or :meth:`MatrixPlug.room_id` of an alias) raises
:class:`immp.PlugError`.

Encrypted rooms are not read: the log says so once per room.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import html
import logging
import mimetypes
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx
import trio

import immp

from . import formatting
from .api import Client, MatrixError, Unreachable, quote


def _id_problem(value: str, sigil: str) -> str | None:
    """What makes ``value`` no Matrix ID of the form ``<sigil>local:server``, or ``None``."""
    local, colon, server = value[1:].partition(":")
    if not value.startswith(sigil):
        return f"does not start with {sigil}"
    if any(c.isspace() or not c.isprintable() for c in value):
        return "has a space or a control character"
    if not local:
        return f"has nothing between {sigil} and :server"
    if not colon or not server:
        return "has no :server"
    return None


def _user_id(value: str) -> str:
    """``value`` if it is a Matrix user ID (``@localpart:server``), else ``ValueError``."""
    if not isinstance(value, str):
        raise TypeError("not a string")
    problem = _id_problem(value, "@")
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


def _room_source(value: str) -> str:
    """
    ``value`` if it is a room ID (``!id:server``; the server part is not checked, as newer
    room versions leave it out) or an alias (``#room:server``), else ``ValueError``.
    """
    if not isinstance(value, str):
        raise TypeError("not a string")
    if value.startswith("!"):
        problem = _id_problem(value, "!")
        if problem == "has no :server":
            problem = None
    elif value.startswith("#"):
        problem = _id_problem(value, "#")
    else:
        problem = "starts with neither ! (a room ID) nor # (an alias)"
    if problem:
        raise ValueError(f"{value!r} {problem}")
    return value


SCHEMA = immp.Schema({
    immp.Required("homeserver", doc="Base URL of the homeserver, e.g. "
                  "`https://matrix.example.org`."): str,
    immp.Required("user", doc="The bridge's Matrix user ID, e.g. `@bridge:example.org`."):
        immp.Check(_user_id, "a Matrix user ID (@localpart:server)"),
    immp.Optional("password", None, doc="Password to log in with; exactly one of `password` "
                  "and `token`. Never logged."): immp.Nullable(str),
    immp.Optional("token", None, doc="An access token instead of a password (its device is "
                  "the token's own)."): immp.Nullable(str),
    immp.Optional("device", None, doc="Device ID for a password login; null: one stable per "
                  "plug, made at the first start and kept in the store (transaction IDs are "
                  "per device)."): immp.Nullable(str),
    immp.Optional("auto-join", False, doc="Accept invitations to rooms (the room's messages "
                  "then reach the host as an unnamed channel)."): bool,
    immp.Optional("sync-timeout", 30.0, doc="Seconds one `/sync` long poll waits for news."):
        immp.Positive(),
    immp.Optional("timeline-limit", 50, doc="Events per room in one `/sync`; a room with more "
                  "is filled from `/messages`, so nothing is skipped."): immp.Positive(int),
    immp.Optional("request-timeout", 30.0, doc="Seconds one request (other than the long "
                  "poll) may take before it is retried."): immp.Positive(),
    immp.Optional("retry-max", 60.0, doc="Longest wait between retries while the homeserver "
                  "is unreachable or answers 5xx."): immp.Positive(),
    immp.Optional("send-queue", 100, doc="Sends waiting for the homeserver at once (in order "
                  "per room); further senders wait: backpressure, nothing dropped."):
        immp.Positive(int),
    immp.Optional("media-max-size", 10 * 1024 * 1024, doc="Largest attachment in bytes, "
                  "uploaded from another network or fetched from Matrix."): immp.Positive(int),
    immp.Optional("show-names", True, doc="Prefix messages from other networks with the "
                  "author's name (`name: text`, or an emote `name waves`)."): bool,
    immp.Optional("media-url", None, doc="Base URL of the links other networks get to Matrix "
                  "media, as `BASE/SERVER/MEDIA-ID` (e.g. a public media proxy); null: the "
                  "authenticated download URL, which opens only with a token."):
        immp.Nullable(str),
})  # fmt: skip

#: Set by a caller that can name what it sends (e.g. a delivery journal), for the whole of a
#: ``put``/``edit``/``delete``: the transaction ID is derived from it (and the room), so the same
#: send repeated in another process lands once. Without it, IDs follow a per-start sequence.
delivery_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "immp_matrix_delivery_key", default=None
)

# Set for the whole of a put(): an event set as it returns or fails, which the echoes of the
# events it makes wait for (see _txn and _echo_ready).
_current_put: contextvars.ContextVar[trio.Event | None] = contextvars.ContextVar(
    "immp_matrix_current_put", default=None
)

_TIMELINE_TYPES = [
    "m.room.message",
    "m.room.member",
    "m.room.name",
    "m.room.redaction",
    "m.room.encrypted",
    "m.room.encryption",
    "m.sticker",
]
_STATE_TYPES = ["m.room.member", "m.room.name", "m.room.encryption", "m.room.canonical_alias"]
_MEDIA_TYPES = {
    "m.image": immp.FileType.image,
    "m.file": immp.FileType.unknown,
    "m.video": immp.FileType.unknown,
    "m.audio": immp.FileType.unknown,
}
#: Seconds open() waits at most for the homeserver's first answer; a homeserver that hangs is
#: then waited for in the background (and the plug reported disconnected), never for the
#: host's open-timeout.
OPEN_WAIT = 5.0
#: The store key of the access token of the last password login: a dict of ``homeserver``,
#: ``user`` (both as configured), ``device`` and ``token`` (see MatrixPlug._stored_login).
TOKEN_KEY = "access-token"
#: Seconds of the host's close-timeout that closing keeps for cutting off the sends still under
#: way, so that they end as a PlugError before the host cancels the plug (and closes its client).
CLOSE_MARGIN = 0.5
_RECENT = 2000  # events remembered for reply quotes and fallbacks (and failed look-ups)
# What names from Matrix lose (see clean_name): line breaks become spaces; other control
# characters (C0, DEL, C1) and the bidi embeddings, overrides and isolates go.
_NAME_CHARS: dict[int, str | None] = dict.fromkeys(
    (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
)
_NAME_CHARS.update(dict.fromkeys(map(ord, "\n\r\x85\u2028\u2029"), " "))


def clean_name(name: str | None) -> str | None:
    """
    A display name or room name from Matrix as one line that shows as written: anyone can set
    one, and on IRC a newline in it would start a line of its own (a command), a ``\\x01`` a
    CTCP, a bidi override turn the rest of the line around. ``None`` for a name left empty.
    Message text is not cleaned: it keeps its lines.
    """
    if name is None:
        return None
    return name.replace("\r\n", "\n").translate(_NAME_CHARS).strip() or None


@dataclass
class Room:
    """What the plug knows of one joined room."""

    id: str
    name: str | None = None
    alias: str | None = None
    members: dict[str, str | None] = field(default_factory=dict)  # user ID -> display name
    looked_up: set[str] = field(default_factory=set)  # members asked of the homeserver once
    encrypted: bool = False
    warned: bool = False


class MatrixPlug(immp.Plug):
    """A Matrix account; see the module doc for its config."""

    schema = SCHEMA
    source_schema = immp.Check(
        _room_source, "a Matrix room ID (!id:server) or alias (#room:server)"
    )
    network_name = "Matrix"
    can_edit = True
    can_delete = True
    stable_ids = True  # event IDs; an edit's or redaction's revision is its event's timestamp
    has_cursor = True  # the sync token: what comes after it is sent again

    def __init__(self, name, config, host):
        super().__init__(name, config, host)
        homeserver = self.config["homeserver"]
        parts = urllib.parse.urlsplit(homeserver)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # httpx would take it, and fail every request as if the network were down.
            raise immp.ConfigError(
                f"must be an http:// or https:// URL, e.g. https://matrix.example.org, "
                f"got {homeserver!r}",
                "homeserver",
            )
        if (self.config["password"] is None) == (self.config["token"] is None):
            # No path: the host names the plug's config (plugs.<name>.config) itself.
            raise immp.ConfigError("give exactly one of password and token")
        self.client: Client | None = None
        self.user_id: str = self.config["user"]
        self.device_id: str | None = None
        self._rooms: dict[str, Room] = {}
        self._sources: dict[str, str] = {}  # configured source (alias or ID) -> room ID
        self._channel_of: dict[str, str] = {}  # room ID -> configured source
        self._locks: dict[str, trio.Lock] = {}
        self._sends: trio.Semaphore | None = None
        self._filter: str | None = None
        self._txn_prefix = "0"
        self._txn_count = 0
        # event -> (sender, body); the oldest is forgotten first.
        self._recent: immp.BoundedCache[str, tuple[str, str]] = immp.BoundedCache(_RECENT)
        # Our event -> (author, text, action) of the message put() sent as it, for a reply to it
        # to quote those, not the bridge's account and the "name: " prefix; the oldest first
        # forgotten (then read back from the event, see _own_author).
        self._authored: immp.BoundedCache[
            str, tuple[immp.User | None, immp.RichText | None, bool]
        ] = immp.BoundedCache(_RECENT)
        # Events replied to that the homeserver would not give (see _know_reply): not asked
        # again, so that a message replied to over and over costs one request at most.
        self._unquotable: immp.BoundedCache[str, None] = immp.BoundedCache(_RECENT)
        self.synced = trio.Event()  # set after the first sync batch at open
        # Transaction ID -> its put(), for each event a put() of this plug made: their echoes
        # go to the host, which matches them to what it sent. The oldest is forgotten first;
        # its echo (long since come) would then be dropped, as is that of any other event of
        # this device (edits, redactions, and what an earlier run sent, replayed by /sync).
        self._put_txns: immp.BoundedCache[str, trio.Event] = immp.BoundedCache(_RECENT)
        # Set once this lifetime logged in, joined and synced: sends wait for it (see _turn).
        self._ready = trio.Event()
        # Set by the first answer (or failure) at open: open() returns then.
        self._settled = trio.Event()
        # Set once this lifetime's start is over, logged in or not (ready, refused, closed):
        # queries waiting for the login stop waiting then (see _logged_in).
        self._start_ended = trio.Event()
        # Fair: sends made before the plug was ready leave in the order they came.
        self._waiting = trio.Lock()
        # The sends under way, by their cancel scope: close() cuts off those left.
        self._turns: set[trio.CancelScope] = set()
        self._closing = False
        self._turns_left = trio.Event()  # set by the last send to leave while closing
        # One password login at a time for a token refused while running (see _token_refused).
        self._renewing = trio.Lock()
        # Why the plug fails, once a refused token cannot be replaced: the requests refused
        # after that fail with it too.
        self._refusal: str | None = None
        self._sync_scope: trio.CancelScope | None = None  # cancelled by such a failure

    @property
    def network_id(self) -> str:
        return f"matrix:{self.user_id.partition(':')[2] or self.name}"

    # -- lifetime -------------------------------------------------------------------------------

    def _reachable(self, reachable: bool, reason: str | None) -> None:
        # The client says so as soon as a request fails, once per reason, and when one works.
        if reachable:
            self.log.info("Homeserver reachable again")
        elif self.disconnect_reason is not None:
            self.log.warning("Homeserver still unreachable, now: %s", reason)
        else:
            self.log.warning("Homeserver unreachable, retrying: %s", reason)
        if not reachable:
            self._settled.set()  # open() need not wait for the retries
        elif not self._ready.is_set():
            return  # connected only once logged in and started (see _run)
        self.connection_changed(reachable, None if reachable else reason)

    async def open(self):
        """
        Start the plug's task (:meth:`_run`: log in, join, sync) and return once the homeserver
        has answered the login or failed to (see the module doc): never later than
        :data:`OPEN_WAIT`, whatever the homeserver does. Raises :class:`immp.PlugError` (the
        task's, ending the nursery) if the login was refused meanwhile.
        """
        if self.disconnect_reason is not None:
            # Closed while unreachable: the new client starts out reachable, and says only
            # when that changes.
            self.connection_changed(True)
        self.client = Client(
            self.config["homeserver"],
            timeout=self.config["request-timeout"],
            retry_max=self.config["retry-max"],
            on_reachable=self._reachable,
        )
        self._sends = trio.Semaphore(self.config["send-queue"])
        self._start_ended.set()  # queries waiting on the last lifetime go on to this one
        self._ready, self._settled, self._start_ended = trio.Event(), trio.Event(), trio.Event()
        self._turns, self._closing = set(), False
        self._renewing, self._refusal, self._sync_scope = trio.Lock(), None, None
        self.nursery.start_soon(self._run, self.client)
        with trio.move_on_after(min(OPEN_WAIT, self.host.open_timeout / 2)):
            await self._settled.wait()
        if not self._ready.is_set() and self.disconnect_reason is None:
            # Neither an answer nor a failure yet (a homeserver that hangs): sends wait for it
            # from now on, with no send-timeout (the sync hook's), as in an outage.
            reason = "no answer from the homeserver yet"
            self.log.warning("Homeserver not answering; logging in in the background")
            self.connection_changed(False, reason)

    async def _run(self, client: Client) -> None:
        """
        The plug's task: log in and start (each request retried while the homeserver is
        unreachable), say the plug connected, then sync until cancelled at close. Raises
        :class:`immp.PlugError` for a refused login, or an access token refused that cannot be
        replaced (see :meth:`_token_refused`), which fails the plug. Closes ``client`` when it
        ends.
        """
        ended = self._start_ended
        try:
            await self._start()
            self._ready.set()
            ended.set()
            self._settled.set()
            self.synced.set()
            if self.disconnect_reason is not None:
                self.log.info("Connected: logged in and synced")
                self.connection_changed(True)
            with trio.CancelScope() as self._sync_scope:
                await self._sync_loop()
            # Cancelled by a refused token that a send (not the sync) was answered with.
            raise immp.PlugError(self._refusal)
        finally:
            ended.set()
            with trio.CancelScope(shield=True):
                await client.aclose()  # a second time after the sync loop's: harmless

    async def close(self):
        """
        Let the sends under way finish (while the homeserver is reachable, within the host's
        close-timeout), then cut off the rest: each raises :class:`immp.PlugError` (not
        delivered; with the journal on, kept for the next start). A send made from now on
        raises it at once. The plug's task, cancelled after this, closes the client.
        """
        self._closing = True
        self._turns_left = trio.Event()
        if self._turns and self.disconnect_reason is None:
            with trio.move_on_after(max(0.0, self.host.close_timeout - CLOSE_MARGIN)):
                await self._turns_left.wait()
        for scope in list(self._turns):
            scope.cancel()
        if self._turns:
            await self._turns_left.wait()  # each at its next checkpoint

    async def _start(self) -> None:
        try:
            await self._log_in()
        except MatrixError as exc:
            # One line, never the secret: MatrixError carries the server's words only.
            raise immp.PlugError(
                f"{self.name}: cannot log in as {self.user_id}: {exc.reason}"
            ) from None
        except Unreachable as exc:
            raise immp.PlugError(f"{self.name}: cannot log in as {self.user_id}: {exc}") from None
        # Only now: a token refused at the login is the login's business (see _stored_login).
        self.client.on_token_refused = self._token_refused
        boot = int(await self.state.get("boot", 0)) + 1
        await self.state.set("boot", boot)
        self._txn_prefix = f"{boot}"
        self._filter = await self.client.create_filter(self.user_id, self._filter_definition())
        for channel in list(self.host.channels.values()):
            if channel.plug is self:
                await self._join(channel.source)
        if await self.state.get("since") is None:
            # First start: take the rooms as they are now, without replaying their history.
            batch = await self.client.sync(since=None, filter=self._filter, timeout_ms=0)
            await self._handle_batch(batch, initial=True)
            await self.state.set("since", batch["next_batch"])

    async def _log_in(self) -> None:
        client = self.client
        stored = False
        if self.config["token"] is not None:
            client.token = self.config["token"]
            me = await client.whoami()
        else:
            me = await self._stored_login()
            stored = me is not None
            if me is None:
                me = await self._password_login()
        if me.get("user_id") != self.user_id:
            self.log.warning("Logged in as %s, configured as %s", me.get("user_id"), self.user_id)
            self.user_id = me["user_id"]
        self.device_id = me.get("device_id")
        how = ", stored access token" if stored else ""
        self.log.info("Logged in as %s (device %s%s)", self.user_id, self.device_id, how)

    def _login_key(self) -> dict:
        """What a stored access token must belong to, to be used (see :data:`TOKEN_KEY`)."""
        return {"homeserver": self.config["homeserver"], "user": self.config["user"]}

    async def _stored_login(self) -> dict | None:
        """
        The ``whoami`` of the access token the last password login stored, if it belongs to
        this config (homeserver, user, and ``device`` where one is configured) and the
        homeserver still takes it; ``None`` for a password login. Retried while the homeserver
        is unreachable or answers 5xx, like the login: only a refusal gives the token up.
        """
        stored = await self.state.get(TOKEN_KEY)
        if not isinstance(stored, dict) or not isinstance(stored.get("token"), str):
            return None
        if {key: stored.get(key) for key in ("homeserver", "user")} != self._login_key():
            return None  # another account's (or server's): never sent there
        if self.config["device"] not in (None, stored.get("device")):
            return None
        self.client.token = stored["token"]
        try:
            return await self.client.whoami()
        except MatrixError as exc:
            # 401 M_UNKNOWN_TOKEN: logged out, revoked, expired, or soft-logged-out (the
            # password login on the same device keeps the device). Any other refusal too: the
            # password is what the config gives; a refusal of that one fails the plug.
            self.client.token = None
            await self.state.delete(TOKEN_KEY)
            self.log.info(
                "Stored access token refused (%s): logging in with the password", exc.reason
            )
            return None

    async def _password_login(self) -> dict:
        """Log in with the password (see :meth:`_new_token`); ``whoami``."""
        await self._new_token()
        return await self.client.whoami()

    async def _new_token(self) -> str:
        """
        Log in with the password, keep the device and the access token in the store; the
        device ID. Raises :class:`MatrixError` for a refused login.
        """
        client = self.client
        device = self.config["device"] or await self.state.get("device")
        if device is None:
            # Stable per plug without a store too; kept in the store when there is one.
            digest = hashlib.sha256(f"{self.user_id}|{self.name}".encode()).hexdigest()
            device = f"IMMP{digest[:8].upper()}"
        answer = await client.login(self.user_id, self.config["password"], device)
        device = answer.get("device_id", device)
        await self.state.set("device", device)
        # For the next start (see _stored_login): the store now holds a secret, as the config.
        await self.state.set(
            TOKEN_KEY, {**self._login_key(), "device": device, "token": answer["access_token"]}
        )
        return device

    async def _token_refused(self, refused: str, exc: MatrixError) -> None:
        """
        The client's call for a request made after the login with the access token
        ``refused`` and answered 401 ``M_UNKNOWN_TOKEN`` (the device logged out by an admin, the
        token revoked or expired): log in again with the password, on the same device, store
        the new token, and say so in one WARNING line; the client then makes the request again
        with it. One login at a time: a request refused meanwhile goes again with its token.

        Fails the plug (see :meth:`_fail`) and raises :class:`immp.PlugError` with no password
        to log in with, if that login is refused (the password changed), and if the homeserver
        refuses the new token before it took it once (no login after login); every request
        refused after that raises it too. Cancelling it abandons the login: the token stays
        the refused one, and the next request refused logs in.
        """
        async with self._renewing:
            client = self.client
            if self._refusal is not None:
                raise immp.PlugError(self._refusal)
            if client.token != refused:
                return  # logged in again while this request was under way
            why = f"{exc.status} {exc.errcode}" + (", soft logout" if exc.soft_logout else "")
            if self.config["password"] is None:
                self._fail(
                    f"the access token was refused ({why}): set a new `token` or a `password`"
                )
            if not client.token_accepted:
                # Only a login's token is refused before it was taken (the start checks it).
                self._fail(f"the access token of a new login was refused at once ({why})")
            try:
                device = await self._new_token()
            except MatrixError as login:
                self._fail(
                    f"the access token was refused ({why}), and logging in again too: "
                    f"{login.reason}"
                )
            self.log.warning(
                "Access token refused (%s): logged in again with the password (device %s)",
                why,
                device,
            )

    def _fail(self, why: str) -> NoReturn:
        """
        Fail the plug for ``why``, an access token refused that cannot be replaced, and raise
        it as an :class:`immp.PlugError`: the sync loop ends (and :meth:`_run` raises it, if
        this is not the sync loop's own request), and so do the sends under way, each with it.
        """
        self._refusal = f"{self.name}: {why}"
        if self._sync_scope is not None:
            self._sync_scope.cancel()
        for scope in self._turns:
            scope.cancel()  # else they would go on with the client the failure closes
        raise immp.PlugError(self._refusal) from None

    def _filter_definition(self) -> dict:
        return {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "timeline": {"limit": self.config["timeline-limit"], "types": _TIMELINE_TYPES},
                "state": {"lazy_load_members": True, "types": _STATE_TYPES},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        }

    async def _join(self, source: str) -> str | None:
        try:
            room_id = await self.client.join(source)
        except MatrixError as exc:
            self.log.error("%s", exc)  # "cannot join #room:server: 403 M_FORBIDDEN ..."
            return None
        self._sources[source] = room_id
        self._channel_of[room_id] = source
        self._rooms.setdefault(room_id, Room(room_id, alias=source if source[:1] == "#" else None))
        return room_id

    async def on_channel_added(self, channel: immp.Channel) -> None:
        """A named channel of this plug was added while running: join its room (once logged in)."""
        await self._ready.wait()
        await self._join(channel.source)

    async def on_channel_removed(self, channel: immp.Channel) -> None:
        """A named channel was removed: leave its room (unless another channel names it)."""
        room_id = self._sources.pop(channel.source, None)
        if room_id is None or room_id in self._sources.values():
            return
        self._channel_of.pop(room_id, None)
        self._rooms.pop(room_id, None)
        try:
            await self.client.leave(room_id)
        except MatrixError as exc:
            self.log.warning("%s", exc)

    # -- receiving ------------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        try:
            while True:
                since = await self.state.get("since")
                batch = await self.client.sync(
                    since=since,
                    filter=self._filter,
                    timeout_ms=int(self.config["sync-timeout"] * 1000),
                )
                await self._handle_batch(batch, since=since)
                # Only now, with every message of the batch handed to the host (journaled, with
                # the journal on: see Plug.taken), does the token move on: a restart before
                # this point gets the batch again.
                await self.taken()
                await self.state.set("since", batch["next_batch"])
        finally:
            with trio.CancelScope(shield=True):
                await self.client.aclose()

    async def _handle_batch(
        self, batch: dict, *, initial: bool = False, since: str | None = None
    ) -> None:
        rooms = batch.get("rooms", {})
        for room_id in rooms.get("invite", {}):
            if self.config["auto-join"] and room_id not in self._rooms:
                self.log.info("Invited to %s: joining", room_id)
                await self._join(room_id)
            elif not self.config["auto-join"]:
                self.log.debug("Invited to %s (auto-join is off)", room_id)
        for room_id, data in rooms.get("join", {}).items():
            room = self._rooms.setdefault(room_id, Room(room_id))
            for event in data.get("state", {}).get("events", []):
                self._apply_state(room, event)
            timeline = data.get("timeline", {})
            events = list(timeline.get("events", []))
            if initial:
                for event in events:
                    if "state_key" in event:
                        self._apply_state(room, event)
                continue
            joined_at = self._own_join(events)
            if joined_at is not None:
                # Joined just now: what came before our join is history, not news.
                for earlier in events[:joined_at]:
                    if "state_key" in earlier:
                        self._apply_state(room, earlier)
                events = events[joined_at + 1 :]
            elif timeline.get("limited") and timeline.get("prev_batch") and since:
                events = await self._fill_gap(room_id, timeline["prev_batch"], since) + events
            for event in events:
                if not await self._echo_ready(room, event):
                    continue
                await self._know_sender(room, event)
                await self._know_reply(room, event)
                sent = self._to_message(room, event)
                if sent is not None:
                    await self.queue(sent)
        for room_id in rooms.get("leave", {}):
            self._rooms.pop(room_id, None)

    async def _echo_ready(self, room: Room, event: dict) -> bool:
        """
        Whether an event goes on to the host: any sender's but this device's, and of this
        device's only the echo of an event a put() made (:attr:`_put_txns`), once that put()
        has returned, and only if the host knows it as the echo of what it sent
        (:meth:`immp.Host.echo_of`). The host waits only a moment for a put under way before it
        takes a message for new, and a put of a caption and a picture to fetch may take longer.
        Waits for the put at most ``request-timeout``; the echo of a put that failed, took
        longer, or was not the host's (a direct call) is dropped: a copy never comes back new.
        """
        txn = (event.get("unsigned") or {}).get("transaction_id")
        if txn is None:
            return True
        done = self._put_txns.get(txn)
        if done is None:
            return False
        with trio.move_on_after(self.config["request-timeout"]):
            await done.wait()
        return self.host.echo_of(self.channel_of(room.id), event.get("event_id", "")) is not None

    def _own_join(self, events: list[dict]) -> int | None:
        """The index of our own join (from not joined) in a timeline, if it is there."""
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if event.get("type") != "m.room.member" or event.get("state_key") != self.user_id:
                continue
            prev = (event.get("unsigned") or {}).get("prev_content") or {}
            content = event.get("content") or {}
            if content.get("membership") == "join" and prev.get("membership") != "join":
                return index
        return None

    async def _fill_gap(self, room_id: str, prev_batch: str, since: str) -> list[dict]:
        """The events a ``limited`` timeline left out, between ``since`` and ``prev_batch``."""
        missing: list[dict] = []
        start = prev_batch
        filter = {"types": _TIMELINE_TYPES, "lazy_load_members": True}
        while True:
            page = await self.client.messages(room_id, start=start, stop=since, filter=filter)
            chunk = page.get("chunk", [])
            missing.extend(chunk)
            if not chunk or not page.get("end") or page.get("end") == start:
                break
            start = page["end"]
        missing.reverse()  # pages run backwards in time
        self.log.debug("Filled %d events missing from a limited sync of %s", len(missing), room_id)
        return missing

    async def _know_sender(self, room: Room, event: dict) -> None:
        """
        Make sure the sender of an event is among the room's members, asking the homeserver
        once per member and run where not. Members are lazy-loaded: the homeserver sends a
        member's event once per device, so after a restart (same device, resumed ``since``) it
        never sends again those of members who have not changed since, and their names would be
        lost for good.
        """
        sender = event.get("sender")
        if not sender or sender in room.members or sender in room.looked_up:
            return
        if event.get("type") == "m.room.member" and event.get("state_key") == sender:
            return  # the event is the member's own (a join): it says it all
        if (event.get("unsigned") or {}).get("transaction_id") is not None:
            return  # the echo of our own put(): the plug's own user
        room.looked_up.add(sender)
        try:
            member = await self.client.state(room.id, "m.room.member", sender)
        except MatrixError as exc:
            self.log.debug("No member info for %s: %s", sender, exc)
            return
        if member and member.get("membership") == "join":
            room.members[sender] = member.get("displayname")

    async def _know_reply(self, room: Room, event: dict) -> None:
        """
        Make sure the event a reply replies to is among the recent ones, so that the reply
        carries its text and author: one posted before this start (or forgotten since) is asked
        of the homeserver, once. A failure leaves the quote without text, logged at DEBUG; the
        event is then not asked again (while :data:`_RECENT` others have not failed since).
        """
        if event.get("type") not in ("m.room.message", "m.sticker"):
            return
        if (event.get("unsigned") or {}).get("transaction_id") is not None:
            return  # the echo of our own put(): what it replies to was known then
        relates = (event.get("content") or {}).get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            return  # an edit: its reply_to is not read
        reply_id = (relates.get("m.in_reply_to") or {}).get("event_id")
        if (
            not isinstance(reply_id, str)
            or reply_id in self._recent
            or reply_id in self._unquotable
        ):
            return
        try:
            replied = await self.client.event(room.id, reply_id)
        except (MatrixError, Unreachable) as exc:
            self._unquotable[reply_id] = None
            self.log.debug("No quote for a reply to %s: %s", reply_id, exc)
            return
        await self._know_sender(room, replied)
        content = replied.get("content") or {}
        text, _, action = self._content(room, content)
        self._remember(reply_id, replied.get("sender", ""), str(text or content.get("body", "")))
        own = self._own_author(content) if replied.get("sender") == self.user_id else None
        if own is not None:
            # Only the name is left of the author on the other network.
            self._authored[reply_id] = (
                immp.User(real_name=own[0]),
                immp.RichText.of(own[1]),
                action,
            )

    def _apply_state(self, room: Room, event: dict) -> None:
        type_ = event.get("type")
        content = event.get("content") or {}
        if type_ == "m.room.member":
            if content.get("membership") == "join":
                room.members[event["state_key"]] = content.get("displayname")
            else:
                room.members.pop(event.get("state_key"), None)
        elif type_ == "m.room.name":
            room.name = clean_name(content.get("name"))
        elif type_ == "m.room.canonical_alias":
            room.alias = content.get("alias") or room.alias
        elif type_ == "m.room.encryption":
            room.encrypted = True
            self._warn_encrypted(room)

    def _warn_encrypted(self, room: Room) -> None:
        if not room.warned:
            room.warned = True
            self.log.warning(
                "Room %s is encrypted: its messages cannot be read or bridged",
                room.alias or room.id,
            )

    def channel_of(self, room_id: str) -> immp.Channel:
        """The channel of a room: under its configured source (alias or ID) where it has one."""
        return immp.Channel(self, self._channel_of.get(room_id, room_id))

    def _user(self, room: Room | None, user_id: str, name: str | None = None) -> immp.User:
        if name is None and room is not None:
            name = room.members.get(user_id)
        return immp.User(
            id=user_id,
            plug=self,
            username=user_id,
            real_name=clean_name(name),
            link=formatting.MATRIX_TO + user_id,
        )

    def _remember(self, event_id: str, sender: str, body: str) -> None:
        self._recent[event_id] = (sender, body)

    def _remember_put(self, event_id: str, msg: immp.Message) -> None:
        text = msg.text.clone() if msg.text else None
        self._authored[event_id] = (msg.user, text, msg.action)

    def _own_author(self, content: dict) -> tuple[str, str] | None:
        """
        The author's name and the text of one of our events that put() wrote for a message from
        another network, as the event has it (after a restart, with the message forgotten):
        ``**name**: text`` (an emote: ``**name** waves``), in both the HTML and the plain body
        (without a reply fallback). ``None`` for any other form.
        """
        body, formatted = content.get("body"), content.get("formatted_body")
        if not isinstance(body, str) or not isinstance(formatted, str):
            return None
        if (content.get("m.relates_to") or {}).get("m.in_reply_to"):
            body = formatting.strip_reply_fallback(body)
            if formatted.startswith("<mx-reply>"):
                formatted = formatted.partition("</mx-reply>")[2]
        if not formatted.startswith("<strong>"):
            return None
        name, end, rest = formatted[len("<strong>") :].partition("</strong>")
        gap = " " if content.get("msgtype") == "m.emote" else ": "
        if not end or not name or "<" in name or not rest.startswith(gap):
            return None
        name = html.unescape(name)
        if not body.startswith(name + gap):
            return None
        return name, body[len(name) + len(gap) :]

    def _quoted(self, room: Room, channel: immp.Channel, event_id: str) -> immp.SentMessage:
        """
        What a reply to ``event_id`` replies to: for one of our events, the author and text of
        the message put() sent as it; else the sender and text of the event, as far as known.
        """
        quoted = self._recent.get(event_id)
        authored = self._authored.get(event_id)
        if authored is not None:
            user, text, action = authored
            return immp.SentMessage(
                event_id,
                channel,
                text=text if text is not None else (quoted[1] if quoted else None),
                user=user or self._user(room, self.user_id),
                action=action,
            )
        return immp.SentMessage(
            event_id,
            channel,
            text=quoted[1] if quoted else None,
            user=self._user(room, quoted[0]) if quoted else None,
        )

    def _to_message(self, room: Room, event: dict) -> immp.SentMessage | None:
        """A received event as a message for the host; ``None`` for what is not one."""
        type_ = event.get("type")
        content = event.get("content") or {}
        sender = event.get("sender", "")
        old_name = room.members.get(sender)
        if "state_key" in event:
            self._apply_state(room, event)
        channel = self.channel_of(room.id)
        fields: dict[str, Any] = {
            "at": event.get("origin_server_ts", 0) / 1000 or None,
            "raw": event,
        }
        if type_ == "m.room.encrypted":
            room.encrypted = True
            self._warn_encrypted(room)
            return None
        if type_ == "m.room.redaction":
            target = event.get("redacts") or content.get("redacts")
            if not target:
                return None
            return immp.SentMessage(
                target,
                channel,
                deleted=True,
                user=self._user(room, sender),
                revision=event.get("origin_server_ts", 0),
                **fields,
            )
        if type_ == "m.room.name":
            return immp.SentMessage(
                event["event_id"],
                channel,
                title=clean_name(content.get("name")) or "",
                user=self._user(room, sender),
                **fields,
            )
        if type_ == "m.room.member":
            return self._membership(room, event, channel, old_name, fields)
        if type_ not in ("m.room.message", "m.sticker"):
            return None
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace" and relates.get("event_id"):
            new = content.get("m.new_content") or content
            text, attachments, action = self._content(room, new)
            return immp.SentMessage(
                relates["event_id"],
                channel,
                edited=True,
                text=text,
                action=action,
                attachments=attachments,
                user=self._user(room, sender),
                revision=event.get("origin_server_ts", 0),
                **fields,
            )
        text, attachments, action = self._content(room, content)
        reply_to = None
        reply_id = (relates.get("m.in_reply_to") or {}).get("event_id")
        if reply_id:
            reply_to = self._quoted(room, channel, reply_id)
        self._remember(event["event_id"], sender, str(text or content.get("body", "")))
        return immp.SentMessage(
            event["event_id"],
            channel,
            text=text,
            action=action,
            attachments=attachments,
            reply_to=reply_to,
            user=self._user(room, sender, old_name),
            **fields,
        )

    def _membership(
        self, room: Room, event: dict, channel: immp.Channel, old_name: str | None, fields: dict
    ) -> immp.SentMessage | None:
        user_id = event.get("state_key", "")
        if user_id == self.user_id:
            return None
        content = event.get("content") or {}
        prev = (event.get("unsigned") or {}).get("prev_content") or {}
        now, before = content.get("membership"), prev.get("membership")
        name = content.get("displayname")
        if now == "join" and before != "join":
            return immp.SentMessage(
                event["event_id"],
                channel,
                user=self._user(room, user_id),
                joined=[self._user(room, user_id)],
                **fields,
            )
        if now == "join" and name != prev.get("displayname"):
            who = self._user(room, user_id, prev.get("displayname") or user_id)
            return immp.SentMessage(
                event["event_id"],
                channel,
                user=who,
                action=True,
                text=f"is now known as {clean_name(name) or user_id}",
                **fields,
            )
        if now in ("leave", "ban") and before == "join":
            who = self._user(room, user_id, old_name or prev.get("displayname"))
            return immp.SentMessage(event["event_id"], channel, user=who, left=[who], **fields)
        return None

    def media_link(self, mxc: str) -> str | None:
        """The link other networks get for an ``mxc://`` URI (see ``media-url``)."""
        base = self.config["media-url"]
        if base is None:
            return self.client.media_url(mxc)
        server, _, media = mxc.removeprefix("mxc://").partition("/")
        return f"{base.rstrip('/')}/{quote(server)}/{quote(media)}" if media else None

    def _content(self, room: Room, content: dict) -> tuple[immp.RichText | None, list, bool]:
        msgtype = content.get("msgtype")
        body = content.get("body") or ""
        if msgtype in _MEDIA_TYPES or content.get("url"):
            url = content.get("url")
            link = self.media_link(url) if url else None
            title = content.get("filename") or body or None
            kind = _MEDIA_TYPES.get(msgtype, immp.FileType.image)
            caption = body if content.get("filename") and body != content["filename"] else None
            return (
                immp.RichText.of(caption),
                [immp.File(title=title, type=kind, source=link)],
                False,
            )
        if content.get("format") == "org.matrix.custom.html" and content.get("formatted_body"):
            text = formatting.from_html(
                content["formatted_body"], lambda uid, name: self._user(room, uid, name or None)
            )
        else:
            text = immp.RichText.of(
                formatting.strip_reply_fallback(body)
                if (content.get("m.relates_to") or {}).get("m.in_reply_to")
                else body
            )
        return text, [], msgtype == "m.emote"

    # -- sending --------------------------------------------------------------------------------

    def _txn(self, room_id: str, part: str) -> str:
        key = delivery_key.get()
        if key is not None:
            digest = hashlib.sha256(f"{key}|{room_id}|{part}".encode()).hexdigest()[:32]
            txn = f"immp-k{digest}"
        else:
            self._txn_count += 1
            txn = f"immp-{self._txn_prefix}-{self._txn_count}-{part}"
        put = _current_put.get()
        if put is not None:  # an event of a put(): its echo goes to the host
            self._put_txns[txn] = put
        return txn

    async def room_id(self, channel: immp.Channel) -> str:
        """
        The room ID of a channel (resolving an alias once, once logged in). Raises
        :class:`immp.PlugError` for an alias the homeserver does not resolve, or if the plug is
        not logged in (see :meth:`_logged_in`).
        """
        source = channel.source
        if source.startswith("!"):
            return source
        room_id = self._sources.get(source)
        if room_id is None:
            if not await self._logged_in(f"room of {source}"):
                reason = self.disconnect_reason or "not open"
                raise immp.PlugError(f"{self.name}: not logged in ({reason}): {source} unknown")
            room_id = await self.client.resolve_alias(source)
            self._sources[source] = room_id
            self._channel_of.setdefault(room_id, source)
        return room_id

    def _lock(self, room_id: str) -> trio.Lock:
        # trio's Lock is fair (first come, first served): sends leave in the order they came.
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = trio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def _turn(self, channel: immp.Channel) -> AsyncIterator[str]:
        """
        A send's turn in its room, for the body of the ``async with``: waits until the plug is
        logged in (sends made before that leave in the order they came), then for room in
        ``send-queue`` and for the earlier sends to the room; gives the room ID. Cancelling
        it gives up the turn. Raises :class:`immp.PlugError` while the plug closes, and when
        :meth:`close` cuts the send off, or a refused access token fails the plug (see
        :meth:`_fail`).
        """
        if self._closing:
            raise immp.PlugError(f"{self.name}: closing: not sent to {channel.source}")
        with trio.CancelScope() as scope:
            self._turns.add(scope)
            try:
                async with contextlib.AsyncExitStack() as held:
                    if self._ready.is_set() and not self._waiting.locked():
                        room_id = await self._hold(held, channel)
                    else:
                        # One at a time, each until it holds its room's lock: in order.
                        async with self._waiting:
                            await self._ready.wait()
                            room_id = await self._hold(held, channel)
                    yield room_id
            finally:
                self._turns.discard(scope)
                if self._closing and not self._turns:
                    self._turns_left.set()
        if scope.cancelled_caught:
            raise immp.PlugError(
                self._refusal or f"{self.name}: closed before the send to {channel.source} was done"
            )

    async def _hold(self, held: contextlib.AsyncExitStack, channel: immp.Channel) -> str:
        room_id = await self.room_id(channel)
        await held.enter_async_context(self._sends)
        await held.enter_async_context(self._lock(room_id))
        return room_id

    def _pill(self, user: immp.User) -> str | None:
        return user.id if user.plug is self and user.id else None

    def _foreign_name(self, msg: immp.Message) -> str | None:
        user = msg.user
        if not self.config["show-names"] or user is None:
            return None
        if user.plug is self and user.id == self.user_id:
            return None
        return user.name

    def _body(self, msg: immp.Message) -> dict:
        """The ``m.room.message`` content of a message's text (no relations)."""
        rich = msg.text.clone() if msg.text else None
        if not rich:
            rendered = msg.clone(attachments=[], edited=False).render()
            content = {"msgtype": "m.notice", "body": str(rendered)}
            return content if rendered else {}
        name = self._foreign_name(msg)
        msgtype = "m.emote" if msg.action else "m.text"
        if name:
            rich.prepend(immp.Segment(name, bold=True), " " if msg.action else ": ")
        if isinstance(msg.reply_to, immp.Message) and not isinstance(
            msg.reply_to, immp.SentMessage
        ):
            quoted = str(msg.reply_to.text or "").replace("\n", " ")[:60]
            rich.prepend(immp.Segment(f'[re "{quoted}"] ', italic=True))
        content: dict[str, Any] = {"msgtype": msgtype, "body": formatting.to_plain(rich)}
        if not formatting.is_plain(rich):
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = formatting.to_html(rich, self._pill)
        return content

    def _with_reply(self, room_id: str, content: dict, reply: immp.SentMessage) -> dict:
        sender, quoted = self._recent.get(reply.id, (None, None))
        if sender is None:
            sender = reply.user.id if reply.user and reply.user.plug is self else self.user_id
        if quoted is None:
            quoted = str(reply.text or "")
        lines = quoted.split("\n") or [""]
        fallback = "\n".join([f"> <{sender}> {lines[0]}", *(f"> {ln}" for ln in lines[1:])])
        link = f"{formatting.MATRIX_TO}{quote(room_id)}/{quote(reply.id)}"
        html_quote = html.escape(quoted, quote=False).replace("\n", "<br>")
        reply_html = (
            f'<mx-reply><blockquote><a href="{html.escape(link)}">In reply to</a> '
            f'<a href="{html.escape(formatting.MATRIX_TO + sender)}">'
            f"{html.escape(sender, quote=False)}</a><br>{html_quote}</blockquote>"
            "</mx-reply>"
        )
        formatted = content.get("formatted_body") or html.escape(
            content["body"], quote=False
        ).replace("\n", "<br>")
        return {
            **content,
            "body": f"{fallback}\n\n{content['body']}",
            "format": "org.matrix.custom.html",
            "formatted_body": reply_html + formatted,
            "m.relates_to": {"m.in_reply_to": {"event_id": reply.id}},
        }

    async def put(self, channel, msg):
        """
        Post a message: its text as one event (a multi-line message stays one), then one event
        per attachment. Waits in order behind earlier sends to the room, for the login at
        start, and through rate limits and outages (nothing is dropped); cancelling it abandons
        the send, and a repeat with the same :data:`delivery_key` lands once. Raises
        :class:`immp.PlugError` if the plug closes first (see :meth:`close`).
        """
        if _current_put.get() is None:
            # Set as this returns, with no checkpoint before the host records the receipts:
            # the echoes of its events, held until then, are matched to them (see _echo_ready).
            done = trio.Event()
            token = _current_put.set(done)
            try:
                return await self.put(channel, msg)
            finally:
                _current_put.reset(token)
                done.set()
        if msg.key is not None and delivery_key.get() is None:
            # The journal's delivery key (immp.Message.key): the txnIds derive from it, so a
            # delivery repeated after a crash returns the events it made the first time.
            token = delivery_key.set(msg.key)
            try:
                return await self.put(channel, msg)
            finally:
                delivery_key.reset(token)
        async with self._turn(channel) as room_id:
            receipts = []
            content = self._body(msg)
            if content:
                # Remembered without the reply fallback: a reply to this one quotes only it.
                body = content["body"]
                if isinstance(msg.reply_to, immp.SentMessage) and msg.reply_to.channel == channel:
                    content = self._with_reply(room_id, content, msg.reply_to)
                event_id = await self.client.send(
                    room_id, "m.room.message", self._txn(room_id, "t"), content
                )
                self._remember(event_id, self.user_id, body)
                self._remember_put(event_id, msg)
                receipts.append(immp.Receipt(event_id, channel))
            for index, item in enumerate(msg.attachments):
                event_id = await self._attach(room_id, item, index, msg)
                if event_id is not None:
                    receipts.append(immp.Receipt(event_id, channel))
            return receipts

    async def _attach(self, room_id: str, item, index: int, msg: immp.Message) -> str | None:
        txn = self._txn(room_id, f"a{index}")
        if isinstance(item, immp.File) and item.source:
            try:
                uploaded = await self._upload(item)
            except (httpx.HTTPError, ValueError, MatrixError, Unreachable) as exc:
                self.log.warning(
                    "Attachment %s not uploaded (%s): sending its link", item.source, exc
                )
                uploaded = None
            if uploaded is not None:
                mxc, mime, size = uploaded
                msgtype = (
                    "m.image"
                    if item.type is immp.FileType.image or mime.startswith("image/")
                    else "m.file"
                )
                content = {
                    "msgtype": msgtype,
                    "body": item.title or "file",
                    "url": mxc,
                    "info": {"mimetype": mime, "size": size},
                }
                return await self.client.send(room_id, "m.room.message", txn, content)
        line = immp.Message(attachments=[item]).render()
        if not line:
            return None
        name = self._foreign_name(msg)
        body = f"{name}: {line}" if name else str(line)
        return await self.client.send(
            room_id, "m.room.message", txn, {"msgtype": "m.text", "body": body}
        )

    async def _upload(self, item: immp.File) -> tuple[str, str, int] | None:
        if item.source.startswith("mxc://"):
            return item.source, "application/octet-stream", 0
        if not item.source.startswith(("http://", "https://")):
            return None
        limit = self.config["media-max-size"]
        async with httpx.AsyncClient(
            timeout=self.config["request-timeout"], follow_redirects=True
        ) as http:
            async with http.stream("GET", item.source) as reply:
                reply.raise_for_status()
                data = bytearray()
                async for chunk in reply.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ValueError(f"larger than media-max-size ({limit} bytes)")
                mime = reply.headers.get("content-type", "").split(";")[0] or (
                    mimetypes.guess_type(item.title or item.source)[0] or "application/octet-stream"
                )
        mxc = await self.client.upload(bytes(data), mime, item.title)
        return mxc, mime, len(data)

    async def edit(self, receipt, msg):
        """
        Replace one of our messages (``m.replace``); returns its receipt, a revision on. Waits
        and is cut off as :meth:`put` is.
        """
        new = self._body(msg)
        if not new:
            raise immp.PlugError(f"{self.name}: nothing to edit {receipt.id} to")
        content = {
            **new,
            "body": f"* {new['body']}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": receipt.id},
        }
        if "formatted_body" in new:
            content["formatted_body"] = f"* {new['formatted_body']}"
        async with self._turn(receipt.channel) as room_id:
            await self.client.send(
                room_id, "m.room.message", self._txn(room_id, f"e{receipt.id}"), content
            )
        self._remember(receipt.id, self.user_id, new["body"])
        self._remember_put(receipt.id, msg)
        return immp.Receipt(receipt.id, receipt.channel, revision=receipt.revision + 1)

    async def delete(self, receipt):
        """Redact a message. Waits and is cut off as :meth:`put` is."""
        async with self._turn(receipt.channel) as room_id:
            await self.client.redact(room_id, receipt.id, self._txn(room_id, f"d{receipt.id}"))

    # -- channels and users ---------------------------------------------------------------------

    async def _logged_in(self, what: str) -> bool:
        """
        Whether the plug is logged in (and started), after waiting for a start under way at
        most the host's open-timeout: a query made while the homeserver is slow or down at
        start gets its answer once the plug is logged in. ``False`` if it is not by then, or if
        the start ended without a login (refused, or the plug closed); ``what`` names the
        query for the DEBUG line that says so. Cancelling it is harmless.
        """
        with trio.move_on_after(self.host.open_timeout):
            while not self._ready.is_set():
                ended = self._start_ended
                await ended.wait()
                if ended is self._start_ended and not self._ready.is_set():
                    break  # this lifetime's start is over without a login
        if self._ready.is_set():
            return True
        reason = self.disconnect_reason or "not open"
        self.log.debug("Not logged in (%s): %s unknown", reason, what)
        return False

    async def user_from_id(self, id):
        """
        The Matrix user ``id`` with its display name and avatar; ``None`` for an ID that is no
        user's, a user the homeserver does not know, or while not logged in (see
        :meth:`_logged_in`).
        """
        if not isinstance(id, str) or not id.startswith("@"):
            return None
        if not await self._logged_in(f"user {id}"):
            return None
        profile = await self.client.profile(id)
        if profile is None:
            return None
        avatar = profile.get("avatar_url")
        return immp.User(
            id=id,
            plug=self,
            username=id,
            real_name=clean_name(profile.get("displayname")),
            avatar=self.media_link(avatar) if avatar else None,
            link=formatting.MATRIX_TO + id,
        )

    async def user_is_system(self, user):
        return user.plug is self and user.id == self.user_id

    async def public_channels(self):
        """The channels of the rooms joined; ``None`` while not logged in."""
        if not await self._logged_in("joined rooms"):
            return None
        return [self.channel_of(room_id) for room_id in await self.client.joined_rooms()]

    async def channel_is_private(self, channel):
        """Whether the room is a direct chat (``m.direct``); ``None`` while not logged in."""
        if not await self._logged_in(f"whether {channel.source} is private"):
            return None
        room_id = await self.room_id(channel)
        direct = await self.client.direct_rooms(self.user_id)
        return any(room_id in rooms for rooms in direct.values() if isinstance(rooms, list))

    async def channel_title(self, channel):
        """The room's name; ``None`` for a room without one, or while not logged in."""
        if not await self._logged_in(f"title of {channel.source}"):
            return None
        room_id = await self.room_id(channel)
        room = self._rooms.get(room_id)
        if room is not None and room.name:
            return room.name
        state = await self.client.state(room_id, "m.room.name")
        name = clean_name((state or {}).get("name"))
        if room is not None:
            room.name = name
        return name

    async def channel_link(self, channel):
        return f"{formatting.MATRIX_TO}{channel.source}"

    async def channel_members(self, channel):
        """The room's joined members; ``None`` if the homeserver refuses, or not logged in."""
        if not await self._logged_in(f"members of {channel.source}"):
            return None
        room_id = await self.room_id(channel)
        try:
            joined = await self.client.joined_members(room_id)
        except MatrixError:
            return None
        return [
            self._user(None, uid, (info or {}).get("display_name")) for uid, info in joined.items()
        ]

    async def channel_rename(self, channel, title):
        """
        Set the room's name. Raises :class:`immp.PlugError` if the homeserver refuses, or if
        the plug is not logged in (see :meth:`_logged_in`).
        """
        if not await self._logged_in(f"rename of {channel.source}"):
            reason = self.disconnect_reason or "not open"
            raise immp.PlugError(
                f"{self.name}: not logged in ({reason}): {channel.source} not renamed"
            )
        room_id = await self.room_id(channel)
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.name/"
        await self.client.request("PUT", path, {"name": title}, action=f"rename {room_id}")


logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
