"""Served decisions reach the event stream in batches, and survive a Redis outage."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from api.decision_log import DecisionLog
from api.store import Store
from config.connect import async_client
from models.codec import ENTRY_FIELD, decode_entry
from models.events import decision_event
from models.keys import Keys
from tests.conftest import ON_BOTH


def served(i: int):  # type: ignore[no-untyped-def]
    return decision_event(f"c{i}", f"d{i}", "welcome", "web", 0.5, False, 1_000 + i, {})


def logged(rclient: redis.Redis, keys: Keys) -> list[str]:
    out = []
    for stream in keys.all_events(3):
        for _, fields in rclient.xrange(stream):
            out += [ev.properties["decision_id"] for ev in decode_entry(fields[ENTRY_FIELD])]
    return sorted(out)


@ON_BOTH
def test_decisions_are_written_in_one_flush(redis_url: str, rclient: redis.Redis,
                                            prefix: str, cluster: bool) -> None:  # fmt: skip
    keys = Keys(prefix)

    async def go() -> None:
        client = async_client(redis_url, cluster=cluster)
        log = DecisionLog(Store(client, keys, 3, 100), flush_s=0.001)
        runner = asyncio.create_task(log.run())
        for i in range(50):
            log.add(served(i))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if len(logged(rclient, keys)) == 50:
                break
        runner.cancel()
        await client.aclose()

    asyncio.run(go())
    assert logged(rclient, keys) == sorted(f"d{i}" for i in range(50))
    # batched: far fewer stream entries than decisions
    assert sum(rclient.xlen(s) for s in keys.all_events(3)) <= 3 * 2
    assert rclient.hget(keys.stats(), "decisions_served") == b"50"


def test_a_failed_flush_keeps_the_batch_bounded(redis_url: str, rclient: redis.Redis,
                                                prefix: str) -> None:  # fmt: skip
    keys = Keys(prefix)

    async def go() -> tuple[bool, int, int, bool]:
        down = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=None)
        log = DecisionLog(Store(down, keys, 3, 100), max_pending=5)
        for i in range(8):
            log.add(served(i))
        ok = await log.flush()
        kept, dropped = len(log._pending), log.dropped
        log.store = Store(aioredis.Redis.from_url(redis_url), keys, 3, 100)  # Redis is back
        again = await log.flush()
        await log.store.client.aclose()
        return ok, kept, dropped, again

    ok, kept, dropped, again = asyncio.run(go())
    assert (ok, kept, dropped, again) == (False, 5, 3, True)
    assert logged(rclient, keys) == [f"d{i}" for i in range(3, 8)]  # the newest five
