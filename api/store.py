"""The API's only Redis adapter. Routes call these methods; they never build keys or commands."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from models.codec import ENTRY_FIELD, encode_entry
from models.events import Event, erase_marker
from models.keys import Keys, layout_error, partition_for


@dataclass(slots=True)
class Rejected:
    """One invalid event of a request: where it was, what is wrong, and its raw payload."""

    index: int
    field: str
    reason: str
    raw: bytes


class Store:
    """Reads and writes nudge's Redis keys for the API (one pipelined round trip per call)."""

    def __init__(self, client: aioredis.Redis, keys: Keys, partitions: int, dlq_maxlen: int):
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self._streams = keys.all_events(partitions)
        self._dlq = keys.deadletter()
        self._dlq_maxlen = dlq_maxlen

    async def append(
        self, events: Sequence[Event], rejected: Iterable[Rejected], endpoint: str, now_ms: int
    ) -> None:
        """XADD the events (one entry per partition) and dead-letter the rejects, atomically
        from the client's point of view: one pipeline, answered once Redis holds them."""
        by_part: dict[int, list[Event]] = {}
        n = self.partitions
        for ev in events:
            by_part.setdefault(partition_for(ev.customer_key, n), []).append(ev)
        pipe = self.client.pipeline(transaction=False)
        for part, evs in by_part.items():
            pipe.xadd(self._streams[part], {ENTRY_FIELD: encode_entry(evs)})
        for rej in rejected:
            pipe.xadd(
                self._dlq,
                {
                    b"reason": rej.reason.encode(),
                    b"field": rej.field.encode(),
                    b"index": str(rej.index).encode(),
                    b"endpoint": endpoint.encode(),
                    b"received_at": str(now_ms).encode(),
                    b"raw": rej.raw,
                },
                maxlen=self._dlq_maxlen,
                approximate=True,
            )
        if len(pipe):
            await pipe.execute()

    async def claim_layout(self) -> str | None:
        """Record our partition count on first start; the reason to refuse if it differs."""
        meta = self.keys.meta()
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(meta, "partitions", self.partitions)
        pipe.hget(meta, "partitions")
        _, stored = await pipe.execute()
        return layout_error(stored, self.partitions, self.keys)

    async def erase(self, customer_id: str, marker_id: str, now_ms: int) -> tuple[list[str], str]:
        """Delete what Redis holds of the customer and send the erase marker through the
        customer's stream partition, in one round trip. Returns what was removed and the
        marker's entry id."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.profile(customer_id))
        marker = erase_marker(customer_id, marker_id, now_ms)
        stream = self._streams[partition_for(customer_id, self.partitions)]
        pipe.xadd(stream, {ENTRY_FIELD: encode_entry([marker])})
        deleted, entry_id = await pipe.execute()
        return (["profile"] if deleted else []), entry_id.decode()

    async def profile_blob(self, customer_id: str) -> bytes | None:
        blob = await self.client.get(self.keys.profile(customer_id))
        assert blob is None or isinstance(blob, bytes)
        return blob

    async def ping(self) -> bool:
        return bool(await self.client.ping())
