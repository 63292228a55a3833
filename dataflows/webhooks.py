"""`nudge webhooks`: deliver the triggers stream to HTTP endpoints, at least once.

One consumer group per URL on ``nudge:v1:triggers:{t}`` (so each URL gets every trigger, and
several `nudge webhooks` processes share the work of a URL). Each trigger is POSTed as its
JSON document, signed (`models.webhooks`: ``webhook-id`` = the trigger id, timestamped,
HMAC-SHA256). A 2xx acknowledges it. Anything else — an error status, a timeout, a refused
connection — schedules a retry with exponential back-off and jitter; after `max_attempts` the
trigger goes to the dead-letter stream with the last error and is acknowledged there.

The retry schedule lives in Redis (a sorted set of entry ids by next attempt, and a hash of
attempts per entry), so a restart resumes it; entries read but neither acknowledged nor
scheduled (a crash in between) are found in the group's pending list at start and retried.
A trigger can thus arrive twice, never zero times: receivers de-duplicate on ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from models.keys import Keys
from models.webhooks import backoff_s, headers

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookParams:
    secret: bytes
    max_attempts: int = 8
    timeout_s: float = 5.0
    backoff_s: float = 1.0
    backoff_cap_s: float = 600.0
    concurrency: int = 16


def group_for(url: str) -> str:
    """The consumer group of a URL: stable whatever the order of the configured URLs."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:12]


class Deliverer:
    """Delivers the triggers stream to one URL."""

    def __init__(
        self,
        client: aioredis.Redis,
        http: httpx.AsyncClient,
        keys: Keys,
        url: str,
        params: WebhookParams,
        *,
        consumer: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.r = client
        self.http = http
        self.url = url
        self.p = params
        self.stream = keys.triggers()
        self.group = group_for(url)
        self.due = keys.webhook_due(self.group)
        self.attempts = keys.webhook_attempts(self.group)
        self.deadletter = keys.webhook_deadletter()
        self.stats = keys.stats()
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.clock = clock
        self.rng = rng or random.Random()
        self.delivered = self.failed = self.dead = 0

    async def setup(self) -> None:
        """Create the group (from the start of the stream: nothing fired earlier is skipped)
        and schedule what an earlier run read but never settled."""
        try:
            await self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        start = "-"
        now = self._now_ms()
        while True:
            pending: Any = await self.r.xpending_range(self.stream, self.group, start, "+", 500)
            if not pending:
                break
            ids = [p["message_id"] for p in pending]
            known: Any = await self.r.zmscore(self.due, ids)
            unscheduled = {i: now for i, score in zip(ids, known, strict=True) if score is None}
            if unscheduled:
                await self.r.zadd(self.due, unscheduled)
            start = "(" + ids[-1].decode()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run_once(self, block_ms: int = 100) -> int:
        """Deliver what is due (retries first, then new triggers); how many were attempted."""
        now = self._now_ms()
        ids: Any = await self.r.zrangebyscore(self.due, "-inf", now, 0, self.p.concurrency)
        batch: list[tuple[bytes, dict[bytes, bytes] | None]] = []
        for entry_id in ids:
            rows: Any = await self.r.xrange(self.stream, entry_id, entry_id)
            batch.append((entry_id, rows[0][1] if rows else None))
        room = self.p.concurrency - len(batch)
        if room > 0:
            wait = None if batch else block_ms
            got: Any = await self.r.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=room, block=wait
            )
            for _, entries in got or []:
                batch += [(entry_id, fields) for entry_id, fields in entries]
        await asyncio.gather(*(self._deliver(i, f) for i, f in batch))
        return len(batch)

    async def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        if fields is None:  # trimmed from the stream before it could be delivered
            await self._settle(entry_id, dead=None)
            return
        body = fields[b"data"]
        tid = fields[b"id"].decode()
        error: str | None = None
        try:
            resp = await self.http.post(
                self.url, content=body, headers=headers(self.p.secret, tid, int(self.clock()), body)
            )
            if 200 <= resp.status_code < 300:
                self.delivered += 1
                await self._settle(entry_id, dead=None)
                await self._count("delivered")
                return
            error = f"HTTP {resp.status_code}"
        except httpx.TimeoutException:
            error = f"timed out after {self.p.timeout_s} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.failed += 1
        attempts = int(await self.r.hincrby(self.attempts, entry_id, 1))
        if attempts >= self.p.max_attempts:
            self.dead += 1
            log.warning("trigger %s to %s dead-lettered after %d attempts: %s",
                        tid, self.url, attempts, error,
                        extra={"trigger_id": tid, "url": self.url})  # fmt: skip
            await self._settle(entry_id, dead=(fields, attempts, error))
            await self._count("dead_lettered")
            return
        await self._count("failed")
        delay = backoff_s(attempts, self.p.backoff_s, self.p.backoff_cap_s, self.rng)
        await self.r.zadd(self.due, {entry_id: self._now_ms() + int(delay * 1000)})

    async def _count(self, outcome: str) -> None:
        """Deployment-wide outcome counters (`Keys.stats`), read by every API's /metrics."""
        await self.r.hincrby(self.stats, f"webhooks:{outcome}", 1)

    async def _settle(
        self, entry_id: bytes, dead: tuple[dict[bytes, bytes], int, str | None] | None
    ) -> None:
        pipe = self.r.pipeline(transaction=True)
        if dead is not None:
            fields, attempts, error = dead
            record: dict[Any, Any] = {
                **fields, b"url": self.url.encode(), b"attempts": str(attempts).encode(),
                b"error": (error or "").encode(), b"entry_id": entry_id,
            }  # fmt: skip
            pipe.xadd(self.deadletter, record)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.zrem(self.due, entry_id)
        pipe.hdel(self.attempts, entry_id)
        await pipe.execute()


async def serve(
    client: aioredis.Redis,
    keys: Keys,
    urls: list[str],
    params: WebhookParams,
    stop: asyncio.Event,
) -> list[Deliverer]:
    """Deliver to every URL until `stop` is set."""
    async with httpx.AsyncClient(timeout=params.timeout_s) as http:
        deliverers = [Deliverer(client, http, keys, url, params) for url in urls]
        for d in deliverers:
            await d.setup()

        async def loop(d: Deliverer) -> None:
            while not stop.is_set():
                try:
                    await d.run_once()
                except (OSError, RedisError) as exc:
                    log.warning("webhooks to %s: %s; retrying", d.url, exc)
                    await asyncio.sleep(1.0)

        await asyncio.gather(*(loop(d) for d in deliverers))
        return deliverers
