"""The API's only Redis adapter. Routes call these methods; they never build keys or commands."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from api.multiplex import Multiplexed, NotSent, Unsupported
from config.connect import cluster_mismatch
from models import scripts
from models.codec import ENTRY_FIELD, encode_entry
from models.decision import HOLD_MS, Contact, contacts_from
from models.events import Event, erase_markers
from models.keys import Keys, layout_error, partition_for
from models.profile import decode_profile
from models.progress import OpsSnapshot, parse, queue_reads

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Rejected:
    """One invalid event of a request: where it was, what is wrong, and its raw payload."""

    index: int
    field: str
    reason: str
    raw: bytes


class Store:
    """Reads and writes nudge's Redis keys for the API (one pipelined round trip per call).

    The decision's scripts go through `api.multiplex` (one shared connection per node,
    commands of concurrent requests in the same writes); the rest through redis-py."""

    def __init__(self, client: aioredis.Redis, keys: Keys, partitions: int, dlq_maxlen: int):
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self._streams = keys.all_events(partitions)
        self._dlq = keys.deadletter()
        self._dlq_maxlen = dlq_maxlen
        self._read = client.register_script(scripts.DECISION_READ)
        self._done = client.register_script(scripts.DECISION_DONE)
        self._ending: set[asyncio.Future[Any]] = set()  # `decision_done` writes under way
        self.fast = Multiplexed(client)

    async def _script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """`script` on the multiplexed connection, else (TLS, a cluster redirection)
        through redis-py."""
        try:
            return await self.fast.script(script, keys, args)
        except Unsupported:
            return await script(keys=keys, args=args)

    async def aclose(self) -> None:
        if self._ending:  # the last decisions' contacts, before the connections close
            await asyncio.wait(list(self._ending), timeout=5)
        await self.fast.aclose()
        await self.client.aclose()

    async def append(
        self, events: Sequence[Event], rejected: Iterable[Rejected], endpoint: str, now_ms: int
    ) -> None:
        """XADD the events (one entry per partition) and dead-letter the rejects, atomically
        from the client's point of view: one pipeline, answered once Redis holds them."""
        pipe = self.client.pipeline(transaction=False)
        self._xadd(pipe, events)
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

    def _xadd(self, pipe: Any, events: Sequence[Event]) -> None:
        """One entry per partition for `events`, onto `pipe`."""
        for stream, payload in self._entries(events):
            pipe.xadd(stream, {ENTRY_FIELD: payload})

    def _entries(self, events: Sequence[Event]) -> list[tuple[str, bytes]]:
        """(stream, entry payload): one per partition that `events` go to."""
        by_part: dict[int, list[Event]] = {}
        n = self.partitions
        for ev in events:
            by_part.setdefault(partition_for(ev.customer_key, n), []).append(ev)
        return [(self._streams[part], encode_entry(evs)) for part, evs in by_part.items()]

    async def claim_layout(self) -> str | None:
        """Record our partition count on first start; the reason to refuse if it differs."""
        meta = self.keys.meta()
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(meta, "partitions", self.partitions)
        pipe.hget(meta, "partitions")
        try:
            _, stored = await pipe.execute()
        except ResponseError as exc:
            mismatch = cluster_mismatch(exc)
            if mismatch is None:
                raise
            return mismatch
        return layout_error(stored, self.partitions, self.keys)

    async def resolve(self, any_id: str) -> tuple[str, bytes | None]:
        """The canonical customer id of `any_id` and its profile blob (None: no profile).

        One round trip for a canonical id (or an unknown one), two for a linked id."""
        cid, blob, _, _ = await self._customer(any_id, "+inf")
        return cid, blob

    async def erase(self, any_id: str, marker_id: str, now_ms: int) -> tuple[str, list[str], str]:
        """Delete what Redis holds of the customer `any_id` belongs to (profile, links, the
        history of decisions served) and
        send the erase markers (`models.events.erase_markers`: the customer's, and one per
        linked id, each through its own id's stream partition), so the dataflow forgets its
        state and unlinks the other ids. Returns the canonical id, what was removed and the
        entry id of the customer's marker."""
        cid, blob = await self.resolve(any_id)
        ids = sorted({*(decode_profile(blob).ids if blob else ()), any_id} - {cid})
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.profile(cid))
        pipe.delete(self.keys.contacts(cid))
        for other in ids:
            pipe.delete(self.keys.link(other))
        by_partition: dict[int, list[Event]] = {}
        for marker in erase_markers(cid, ids, marker_id, now_ms):
            p = partition_for(marker.customer_key, self.partitions)
            by_partition.setdefault(p, []).append(marker)
        first = partition_for(cid, self.partitions)  # the customer's own marker's entry first
        for p in sorted(by_partition, key=lambda p: p != first):
            pipe.xadd(self._streams[p], {ENTRY_FIELD: encode_entry(by_partition[p])})
        profile, contacts, *rest = await pipe.execute()
        links, entry_id = rest[: len(ids)], rest[len(ids)]
        removed = (
            (["profile"] if profile else [])
            + (["decisions"] if contacts else [])
            + [f"link:{other}" for other, n in zip(ids, links, strict=True) if n]
        )
        return cid, removed, entry_id.decode()

    async def decision_inputs(
        self, any_id: str, now_ms: int, keep_ms: int, token: str
    ) -> tuple[str, bytes | None, list[Contact], bool]:
        """The canonical id of `any_id`, its profile, its contacts of the last `keep_ms`, and
        whether the decision `token` now holds the customer (`decision_read.lua`: for
        `HOLD_MS` at most, until `decision_done`; False while another decision holds it).
        One round trip for a canonical or unknown id, two for a linked id."""
        cid, blob, flat, held = await self._customer(any_id, now_ms - keep_ms, token)
        return cid, blob, contacts_from(flat), held

    def decision_done(
        self, customer_id: str, token: str, now_ms: int, keep_ms: int, served: str | None
    ) -> None:
        """End the held decision `token`: record the contact it served (``served``:
        ``channel|message|decision``; None: nothing) and release the hold, off the answer's
        path (a task, awaited by `aclose`). If the write fails, the hold expires by itself."""
        keys = [self.keys.contacts(customer_id), self.keys.hold(customer_id)]
        args = [token, now_ms, keep_ms, served or ""]
        # on the open connection without a task (~15 µs less per decision), in the same write
        # as other requests' commands of this loop step (fewer writes under load; Redis runs
        # it first), else alone at the step's end, right after the answer; a task makes the
        # call when there is no connection yet, or when this way fails (NOSCRIPT, a cluster
        # redirection, the connection lost before it was written)
        sent = self.fast.script_later(self._done, keys, args)
        if sent is None:
            self._end_later(keys, args)
            return
        self._ending.add(sent)
        sent.add_done_callback(lambda fut: self._sent(fut, keys, args))

    def _sent(self, fut: asyncio.Future[Any], keys: list[str], args: list[Any]) -> None:
        self._ending.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, (ResponseError, NotSent)):  # NOSCRIPT, a redirection, never
            self._end_later(keys, args)  # written (the connection lost): the full way
        elif exc is not None:
            _log.warning("a decision's contact was not recorded: %s", exc)

    def _end_later(self, keys: list[str], args: list[Any]) -> None:
        task = asyncio.ensure_future(self._script(self._done, keys, args))
        self._ending.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[Any]) -> None:
        self._ending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.warning("a decision's contact was not recorded: %s", exc)

    async def _customer(
        self, any_id: str, since: int | str, token: str | None = None
    ) -> tuple[str, bytes | None, Any, bool]:
        """Profile, link and contacts since `since` (ms, or "+inf": none) of `any_id`, else of
        the canonical id it links to: a script reading the three keys of one hash tag (130 µs
        here against 195 µs for the same three commands pipelined); with a `token`, it also
        takes the canonical id's decision hold (whether it did: the last value)."""
        keys = self.keys
        args: list[Any] = [since] if token is None else [since, token, HOLD_MS]

        def read(id_: str) -> list[str]:
            ids = [keys.profile(id_), keys.link(id_), keys.contacts(id_)]
            return ids if token is None else [*ids, keys.hold(id_)]

        blob, canonical, flat, held = await self._script(self._read, read(any_id), args)
        cid = any_id
        if not blob and canonical:
            cid = canonical.decode()
            blob, _, flat, held = await self._script(self._read, read(cid), args)
        return cid, (blob or None), flat, bool(held)

    async def log_decisions(self, events: Sequence[Event]) -> None:
        """Append served decisions (`models.events.decision_event`) to their partitions and
        count them, and those chosen by exploration, in `Keys.stats`: one round trip, on the
        multiplexed connections (a redis-py pipeline cost ~150 µs of the event loop per
        flush, stalling the decisions that arrived meanwhile)."""
        stats = self.keys.stats()
        commands: list[tuple[Any, ...]] = [
            ("XADD", stream, "*", ENTRY_FIELD, payload) for stream, payload in self._entries(events)
        ]
        commands.append(("HINCRBY", stats, "decisions_served", len(events)))
        explored = sum(1 for ev in events if ev.properties.get("explore"))
        if explored:
            commands.append(("HINCRBY", stats, "decisions_explored", explored))
        replies = await self.fast.execute_all(commands)
        # what the multiplexer left to redis-py (TLS, a cluster redirection) was not done
        redo = [c for c, r in zip(commands, replies, strict=True) if isinstance(r, Unsupported)]
        if redo:
            pipe = self.client.pipeline(transaction=False)
            for command in redo:
                pipe.execute_command(*command)
            await pipe.execute()
        failed = [r for r in replies if isinstance(r, Exception) and not isinstance(r, Unsupported)]
        if failed:
            raise failed[0]

    async def stats(self) -> dict[str, int]:
        """The counters of `Keys.stats` (decisions served and explored, merges refused…)."""
        raw: Any = await self.client.hgetall(self.keys.stats())
        return {k.decode(): int(v) for k, v in raw.items()}

    async def model_blobs(self, arms: Sequence[str]) -> dict[str, bytes]:
        """The published response models of `arms` (one key each: `Keys.model`)."""
        pipe = self.client.pipeline(transaction=False)
        for arm in arms:
            pipe.get(self.keys.model(arm))
        blobs = await pipe.execute()
        return {arm: b for arm, b in zip(arms, blobs, strict=True) if isinstance(b, bytes)}

    async def product_index(self, known: bytes | None) -> tuple[bytes | None, bytes | None]:
        """The published product index's version and, if it is not `known`, the index."""
        version: Any = await self.client.get(self.keys.products_version())
        if version is None or version == known:
            return version, None
        index: Any = await self.client.get(self.keys.products())
        return version, index

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def ops_snapshot(self) -> OpsSnapshot:
        """Lag, progress, freshness, counters and dead letters (`models.progress`): one
        round trip."""
        pipe = self.client.pipeline(transaction=False)
        queue_reads(pipe, self.keys, self.partitions)
        return parse(await pipe.execute(), self.keys, self.partitions)
