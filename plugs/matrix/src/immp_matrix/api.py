"""
The Matrix client-server API, the few endpoints the plug needs, over httpx on trio.

:class:`Client` owns the HTTP connection pool and the access token. Every request goes through
:meth:`Client.request`, which waits out rate limits (429 / ``M_LIMIT_EXCEEDED``: the same
request again after ``retry_after_ms``, so a send keeps its transaction ID and is never
duplicated) and, where asked, retries 5xx answers and network errors with backoff: the outage is
reported once (and again when its reason changes), each retry only at DEBUG. Anything else the
server refuses is a :class:`MatrixError` with its ``errcode``: an :class:`immp.PlugError` of one
line that says what was refused and why. An access token refused while in use (401
``M_UNKNOWN_TOKEN``) is handed to :attr:`Client.on_token_refused`, where one is set, and the
request made again with the token it leaves (a send with its transaction ID: it lands once).
"""

from __future__ import annotations

import json
import logging
import random
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

import immp

log = logging.getLogger(__name__)

CLIENT = "/_matrix/client/v3"
MEDIA = "/_matrix/client/v1/media"  # authenticated media (the old /_matrix/media/v3 is gone)


class MatrixError(immp.PlugError):
    """
    The homeserver refused a request: ``status`` is the HTTP status, ``errcode`` e.g.
    ``M_FORBIDDEN``, ``reason`` the server's words (``403 M_FORBIDDEN You don't have ...``).
    ``str()`` is one line: ``cannot redact $event in !room: 403 M_FORBIDDEN ...`` (``what`` is
    the action refused, or the request's method and path). ``soft_logout``: an access token
    refused (401 ``M_UNKNOWN_TOKEN``) because it expired, its device kept.
    """

    def __init__(
        self,
        status: int,
        errcode: str | None,
        error: str | None,
        what: str,
        *,
        soft_logout: bool = False,
    ):
        self.status = status
        self.errcode = errcode
        self.error = error
        self.what = what
        self.soft_logout = soft_logout
        self.reason = " ".join(str(part) for part in (status, errcode, error) if part)
        super().__init__(f"{what}: {self.reason}")


class SendRefused(MatrixError, immp.SendRefused):
    """
    The homeserver refused one event for good: 403 (the bot may not post there, e.g. a power
    level too low, or it is not in the room), 413 or 400 (too large, or content it rejects).
    Sent again it would be refused again: under the journal its delivery is given up.
    """


#: Statuses of a send that are the event's fate, not the network's or the login's (401, 429
#: and 5xx are not).
REFUSED = frozenset((400, 403, 413))


class Unreachable(immp.PlugError):
    """The homeserver could not be reached, or answered 5xx, and retrying was not asked for."""


def quote(part: str) -> str:
    """One path segment (room IDs, aliases, event and transaction IDs), fully escaped."""
    return urllib.parse.quote(part, safe="")


class Backoff:
    """Exponential backoff with jitter: 0.5 s doubling up to ``maximum``; reset on success."""

    def __init__(self, maximum: float = 60.0, first: float = 0.5):
        self.maximum = maximum
        self.first = first
        self.delay = first

    def next(self) -> float:
        delay = min(self.delay, self.maximum)
        self.delay = min(self.delay * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.delay = self.first


class Client:
    """
    An authenticated client of one homeserver. ``on_reachable(bool, reason)`` is told as soon
    as a request fails with a network error or 5xx, again when the reason changes, and when a
    request works again; without it, the client logs that itself.
    """

    def __init__(
        self,
        homeserver: str,
        *,
        timeout: float = 30.0,
        retry_max: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_reachable: Callable[[bool, str | None], None] | None = None,
    ):
        self.homeserver = homeserver.rstrip("/")
        self.timeout = timeout
        self.retry_max = retry_max
        self._token: str | None = None
        #: Whether the homeserver has answered a request made with :attr:`token` (other than
        #: refusing it) since it was set.
        self.token_accepted = False
        #: Awaited as ``on_token_refused(token, error)`` when a request made with ``token`` is
        #: answered 401 ``M_UNKNOWN_TOKEN`` (logged out, revoked, expired): it sets a new
        #: :attr:`token`, with which the request is made again, or raises, and the request
        #: raises that. Unset, the request raises the :class:`MatrixError`.
        self.on_token_refused: Callable[[str, MatrixError], Awaitable[None]] | None = None
        self.http = httpx.AsyncClient(
            base_url=self.homeserver, timeout=timeout, transport=transport
        )
        self._on_reachable = on_reachable
        self.reachable = True
        #: Why the homeserver is unreachable (``None`` while it is reachable).
        self.reason: str | None = None
        self._reasons: set[str] = set()  # reported during this outage
        #: Rate-limit waits so far (for tests and benchmarks).
        self.rate_limited = 0

    @property
    def token(self) -> str | None:
        """The access token sent with every request (but a login); never logged."""
        return self._token

    @token.setter
    def token(self, token: str | None) -> None:
        self._token = token
        self.token_accepted = False

    async def aclose(self) -> None:
        await self.http.aclose()

    def _set_reachable(self, reachable: bool, reason: str | None = None) -> None:
        if reachable and self.reachable:
            return
        if not reachable and not self.reachable and reason in self._reasons:
            return  # said already (a sync and a send failing by turns must not repeat it)
        self.reachable = reachable
        self.reason = reason
        if reachable:
            self._reasons.clear()
        else:
            self._reasons.add(reason)
        if self._on_reachable is not None:
            self._on_reachable(reachable, reason)
        elif reachable:
            log.info("%s reachable again", self.homeserver)
        else:
            log.warning("%s unreachable: %s", self.homeserver, reason)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict | None = None,
        content: bytes | None = None,
        headers: dict | None = None,
        retry: bool = True,
        timeout: float | None = None,
        raw: bool = False,
        action: str | None = None,
        auth: bool = True,
    ) -> Any:
        """
        One API call; the JSON answer (or the :class:`httpx.Response` with ``raw``). Waits out
        rate limits; with ``retry``, retries network errors and 5xx with backoff until it works
        (cancel the caller to give up), else raises :class:`Unreachable`. An access token
        refused goes to :attr:`on_token_refused`, and the request again with the new one (or
        raises what that raised). Raises :class:`MatrixError` for other refusals, named by
        ``action`` (``redact $e in !r``: "cannot redact $e in !r: 403 ...") or else by the
        method and path. Without ``auth``, no token is sent. Cancellation abandons the request;
        a send repeated later with the same transaction ID is answered with the same event.
        """
        request = f"{method} {path.split('?')[0]}"
        what = f"cannot {action}" if action else request
        backoff = Backoff(self.retry_max)
        while True:
            token = self.token if auth else None  # a new one after a refusal
            all_headers = dict(headers or {})
            if token:
                all_headers["Authorization"] = f"Bearer {token}"
            try:
                reply = await self.http.request(
                    method,
                    path,
                    json=body if content is None else None,
                    content=content,
                    params=params,
                    headers=all_headers,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                reason = immp.describe_error(exc)
                self._set_reachable(False, reason)
                if not retry:
                    raise Unreachable(f"{request}: {reason}") from None
                delay = backoff.next()
                # The outage itself was reported (once, and again if its reason changes).
                log.debug("%s failed (%s); retrying in %.1f s", request, reason, delay)
                await trio.sleep(delay)
                continue
            if reply.status_code >= 500:
                reason = f"HTTP {reply.status_code}"
                self._set_reachable(False, reason)
                if not retry:
                    raise Unreachable(f"{request}: {reason}")
                delay = backoff.next()
                log.debug("%s answered %d; retrying in %.1f s", request, reply.status_code, delay)
                await trio.sleep(delay)
                continue
            self._set_reachable(True)
            error = _error_of(reply)
            refused = reply.status_code == 401 and error.get("errcode") == "M_UNKNOWN_TOKEN"
            if token and not refused and token == self.token:
                self.token_accepted = True
            if token and refused and self.on_token_refused is not None:
                exc = _refusal(reply, error, what)
                await self.on_token_refused(token, exc)
                if self.token == token:
                    raise exc  # no new token: made again, it would only be refused again
                log.debug("%s: access token refused; made again with the new one", request)
                continue
            if reply.status_code == 429 or error.get("errcode") == "M_LIMIT_EXCEEDED":
                self.rate_limited += 1
                wait = _retry_after(reply, error)
                log.debug("%s rate-limited; retrying in %.2f s", request, wait)
                await trio.sleep(wait)
                continue
            if reply.status_code >= 400:
                raise _refusal(reply, error, what)
            return reply if raw else reply.json()

    # -- the endpoints ------------------------------------------------------------------------

    async def login(self, user: str, password: str, device: str | None) -> dict:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "IMMP",
        }
        if device:
            body["device_id"] = device
        # Without the token in use: it may be the one refused that this login replaces.
        answer = await self.request(
            "POST", f"{CLIENT}/login", body, action=f"log in as {user}", auth=False
        )
        self.token = answer["access_token"]
        return answer

    async def whoami(self) -> dict:
        return await self.request("GET", f"{CLIENT}/account/whoami")

    async def create_filter(self, user_id: str, definition: dict) -> str:
        path = f"{CLIENT}/user/{quote(user_id)}/filter"
        return (await self.request("POST", path, definition, action="create a sync filter"))[
            "filter_id"
        ]

    async def sync(self, *, since: str | None, filter: str, timeout_ms: int) -> dict:
        params = {"filter": filter, "timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        # The long poll holds the request open for timeout_ms: give httpx that and more.
        return await self.request(
            "GET", f"{CLIENT}/sync", params=params, timeout=self.timeout + timeout_ms / 1000
        )

    async def messages(
        self,
        room_id: str,
        *,
        start: str,
        stop: str | None,
        limit: int = 100,
        filter: dict | None = None,
    ) -> dict:
        params = {"from": start, "dir": "b", "limit": str(limit)}
        if stop:
            params["to"] = stop
        if filter:
            params["filter"] = _json(filter)
        return await self.request(
            "GET",
            f"{CLIENT}/rooms/{quote(room_id)}/messages",
            params=params,
            action=f"read the history of {room_id}",
        )

    async def event(self, room_id: str, event_id: str) -> dict:
        """
        One event of a room, as the homeserver has it now (a redacted one without its content).
        Not retried: raises :class:`Unreachable` at once for a network error or 5xx, and
        :class:`MatrixError` (404 ``M_NOT_FOUND``) for an event the account may not see.
        """
        path = f"{CLIENT}/rooms/{quote(room_id)}/event/{quote(event_id)}"
        return await self.request("GET", path, retry=False, action=f"read {event_id} in {room_id}")

    async def join(self, room: str) -> str:
        path = f"{CLIENT}/join/{quote(room)}"
        return (await self.request("POST", path, {}, action=f"join {room}"))["room_id"]

    async def leave(self, room_id: str) -> None:
        path = f"{CLIENT}/rooms/{quote(room_id)}/leave"
        await self.request("POST", path, {}, action=f"leave {room_id}")

    async def resolve_alias(self, alias: str) -> str:
        path = f"{CLIENT}/directory/room/{quote(alias)}"
        return (await self.request("GET", path, action=f"resolve {alias}"))["room_id"]

    async def send(self, room_id: str, type: str, txn_id: str, content: dict) -> str:
        path = f"{CLIENT}/rooms/{quote(room_id)}/send/{quote(type)}/{quote(txn_id)}"
        action = f"send {type} to {room_id}"
        try:
            return (await self.request("PUT", path, content, action=action))["event_id"]
        except MatrixError as exc:
            if exc.status in REFUSED and exc.__class__ is MatrixError:  # (type: the event's)
                raise SendRefused(exc.status, exc.errcode, exc.error, exc.what) from None
            raise

    async def redact(self, room_id: str, event_id: str, txn_id: str) -> str:
        path = f"{CLIENT}/rooms/{quote(room_id)}/redact/{quote(event_id)}/{quote(txn_id)}"
        action = f"redact {event_id} in {room_id}"
        return (await self.request("PUT", path, {}, action=action))["event_id"]

    async def state(self, room_id: str, type: str, key: str = "") -> dict | None:
        path = f"{CLIENT}/rooms/{quote(room_id)}/state/{quote(type)}/{quote(key)}"
        try:
            action = f"read {type}{f' of {key}' if key else ''} in {room_id}"
            return await self.request("GET", path, action=action)
        except MatrixError as exc:
            if exc.status == 404:
                return None
            raise

    async def joined_members(self, room_id: str) -> dict[str, dict]:
        path = f"{CLIENT}/rooms/{quote(room_id)}/joined_members"
        return (await self.request("GET", path))["joined"]

    async def joined_rooms(self) -> list[str]:
        return (await self.request("GET", f"{CLIENT}/joined_rooms"))["joined_rooms"]

    async def profile(self, user_id: str) -> dict | None:
        try:
            return await self.request("GET", f"{CLIENT}/profile/{quote(user_id)}")
        except MatrixError as exc:
            if exc.status in (403, 404):
                return None
            raise

    async def direct_rooms(self, user_id: str) -> dict[str, list[str]]:
        path = f"{CLIENT}/user/{quote(user_id)}/account_data/m.direct"
        try:
            return await self.request("GET", path)
        except MatrixError as exc:
            if exc.status == 404:
                return {}
            raise

    async def upload(self, data: bytes, content_type: str, filename: str | None) -> str:
        # Uploads stayed under /_matrix/media/v3 (authenticated by the token already).
        params = {"filename": filename} if filename else None
        answer = await self.request(
            "POST",
            "/_matrix/media/v3/upload",
            content=data,
            params=params,
            headers={"Content-Type": content_type},
            action=f"upload {filename or 'media'}",
        )
        return answer["content_uri"]

    def media_url(self, mxc: str) -> str | None:
        """The authenticated download URL of an ``mxc://server/id`` URI (needs the token)."""
        parsed = _parse_mxc(mxc)
        if parsed is None:
            return None
        return f"{self.homeserver}{MEDIA}/download/{quote(parsed[0])}/{quote(parsed[1])}"

    async def download(self, mxc: str, max_size: int) -> tuple[bytes, str]:
        """Fetch media through the authenticated endpoint: (bytes, content type)."""
        parsed = _parse_mxc(mxc)
        if parsed is None:
            raise ValueError(f"not an mxc:// URI: {mxc!r}")
        path = f"{MEDIA}/download/{quote(parsed[0])}/{quote(parsed[1])}"
        reply = await self.request("GET", path, raw=True, action=f"download {mxc}")
        if len(reply.content) > max_size:
            raise ValueError(f"{mxc}: {len(reply.content)} bytes, more than {max_size}")
        return reply.content, reply.headers.get("content-type", "application/octet-stream")


def _parse_mxc(mxc: str) -> tuple[str, str] | None:
    if not isinstance(mxc, str) or not mxc.startswith("mxc://"):
        return None
    server, _, media = mxc[len("mxc://") :].partition("/")
    return (server, media) if server and media else None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _error_of(reply: httpx.Response) -> dict:
    if reply.status_code < 400:
        return {}
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(reply: httpx.Response, error: dict, what: str) -> MatrixError:
    return MatrixError(
        reply.status_code,
        error.get("errcode"),
        error.get("error"),
        what,
        soft_logout=error.get("soft_logout") is True,
    )


def _retry_after(reply: httpx.Response, error: dict) -> float:
    """Seconds to wait before repeating a rate-limited request."""
    ms = error.get("retry_after_ms")
    if isinstance(ms, (int, float)) and ms >= 0:
        return ms / 1000
    header = reply.headers.get("retry-after")
    try:
        return max(0.0, float(header)) if header is not None else 1.0
    except ValueError:
        return 1.0
