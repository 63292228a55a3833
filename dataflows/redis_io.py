"""Redis connectors for Bytewax: a partitioned Redis Streams source and a profile sink.

Both are thin adapters: the key layout and the codecs come from `models`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from config.catalog import Catalog
from config.connect import cluster_mismatch, is_cluster, sync_client
from dataflows import metrics
from dataflows.trigger_io import TriggerWriter
from models import scripts
from models.codec import ENTRY_FIELD, CodecError, decode_entry
from models.consent import ConsentPolicy
from models.events import Event
from models.identity import (
    CONTROL_FIELD,
    Control,
    IdentityError,
    decode_controls,
    encode_controls,
)
from models.keys import Keys, layout_error, partition_for, progress_field, stream_id
from models.progress import PROBE_FIELD, Probe
from models.triggers import Tick, Trigger

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.2
RETRIES = 8
MSET_CHUNK = 1000
MAX_READ_ENTRIES = 1000

ClientFactory = Callable[[], "redis.Redis"]


def client_factory(url: str, cluster: bool = False) -> ClientFactory:
    """A callable making a new synchronous client (each partition owns its connection);
    `cluster`: `url` is a node of a Redis Cluster (`config.connect`).

    Connection errors and timeouts are retried with jittered back-off for about ten seconds,
    so a Redis restart or fail-over does not crash the dataflow; every command it sends is
    idempotent (reads, MSET of whole profiles, XTRIM, HSET of progress). Past that, the
    error stops the dataflow, and recovery resumes it exactly where it was.
    """

    def make() -> redis.Redis:
        return sync_client(
            url,
            cluster=cluster,
            socket_keepalive=True,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.05), RETRIES),
        )

    return make


class RecoveryStoreError(RuntimeError):
    """The recovery store or the settings do not match what this Redis has seen (streams
    trimmed past the store, another partition count, a cluster node without the cluster
    client); the message says why."""


def check_layout(client: redis.Redis, keys: Keys, partitions: int) -> None:
    """Record the partition count on first start; refuse to run against a different one."""
    pipe = client.pipeline(transaction=False)
    pipe.hsetnx(keys.meta(), "partitions", partitions)
    pipe.hget(keys.meta(), "partitions")
    try:
        _, stored = pipe.execute()
    except redis.ResponseError as exc:
        raise RecoveryStoreError(cluster_mismatch(exc) or str(exc)) from exc
    problem = layout_error(stored, partitions, keys)
    if problem:
        raise RecoveryStoreError(problem)


Keyed = tuple[str, Event | Control | Tick | Probe]

# What the dataflow's steps emit, keyed by an id (or an arm), and the sink writes: (tag, a, b)
PROFILE = 0  # (PROFILE, blob or ERASED, None)
LINK = 1  # (LINK, id, canonical id or "" to delete the link)
SEND = 2  # (SEND, Control, None): a control record to append to the log
NOTE = 3  # (NOTE, text, None): an identity refusal, logged and counted
PROBE = 4  # (PROBE, models.progress.Probe, None): a freshness probe, timed by the sink
LEARN = 5  # (LEARN, models.feedback.Example, None): from the partitions to "learn", not the sink
MODEL = 6  # (MODEL, arm's msgpack learner, None), keyed by the arm: the sink publishes it
OBSERVE = 7  # (OBSERVE, [models.products.Observation], None): to the "products" step
PRODUCTS = 8  # (PRODUCTS, msgpack product index, version): the sink publishes it
TIMER = 10  # (TIMER, models.triggers.TimerOp, None): a node's timer change, for its partition
TRIGGER = 11  # (TRIGGER, models.triggers.Trigger, fired at ms): the sink appends it
FEEDBACK = 12  # (FEEDBACK, Event, customer id): a decision, answer or order (inside a partition)
STATE = 13  # (STATE, node blob or ERASED, id): an id's stored state (`Keys.state`)
ARMED = 14  # (ARMED, partition, (ids to add, ids to remove)): its index of armed ids
WRITTEN = 15  # (WRITTEN, write sequence, None): once stored, the STATE items before it are
TICK_KEY = "\x00ticks"  # prefix of the keys of watermark ticks (never a customer id): one
# per partition, so that ticks reach several workers (they flush per-worker buffers)
PROBE_KEY = "\x00probe"  # prefix of the keys of freshness probes (one per partition)
TICK_EVERY_MS = 200  # a partition's watermark is sent when it moved at least this much
TriggerConfig = tuple[Catalog, ConsentPolicy, int]  # catalog, consent policy, stream maxlen
Output = tuple[int, Any, Any]
ERASED = b""  # the profile "blob" of an erased (or merged-away) customer: the sink deletes it


class WriteLedger(threading.local):
    """Per worker thread (a worker's steps and its sink partition share one): the sequence
    numbers of the STATE writes emitted and of the last one the sink has stored, so a partition
    evicts from memory only what Redis already holds."""

    def __init__(self) -> None:
        self.emitted = 0
        self.written = 0


LEDGER = WriteLedger()


class NodeStore:
    """Reads ids' stored state (`Keys.state`) and partitions' armed ids, on one connection per
    worker thread opened at first use; the sink writes them (STATE, ARMED)."""

    def __init__(self, make_client: ClientFactory, keys: Keys) -> None:
        self._make = make_client
        self._keys = keys
        self._local = threading.local()

    def _client(self) -> redis.Redis:
        r: redis.Redis | None = getattr(self._local, "r", None)
        if r is None:
            r = self._local.r = self._make()
            self._local.cluster = is_cluster(r)
        return r

    def load(self, ids: list[str]) -> list[bytes | None]:
        """The stored state of each id (None: none), in one round trip (per node)."""
        r = self._client()
        keys = [self._keys.state(i) for i in ids]
        if self._local.cluster:
            got: Any = r.mget_nonatomic(keys)  # type: ignore[attr-defined]
        else:
            got = r.mget(keys)
        return list(got)

    def armed(self, partition: int) -> list[str]:
        members: Any = self._client().smembers(self._keys.armed(partition))
        return sorted(m.decode() for m in members)


class _StreamPartition(StatefulSourcePartition[Keyed, str]):
    """Reads one stream partition with non-blocking XREAD; resume state is the last id and
    its ordinal (entries ever added up to it, for the count of entries behind).

    Emits ``(customer key, event)``: keyed here rather than in a separate step, which would
    cost a Python call and a Bytewax step per event. Every `PROGRESS_EVERY_S` it reports where
    it is (`models.progress`) and, every `probe_every_s`, appends a freshness probe to its own
    partition, which goes through the flow like an event and is timed by the sink."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        stream: str,
        resume_state: str | None,
        read_events: int,
        backoff_s: float,
        trim_after_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        partition: int = 0,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        probe_every_s: float = 0.0,
        streams: list[str] | None = None,
    ) -> None:
        resume_id, _, ordinal = (resume_state or "").partition(" ")
        trimmed: Any = client.hget(keys.progress(), stream)
        if trimmed is not None and stream_id(resume_id or "0-0") < stream_id(trimmed):
            state = (
                "has no state for it (lost, new, or a run without recovery)"
                if not resume_id
                else f"resumes it at {resume_id} (restored from an older backup?)"
            )
            raise RecoveryStoreError(
                f"{stream} was trimmed up to {trimmed.decode()} by an earlier run, but the "
                f"recovery store {state}: carrying on would rebuild profiles from a partial "
                "history. Restore the recovery directory (NUDGE_RECOVERY_DIR) from its latest "
                f"state; or, to rebuild from what the streams still hold, HDEL "
                f"{keys.progress()} {stream} and restart."
            )
        self._r = client
        self._keys = keys
        self._stream = stream
        self._last_id = resume_id or "0-0"
        self._info = client.register_script(scripts.STREAM_INFO)
        # Entries already in the stream at start may have been acted on by a run before a
        # crash: control records among them are marked `replayed` (see `models.identity`).
        tip, added, length, _ = self._info(keys=[stream], args=[PROBE_FIELD])
        self._replay_until = stream_id(tip)
        # the ordinal of the last entry read; from the start, what was trimmed before counts
        # as read. A snapshot of an older version has none: known again once caught up.
        self._n: int | None = (
            int(ordinal) if ordinal else (int(added) - int(length)) if not resume_id else None
        )
        # An entry holds one request's events for this partition (1 to 2,500): the XREAD
        # COUNT adapts to the mean entry size so that a read brings about `read_events`.
        self._read_events = read_events
        self._count = max(1, min(MAX_READ_ENTRIES, read_events // 100))
        self._max_backoff = backoff_s
        self._backoff = 0.0
        self._awake: datetime | None = None
        self._trim_after = trim_after_s
        self._clock = clock
        # (time of snapshot, id covered by it): entries below an id whose snapshot is older
        # than `trim_after_s` are durably processed and may be trimmed.
        self._snapshots: deque[tuple[float, str]] = deque()
        self._progress_at = 0.0
        self._probe_every = probe_every_s
        self._probe_at = clock()
        self._unreported = 0  # events read since the last report
        # event-time watermark (`models.triggers`): the newest event time read up to the
        # previous read while behind, the wall clock once caught up
        self._partition = partition
        self._tick_key = f"{TICK_KEY}{partition}"
        self._probe_key = f"{PROBE_KEY}{partition}"
        self._wall_ms = wall_ms
        self._max_ts = -(2**62)
        self._sent_wm = -(2**62)
        # the other partitions' watermarks, read from their progress reports (`streams`: all
        # the partitions' streams, in order), so that timers here wait for every partition
        self._peers = [
            (q, progress_field(other, "wm"))
            for q, other in enumerate(streams or ())
            if other != stream
        ]
        self._peer_wm = {q: -(2**62) for q, _ in self._peers}
        self._started_ms: int | None = None  # a peer's watermark written before is stale
        label = str(partition)
        self._events_metric = metrics.EVENTS.labels(label)
        self._entries_metric = metrics.ENTRIES.labels(label)
        self._event_time_metric = metrics.EVENT_TIME.labels(label)

    def next_batch(self) -> list[Keyed]:
        now = self._clock()
        peers: list[Keyed] = []
        if now - self._progress_at >= PROGRESS_EVERY_S:
            self._progress_at = now
            peers = self._report(now)
        resp: Any = self._r.xread({self._stream: self._last_id}, count=self._count)
        if not resp:
            if self._n is None:  # caught up: the ordinal is the stream's entries-added
                tip, added, _, _ = self._info(keys=[self._stream], args=[PROBE_FIELD])
                if tip.decode() == self._last_id:
                    self._n = int(added)
            self._backoff = min(self._max_backoff, max(0.001, self._backoff * 2))
            self._awake = datetime.now(UTC) + timedelta(seconds=self._backoff)
            return peers + self._tick(max(self._max_ts, self._wall_ms()))
        self._backoff = 0.0
        self._awake = None
        entries = resp[0][1]
        out: list[Keyed] = peers + self._tick(self._max_ts)  # what earlier reads brought is out
        for entry_id, fields in entries:
            try:
                payload = fields.get(ENTRY_FIELD)
                if payload is not None:
                    out.extend([(ev.customer_key, ev) for ev in decode_entry(payload)])
                elif PROBE_FIELD in fields:
                    out.append((self._probe_key, Probe(self._partition, stream_id(entry_id)[0])))
                else:  # the dataflow's own control records (identity stitching)
                    records = decode_controls(fields[CONTROL_FIELD])
                    if stream_id(entry_id) <= self._replay_until:
                        for c in records:
                            c.replayed = True
                    out.extend([(c.to, c) for c in records])
            except (CodecError, IdentityError, KeyError) as exc:
                self._dead_letter(entry_id, fields, exc)
        self._last_id = entries[-1][0].decode()
        if self._n is not None:
            self._n += len(entries)
        events = 0
        for _, item in out:
            if type(item) is Event:
                events += 1
                if item.timestamp > self._max_ts:
                    self._max_ts = item.timestamp
        self._unreported += events
        self._events_metric.inc(events)
        self._entries_metric.inc(len(entries))
        metrics.READ_EVENTS.observe(events)
        per_entry = max(1, len(out) // len(entries))
        self._count = max(1, min(MAX_READ_ENTRIES, self._read_events // per_entry))
        return out

    def _report(self, now: float) -> list[Keyed]:
        """Where this partition's reader is (`models.progress`: read position, event time,
        watermark), and a probe when due; the other partitions' watermarks come back as
        their ticks. One round trip, throttled."""
        stream = self._stream
        report: dict[Any, Any] = {
            progress_field(stream, "read"): self._last_id,
            progress_field(stream, "at"): self._wall_ms(),
        }
        if self._n is not None:
            report[progress_field(stream, "n")] = self._n
        if self._max_ts > -(2**62):
            report[progress_field(stream, "ts")] = self._max_ts
            self._event_time_metric.set(self._max_ts / 1000)
        wall = self._wall_ms()
        if self._started_ms is None:
            self._started_ms = wall
        if self._sent_wm > -(2**62):  # with when it was written
            report[progress_field(stream, "wm")] = f"{self._sent_wm} {wall}"
        pipe = self._r.pipeline(transaction=False)
        pipe.hset(self._keys.progress(), mapping=report)
        pipe.hincrby(self._keys.progress(), progress_field(stream, "events"), self._unreported)
        self._unreported = 0
        if self._probe_every > 0 and now - self._probe_at >= self._probe_every:
            self._probe_at = now
            pipe.xadd(stream, {PROBE_FIELD: b""})
        if self._peers:
            pipe.hmget(self._keys.progress(), [f for _, f in self._peers])
        got = pipe.execute()
        if not self._peers:
            return []
        ticks: list[Keyed] = []
        for (q, _), raw in zip(self._peers, got[-1], strict=True):
            if raw is None:
                continue
            wm_s, _, at_s = raw.partition(b" ")
            # a value left by a run before this one started is not where that partition
            # is now (it may be replaying from its snapshot): wait for its next report
            if not at_s or int(at_s) < self._started_ms:
                continue
            if (wm := int(wm_s)) > self._peer_wm[q]:
                self._peer_wm[q] = wm
                ticks.append((f"{TICK_KEY}{q}", Tick(q, wm)))
        return ticks

    def _tick(self, watermark: int) -> list[Keyed]:
        if watermark < self._sent_wm + TICK_EVERY_MS:
            return []
        self._sent_wm = watermark
        return [(self._tick_key, Tick(self._partition, watermark))]

    def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], exc: Exception) -> None:
        log.error("undecodable entry %s in %s: %s", entry_id, self._stream, exc)
        self._r.xadd(
            self._keys.deadletter(),
            {
                b"reason": f"dataflow could not decode entry: {exc}".encode(),
                b"stream": self._stream.encode(),
                b"entry_id": entry_id,
                b"raw": fields.get(ENTRY_FIELD, fields.get(CONTROL_FIELD, b"")),
            },
        )

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> str:
        now = self._clock()
        snaps = self._snapshots
        if not snaps or snaps[-1][1] != self._last_id:
            snaps.append((now, self._last_id))
        durable: str | None = None
        horizon = now - (self._trim_after or 0.0)
        while snaps and snaps[0][0] <= horizon and len(snaps) > 1:
            durable = snaps.popleft()[1]
        if durable is not None and durable != "0-0" and self._trim_after is not None:
            pipe = self._r.pipeline(transaction=False)
            pipe.xtrim(self._stream, minid=durable, approximate=False)
            pipe.hset(self._keys.progress(), self._stream, durable)
            pipe.execute()
        return self._last_id if self._n is None else f"{self._last_id} {self._n}"

    def close(self) -> None:
        self._r.close()


class RedisStreamSource(FixedPartitionedSource[Keyed, str]):
    """One Bytewax partition per event-stream partition (``nudge:v1:events:{pN}``)."""

    def __init__(
        self,
        make_client: ClientFactory,
        keys: Keys,
        partitions: int,
        *,
        read_events: int = 5000,
        backoff_s: float = 0.05,
        trim_after_s: float | None = 60.0,
        probe_every_s: float = 0.0,
    ) -> None:
        """`trim_after_s=None` never trims: for runs without recovery, which restart from the
        start of the streams. `probe_every_s`: how often each partition appends a freshness
        probe to itself (0: never)."""
        # items are keyed by id, and partition i holds the ids of `partition_for(id, n)` == i
        # (control records included): the flow processes each partition where it is read
        self.stream_partitions = partitions
        self._probe_every_s = probe_every_s
        self._make_client = make_client
        self._keys = keys
        self._streams = keys.all_events(partitions)
        self._read_events = read_events
        self._backoff_s = backoff_s
        self._trim_after_s = trim_after_s

    def list_parts(self) -> list[str]:
        client = self._make_client()
        try:
            check_layout(client, self._keys, len(self._streams))
        finally:
            client.close()
        return list(self._streams)

    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _StreamPartition:
        return _StreamPartition(
            self._make_client(),
            self._keys,
            for_part,
            resume_state,
            self._read_events,
            self._backoff_s,
            self._trim_after_s,
            partition=self._streams.index(for_part),
            probe_every_s=self._probe_every_s,
            streams=self._streams,
        )


class _ProfilePartition(StatelessSinkPartition[tuple[str, Output]]):
    def __init__(
        self, client: redis.Redis, keys: Keys, partitions: int, triggers: TriggerConfig | None
    ) -> None:
        self._r = client
        self._keys = keys
        self._streams = keys.all_events(partitions)
        self._partitions = partitions
        self._triggers = TriggerWriter(client, keys, *triggers) if triggers is not None else None
        self._cluster = is_cluster(client)

    def write_batch(self, items: list[tuple[str, Output]]) -> None:
        # Everything of a batch in one round trip. Several updates of one key in a batch: the
        # last one wins. MSET costs ~1 us a key against ~5 us for a pipelined SET per key
        # (redis-py's per-command cost); chunks keep each command short so Redis never stalls.
        profile, link, state = self._keys.profile, self._keys.link, self._keys.state
        latest: dict[str, bytes | str] = {}
        armed: dict[str, tuple[set[str], set[str]]] = {}  # index key -> (add, remove)
        seq = 0
        sends: dict[int, list[Control]] = {}
        triggers: list[tuple[Trigger, int]] = []
        probes: list[Probe] = []
        notes = 0
        started = time.perf_counter()
        for key, (tag, a, b) in items:
            if tag == STATE:  # an id's node, or ERASED to delete; the id
                latest[state(b)] = a
            elif tag == WRITTEN:  # the write sequence of the STATE items before it
                seq = a
            elif tag == PROFILE:  # the blob, or ERASED to delete; the customer id
                latest[profile(b)] = a
            elif tag == ARMED:  # ids that now have (or no longer have) timers or decisions
                index = armed.setdefault(self._keys.armed(a), (set(), set()))
                index[0].difference_update(b[1])
                index[0].update(b[0])
                index[1].difference_update(b[0])
                index[1].update(b[1])
            elif tag == LINK:  # id -> canonical id, or "" to delete
                latest[link(a)] = b
            elif tag == MODEL:  # an arm's response model, keyed by the arm
                latest[self._keys.model(key)] = a
            elif tag == PRODUCTS:  # the product index, then its version
                latest[self._keys.products()] = a
                latest[self._keys.products_version()] = b
            elif tag == SEND:  # a control record for the id `a.to`
                sends.setdefault(partition_for(a.to, self._partitions), []).append(a)
            elif tag == TRIGGER:  # a fired trigger, and when it fired
                triggers.append((a, b))
            elif tag == PROBE:  # timed once this batch is written
                probes.append(a)
            else:  # NOTE
                log.warning("%s", a)
                notes += 1
        deleted = [k for k, v in latest.items() if not v]
        for k in deleted:
            del latest[k]
        if triggers and self._triggers is not None:
            # decided, recorded and appended before the state that follows from them
            self._triggers.write(triggers)
        self._write(latest, deleted, sends, notes, armed)
        if seq:
            LEDGER.written = seq
        metrics.SINK_SECONDS.observe(time.perf_counter() - started)
        metrics.SINK_BATCH.observe(len(items))
        if latest:
            metrics.WRITES.labels("set").inc(len(latest))
        if deleted:
            metrics.WRITES.labels("delete").inc(len(deleted))
        if probes:
            self._time_probes(probes)

    def _time_probes(self, probes: list[Probe]) -> None:
        now_ms = time.time_ns() // 1_000_000
        fresh: dict[str, int] = {}
        for probe in probes:
            ms = max(0, now_ms - probe.ingest_ms)
            metrics.FRESHNESS.observe(ms / 1000)
            fresh[progress_field(self._streams[probe.partition], "fresh")] = ms
        self._r.hset(self._keys.progress(), mapping=fresh)  # type: ignore[arg-type]

    def _write(
        self,
        latest: dict[str, bytes | str],
        deleted: list[str],
        sends: dict[int, list[Control]],
        notes: int,
        armed: dict[str, tuple[set[str], set[str]]],
    ) -> None:
        if not latest and not deleted and not sends and not notes and not armed:
            return
        if self._cluster:
            self._write_cluster(latest, deleted, sends, notes, armed)
            return
        if not deleted and not sends and not notes and not armed and len(latest) <= MSET_CHUNK:
            self._r.mset(latest)
            return
        # MULTI when control records go out: a JOIN and the link that records it land together
        # or not at all (a restarted run looks the link up: `models.identity.Stitcher.prior`)
        pipe = self._r.pipeline(transaction=bool(sends))
        # an id joins its partition's index before its state holds a timer, and leaves it after
        # (a crash in between leaves an id indexed for nothing: harmless)
        for index, (add, _) in armed.items():
            if add:
                pipe.sadd(index, *add)
        if deleted:
            pipe.delete(*deleted)
        chunk: dict[str, bytes | str] = {}
        for k, blob in latest.items():
            chunk[k] = blob
            if len(chunk) == MSET_CHUNK:
                pipe.mset(chunk)
                chunk = {}
        if chunk:
            pipe.mset(chunk)
        # control records after the state they follow from; one entry per partition, in order
        self._queue_sends(pipe, sends)
        if notes:
            pipe.hincrby(self._keys.stats(), "identity_merges_refused", notes)
        for index, (_, remove) in armed.items():
            if remove:
                pipe.srem(index, *remove)
        pipe.execute()

    def _write_cluster(
        self,
        latest: dict[str, bytes | str],
        deleted: list[str],
        sends: dict[int, list[Control]],
        notes: int,
        armed: dict[str, tuple[set[str], set[str]]],
    ) -> None:
        """The same writes on a Redis Cluster, where a command or a transaction spans one
        slot: one command per key, pipelined to each key's node. Control records go first, in
        a round trip of their own, and the state that follows from them after: a crash in
        between sends them again from the restarted run (they are idempotent), and a link is
        never stored without the JOIN that records it."""
        adds = [(index, add) for index, (add, _) in armed.items() if add]
        if sends or adds:  # (index entries, like control records, before the state)
            pipe = self._r.pipeline(transaction=False)
            self._queue_sends(pipe, sends)
            for index, add in adds:
                pipe.sadd(index, *add)
            pipe.execute()
        pipe = self._r.pipeline(transaction=False)
        for k in deleted:
            pipe.delete(k)
        for k, blob in latest.items():
            pipe.set(k, blob)
        if notes:
            pipe.hincrby(self._keys.stats(), "identity_merges_refused", notes)
        if len(pipe):
            pipe.execute()
        removes = [(index, remove) for index, (_, remove) in armed.items() if remove]
        if removes:  # after the state, which may be on another node
            pipe = self._r.pipeline(transaction=False)
            for index, remove in removes:
                pipe.srem(index, *remove)
            pipe.execute()

    def _queue_sends(self, pipe: Any, sends: dict[int, list[Control]]) -> None:
        """One entry of control records per partition, in order, onto `pipe`."""
        for part, records in sends.items():
            pipe.xadd(self._streams[part], {CONTROL_FIELD: encode_controls(records)})

    def close(self) -> None:
        self._r.close()


class RedisProfileSink(DynamicSink[tuple[str, Output]]):
    """Writes a batch's profiles and identity links, and appends its control records to the
    event streams, in one pipelined round trip (idempotent: see `models.identity`)."""

    def __init__(
        self,
        make_client: ClientFactory,
        keys: Keys,
        partitions: int,
        triggers: TriggerConfig | None = None,
    ) -> None:
        """`triggers`: (catalog, consent policy, stream max length) to write fired triggers
        with (`dataflows.trigger_io`); None: a flow without triggers."""
        self._make_client = make_client
        self._keys = keys
        self._partitions = partitions
        self._trigger_config = triggers

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProfilePartition:
        return _ProfilePartition(
            self._make_client(), self._keys, self._partitions, self._trigger_config
        )
