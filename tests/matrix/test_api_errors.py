"""Fast unit tests of the API client's error paths (httpx.MockTransport; no server)."""

from __future__ import annotations

import logging

import httpcore
import httpx
import pytest
import trio

import immp
from immp_matrix.api import Client, MatrixError, Unreachable


def _client(answers, reports=None) -> tuple[Client, list]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def report(up, reason):
        if reports is not None:
            reports.append((up, reason))

    client = Client(
        "http://hs.test", transport=httpx.MockTransport(handler), retry_max=4, on_reachable=report
    )
    return client, seen


async def test_rate_limit_waits_retry_after_ms_and_repeats_same_request(autojump_clock):
    client, seen = _client(
        [
            httpx.Response(429, json={"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1500}),
            httpx.Response(200, json={"event_id": "$a"}),
        ]
    )
    start = trio.current_time()
    assert await client.send("!r:x", "m.room.message", "txn-1", {"body": "x"}) == "$a"
    assert trio.current_time() - start >= 1.5
    assert client.rate_limited == 1
    assert [r.url.path for r in seen] == [seen[0].url.path] * 2
    assert seen[0].url.path.endswith("/send/m.room.message/txn-1")
    assert seen[0].content == seen[1].content


async def test_rate_limit_retry_after_header(autojump_clock):
    client, _ = _client(
        [
            httpx.Response(429, headers={"Retry-After": "3"}, text="slow down"),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    start = trio.current_time()
    await client.request("GET", "/x")
    assert trio.current_time() - start >= 3


async def test_5xx_and_network_errors_back_off_and_report(autojump_clock):
    reports = []
    client, seen = _client(
        [
            httpx.Response(502, text="bad gateway"),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.Response(200, json={"user_id": "@a:x"}),
        ],
        reports,
    )
    start = trio.current_time()
    assert (await client.whoami())["user_id"] == "@a:x"
    assert len(seen) == 4
    assert trio.current_time() - start >= 0.4 + 0.8 + 1.6  # doubling, with jitter
    # Said as soon as a request fails, again when the reason changes, and when it works.
    assert reports == [
        (False, "HTTP 502"),
        (False, "ConnectError: refused"),
        (False, "ReadTimeout: slow"),
        (True, None),
    ]


async def test_backoff_is_capped(autojump_clock):
    client, _ = _client([httpx.ConnectError("down")] * 8 + [httpx.Response(200, json={})])
    start = trio.current_time()
    await client.request("GET", "/x")
    # 0.5 + 1 + 2 + 4 * 5 (capped at retry_max=4), jitter at most +20%.
    assert trio.current_time() - start <= (0.5 + 1 + 2 + 4 * 5) * 1.2


async def test_no_retry_raises_unreachable():
    client, _ = _client([httpx.ConnectError("refused")])
    with pytest.raises(Unreachable, match="refused"):
        await client.request("GET", "/x", retry=False)


async def test_refusal_is_matrix_error():
    client, _ = _client([httpx.Response(403, json={"errcode": "M_FORBIDDEN", "error": "no"})])
    with pytest.raises(MatrixError) as caught:
        await client.request("GET", "/x")
    assert caught.value.errcode == "M_FORBIDDEN" and caught.value.status == 403


async def test_refusal_is_one_line_plug_error_naming_the_action():
    client, _ = _client(
        [
            httpx.Response(
                403,
                json={
                    "errcode": "M_FORBIDDEN",
                    "error": "You don't have permission to redact events",
                },
            )
        ]
    )
    with pytest.raises(immp.PlugError) as caught:
        await client.redact("!room:x", "$event", "txn-1")
    assert isinstance(caught.value, MatrixError)
    assert str(caught.value) == (
        "cannot redact $event in !room:x: 403 M_FORBIDDEN You don't have permission to redact "
        "events"
    )
    assert immp.describe_error(caught.value).count("M_FORBIDDEN") == 1


def _connect_error() -> httpx.ConnectError:
    # What httpx raises: its own ConnectError, caused by httpcore's with the same words.
    text = "all attempts to connect to 127.0.0.1:1 failed"
    try:
        try:
            raise httpcore.ConnectError(text)
        except httpcore.ConnectError as inner:
            raise httpx.ConnectError(text) from inner
    except httpx.ConnectError as exc:
        return exc


async def test_outage_said_once_without_doubled_cause(autojump_clock, caplog):
    answers = [_connect_error() for _ in range(6)] + [httpx.Response(200, json={})]
    seen = []

    def handler(request):
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    # Without on_reachable, the client logs the outage itself.
    client = Client("http://hs.test", transport=httpx.MockTransport(handler), retry_max=4)
    with caplog.at_level(logging.DEBUG, logger="immp_matrix"):
        await client.request("POST", "/_matrix/client/v3/login")
    assert len(seen) == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "http://hs.test unreachable: ConnectError: all attempts to connect to 127.0.0.1:1 failed"
    ]
    assert "reachable again" in caplog.text


async def test_outage_reason_said_again_only_when_new(autojump_clock):
    reports = []
    client, _ = _client(
        [
            _connect_error(),
            _connect_error(),
            httpx.Response(502),
            _connect_error(),  # said already in this outage
            httpx.Response(200, json={}),
            _connect_error(),  # a new outage
            httpx.Response(200, json={}),
        ],
        reports,
    )
    await client.request("GET", "/x")
    await client.request("GET", "/x")
    down = "ConnectError: all attempts to connect to 127.0.0.1:1 failed"
    assert reports == [
        (False, down),
        (False, "HTTP 502"),
        (True, None),
        (False, down),
        (True, None),
    ]
