"""Replay's failure paths: network errors and 5xx are retried, the rest is reported."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from cli.replay import ATTEMPTS, replay


def calls(n: int) -> list[tuple[int | None, dict[str, Any]]]:
    return [(None, {"type": "track", "event": "E", "userId": f"u{i}"}) for i in range(n)]


def run(handler: Any, n: int = 1000) -> Any:
    return asyncio.run(
        replay(
            calls(n),
            url="http://nudge.test",
            write_key="k",
            batch_size=100,
            transport=httpx.MockTransport(handler),
            retry_base_s=0.001,
        )
    )


def accept(request: httpx.Request) -> httpx.Response:
    n = len(orjson.loads(request.content)["batch"])
    return httpx.Response(200, json={"success": True, "accepted": n, "rejected": []})


def test_network_errors_and_5xx_are_retried() -> None:
    seen: dict[bytes, int] = {}

    def flaky(request: httpx.Request) -> httpx.Response:
        seen[request.content] = seen.get(request.content, 0) + 1
        if seen[request.content] == 1:
            raise httpx.ConnectError("connection reset by peer")
        if seen[request.content] == 2:
            return httpx.Response(503, json={"detail": "storage unavailable"})
        return accept(request)

    stats = run(flaky)
    assert (stats.sent, stats.accepted, stats.errors) == (1000, 1000, [])


def test_what_cannot_be_sent_is_reported() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    stats = run(down, n=150)
    assert stats.accepted == 0
    assert stats.errors == [
        "100 events not sent: ConnectError: refused",
        "50 events not sent: ConnectError: refused",
    ]

    attempts = 0

    def bad_key(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        return httpx.Response(401, json={"detail": "invalid write key"})

    stats = run(bad_key, n=100)
    assert attempts == 1 < ATTEMPTS  # a 4xx is not retried
    assert stats.errors == ['100 events not sent: HTTP 401: {"detail":"invalid write key"}']


def test_speed_paces_by_event_time() -> None:
    import time

    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.perf_counter())
        return accept(request)

    # 3 events over 2 s of event time, replayed 10x faster: ~0.2 s, in 3 requests
    timed = [(1000 * i, {"type": "track", "event": "E", "userId": "u"}) for i in (0, 1, 2)]
    start = time.perf_counter()
    stats = asyncio.run(
        replay(timed, url="http://nudge.test", write_key="k", speed=10.0,
               transport=httpx.MockTransport(record))
    )  # fmt: skip
    assert stats.accepted == 3 and len(sent_at) == 3
    assert sent_at[-1] - start >= 0.18  # never faster than the pace (sleeps only lengthen)
    assert sent_at[1] - sent_at[0] >= 0.09
