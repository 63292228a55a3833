"""The series behind the /ops page: every `every_s`, one `OpsSnapshot` read from Redis (lag,
events and triggers read so far) and this process's decisions since the previous sample
(count and latency quantiles), kept for the last `keep` samples in memory."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from redis.exceptions import RedisError

from api.store import Store
from models.progress import OpsSnapshot, seconds

log = logging.getLogger(__name__)

SERIES = ("lag_s", "behind", "events_per_s", "triggers_per_s", "freshness_s",
          "decisions_per_s", "p50_ms", "p99_ms")  # fmt: skip


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of an ascending list (None: empty)."""
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


class OpsSampler:
    def __init__(self, store: Store, every_s: float = 2.0, keep: int = 300) -> None:
        self.store = store
        self.every_s = every_s
        self.t: deque[float] = deque(maxlen=keep)
        self.series: dict[str, deque[float | None]] = {k: deque(maxlen=keep) for k in SERIES}
        self.latencies: list[float] = []  # seconds, appended by the decide route
        self.latest: OpsSnapshot | None = None
        self._at = time.monotonic()  # of the previous sample (or of the start)

    def decided(self, seconds: float) -> None:
        if len(self.latencies) < 1_000_000:  # bounded, whatever the sampler does
            self.latencies.append(seconds)

    async def sample(self) -> None:
        snap = await self.store.ops_snapshot()
        now, wall = time.monotonic(), time.time()
        dt, before = now - self._at, self.latest
        events = sum(snap.events_per_s(before, dt)) if before is not None else None
        triggers = snap.triggers_per_s(before, dt) if before is not None else None
        self._at, self.latest = now, snap
        lat = sorted(self.latencies)
        self.latencies = []
        fresh = [p.fresh_ms for p in snap.partitions if p.fresh_ms is not None]
        values: dict[str, float | None] = {
            "lag_s": snap.max_lag_ms() / 1000,
            "behind": snap.behind(),
            "events_per_s": events,
            "triggers_per_s": triggers,
            "freshness_s": max(fresh) / 1000 if fresh else None,
            "decisions_per_s": len(lat) / dt if dt > 0 else None,
            "p50_ms": _ms(quantile(lat, 0.50)),
            "p99_ms": _ms(quantile(lat, 0.99)),
        }
        self.t.append(wall)
        for k, v in values.items():
            self.series[k].append(v)

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except RedisError as exc:
                log.warning("ops sample skipped: %s", exc)
            await asyncio.sleep(self.every_s)

    def data(self) -> dict[str, Any]:
        """What /ops/data answers: the series, and the latest per-partition figures."""
        snap = self.latest
        now_ms = time.time_ns() // 1_000_000
        partitions = []
        if snap is not None:
            for p in snap.partitions:
                partitions.append(
                    {
                        "partition": p.partition,
                        "stream": p.stream,
                        "lag_s": p.lag_ms / 1000,
                        "behind": p.behind,
                        "event_time_lag_s": seconds(p.event_lag_ms(now_ms)),
                        "freshness_s": seconds(p.fresh_ms),
                        "report_age_s": seconds(p.report_age_ms(now_ms)),
                        "events_read": p.events,
                    }
                )
        return {
            "every_s": self.every_s,
            "t": list(self.t),
            **{k: list(v) for k, v in self.series.items()},
            "partitions": partitions,
            "triggers": snap.triggers() if snap else 0,
            "deadletter": snap.deadletter if snap else 0,
            "webhook_deadletter": snap.webhook_deadletter if snap else 0,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
