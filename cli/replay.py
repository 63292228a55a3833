"""Send a dataset through the ingest path (``POST /v1/batch``), optionally at event-time pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

ATTEMPTS = 5


@dataclass
class ReplayStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


async def replay(
    calls: Iterable[tuple[int | None, dict[str, Any]]],
    *,
    url: str,
    write_key: str,
    speed: float = 0.0,
    batch_size: int = 500,
    max_batch_bytes: int = 450_000,
    concurrency: int = 4,
    on_progress: Any = None,
    transport: httpx.AsyncBaseTransport | None = None,
    retry_base_s: float = 0.2,
) -> ReplayStats:
    """Replay `calls` to ``{url}/v1/batch``. ``speed=0`` sends as fast as the API takes them;
    ``speed=X`` keeps X seconds of event time per second of wall time."""
    stats = ReplayStats()
    sem = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async with httpx.AsyncClient(
        base_url=url,
        auth=(write_key, ""),
        timeout=60.0,
        limits=httpx.Limits(max_connections=16),
        transport=transport,
    ) as client:

        async def send(body: bytes, n: int) -> None:
            # Retried on 5xx and on network errors (the API answers only once Redis holds the
            # events, and messageIds make a retry count once); anything else is reported.
            try:
                error = ""
                for attempt in range(ATTEMPTS):
                    try:
                        resp = await client.post(
                            "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                        )
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    else:
                        if resp.status_code < 400:
                            out = resp.json()
                            stats.accepted += out["accepted"]
                            stats.rejected += len(out["rejected"])
                            return
                        error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                        if resp.status_code < 500:
                            break
                    await asyncio.sleep(retry_base_s * 2**attempt)
                stats.errors.append(f"{n} events not sent: {error}")
            finally:
                sem.release()
                stats.requests += 1
                if on_progress is not None:
                    on_progress(n)

        async def flush(batch: list[bytes]) -> None:
            body = b'{"batch":[' + b",".join(batch) + b"]}"
            await sem.acquire()
            task = asyncio.create_task(send(body, len(batch)))
            pending.add(task)
            task.add_done_callback(pending.discard)

        batch: list[bytes] = []
        size = 0
        t0: int | None = None
        for ts, call in calls:
            if speed > 0 and ts is not None:
                if t0 is None:
                    t0 = ts
                due = start + (ts - t0) / 1000 / speed
                delay = due - time.perf_counter()
                if delay > 0:
                    if batch:
                        await flush(batch)
                        batch, size = [], 0
                    await asyncio.sleep(delay)
            raw = orjson.dumps(call)
            if batch and (len(batch) >= batch_size or size + len(raw) > max_batch_bytes):
                await flush(batch)
                batch, size = [], 0
            batch.append(raw)
            size += len(raw) + 1
            stats.sent += 1
        if batch:
            await flush(batch)
        if pending:
            await asyncio.gather(*pending)
    stats.seconds = time.perf_counter() - start
    return stats
