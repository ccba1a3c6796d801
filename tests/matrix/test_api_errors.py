"""Fast unit tests of the API client's error paths (httpx.MockTransport; no server)."""

from __future__ import annotations

import httpx
import pytest
import trio

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
    assert reports == [(False, "HTTP 502"), (True, None)]


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
