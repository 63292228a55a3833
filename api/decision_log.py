"""Served decisions on their way into the event stream (the learning loop reads them there),
written in batches off the answers' path: one pipelined XADD per flush instead of one round
trip per decision.

A click can therefore reach the log before the decision it answers; `models.feedback` keeps
such early answers until their decision arrives. While Redis is unreachable the batch is
kept and retried (at most `max_pending` decisions: past that the oldest are dropped, with a
warning: they are training data, not customer activity).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from api.store import Store
from models.events import Event

log = logging.getLogger(__name__)


class DecisionLog:
    def __init__(self, store: Store, flush_s: float = 0.005, max_pending: int = 50_000) -> None:
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: list[Event] = []
        self._wake = asyncio.Event()

    def add(self, ev: Event) -> None:
        self._pending.append(ev)
        if len(self._pending) == 1:
            self._wake.set()

    async def run(self) -> None:
        """Flush `flush_s` after the first decision of a batch arrives, until cancelled."""
        backoff = self.flush_s
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(backoff)
            if await self.flush():
                backoff = self.flush_s
            else:
                backoff = min(backoff * 2 or 0.01, 2.0)
                self._wake.set()

    async def flush(self) -> bool:
        """Write what is pending; False (and the batch kept) if Redis refused it."""
        batch, self._pending = self._pending, []
        if not batch:
            return True
        try:
            await self.store.log_decisions(batch)
        except RedisError as exc:
            self._pending[:0] = batch
            over = len(self._pending) - self.max_pending
            if over > 0:
                del self._pending[:over]
                self.dropped += over
            log.warning("%d served decisions not logged yet: %s", len(self._pending), exc)
            return False
        return True
