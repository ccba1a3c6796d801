"""
A small HTTP/1.1 server on trio: h11 parses and writes the protocol, this module only moves
bytes between it and a trio stream. GET and HEAD only; every request gets a whole response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus

import h11
import trio

log = logging.getLogger(__name__)

#: (status, content type, body) for a request path.
Handler = Callable[[str], tuple[int, str, bytes]]

# A client gets this long for each request (and to send the next on a kept-alive connection),
# so that idle or slow connections do not pile up.
REQUEST_TIMEOUT = 10.0
MAX_REQUEST_BYTES = 16384


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    """
    Answer requests on ``stream`` with ``handler`` until the client closes, sends something
    that is not HTTP, or waits longer than :data:`REQUEST_TIMEOUT`; then close ``stream``.
    Cancellation closes the connection at once.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    async with stream:
        while True:
            with trio.move_on_after(REQUEST_TIMEOUT):
                try:
                    request = await _read_request(conn, stream)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await _respond(conn, stream, "GET", exc.error_status_hint, b"bad request\n")
                    return
                if request is None:
                    return
                method = request.method.decode("ascii", "replace")
                target = request.target.decode("ascii", "replace").split("?", 1)[0]
                if method not in ("GET", "HEAD"):
                    status, ctype, body = 405, "text/plain; charset=utf-8", b"GET or HEAD only\n"
                else:
                    status, ctype, body = handler(target)
                await _respond(conn, stream, method, status, body, ctype)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                continue
            return  # timed out


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    """The next whole request (its body, if any, read and ignored); ``None`` on close."""
    request = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_REQUEST_BYTES)
            conn.receive_data(data)  # b"" means the client closed its side
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _respond(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    method: str,
    status: int,
    body: bytes,
    ctype: str = "text/plain; charset=utf-8",
) -> None:
    headers = [
        ("content-type", ctype),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    try:
        reason = HTTPStatus(status).phrase.encode()
        response = h11.Response(status_code=status, headers=headers, reason=reason)
        await stream.send_all(conn.send(response))
        if method != "HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        conn.send_failed()
