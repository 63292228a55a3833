"""The Redis connectors against a real Redis: reads, resume, back-off, dead letters, trimming."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import redis

from cli.status import snapshot
from dataflows.redis_io import (
    ERASED,
    LINK,
    NOTE,
    PROBE,
    PROBE_KEY,
    PROFILE,
    SEND,
    TICK_KEY,
    RecoveryStoreError,
    RedisProfileSink,
    RedisStreamSource,
)
from models.codec import ENTRY_FIELD, encode_entry
from models.events import Event
from models.identity import CONTROL_FIELD, JOIN, Control, decode_controls
from models.keys import Keys, partition_for, progress_field
from models.progress import Probe
from models.triggers import Tick
from tests.conftest import ON_BOTH

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event("track", f"m{i}", i, i, "web", user_id=f"u{i % 3}", event="E")
        for i in range(start, start + n)
    ]


def only_events(batch: list) -> list:  # type: ignore[type-arg]
    """A read without the watermark ticks."""
    return [kv for kv in batch if not kv[0].startswith(TICK_KEY)]


def add(client: redis.Redis, stream: str, evs: list[Event]) -> str:
    return client.xadd(stream, {ENTRY_FIELD: encode_entry(evs)}).decode()


def part(client: redis.Redis, prefix: str, resume: str | None = None, trim_after: float = 60.0):  # type: ignore[no-untyped-def]
    keys = Keys(prefix)
    src = RedisStreamSource(
        lambda: client, keys, 1, read_events=200, backoff_s=0.05, trim_after_s=trim_after
    )
    p = src.build_part("read_events", keys.events(0), resume)
    clock = Clock()
    p._clock = clock
    return keys, p, clock


def test_reads_in_order_resumes_and_backs_off(rclient: redis.Redis, prefix: str) -> None:
    keys, p, _ = part(rclient, prefix)
    stream = keys.events(0)
    ids = [add(rclient, stream, events(2, 2 * i)) for i in range(3)]
    assert [e.message_id for _, e in only_events(p.next_batch())] == [
        "m0",
        "m1",
        "m2",
        "m3",
    ]  # 2 entries
    assert p.next_awake() is None
    assert p.snapshot() == f"{ids[1]} 2"  # the last id read, and its ordinal in the stream
    # a new partition resuming from the snapshot reads only what follows
    _, q, _ = part(rclient, prefix, resume=f"{ids[1]} 2")
    assert [e.message_id for _, e in only_events(q.next_batch())] == ["m4", "m5"]
    assert [k for k, _ in q.next_batch()] == [f"{TICK_KEY}0"]  # nothing new: the watermark
    assert q.next_awake() is not None  # idle: wait before the next read


def test_the_watermark_trails_the_reads_then_follows_the_wall_clock(
    rclient: redis.Redis, prefix: str
) -> None:
    keys, p, _ = part(rclient, prefix)
    p._wall_ms = lambda: 10**12
    stream = keys.events(0)
    h = 3_600_000
    add(rclient, stream, [Event("track", "a", 5 * h, 5 * h, "web", user_id="u", event="E")])
    first = p.next_batch()
    assert [type(v).__name__ for _, v in first] == ["Event"]  # nothing read before: no tick
    add(rclient, stream, [Event("track", "b", 9 * h, 9 * h, "web", user_id="u", event="E")])
    ticks = [v for k, v in p.next_batch() if k.startswith(TICK_KEY)]
    # behind: the newest event time of the reads before this one (its events are not out yet)
    assert ticks == [Tick(0, 5 * h)]
    # caught up: the wall clock (a live trigger fires as its deadline passes)
    assert [v for _, v in p.next_batch()] == [Tick(0, 10**12)]
    assert p.next_batch() == []  # sent only when it moved by TICK_EVERY_MS


def test_a_partition_sends_the_other_partitions_watermarks_from_their_reports(
    rclient: redis.Redis, prefix: str
) -> None:
    # each partition's customers are processed where it is read, and their timers wait for
    # every partition's watermark: a reader publishes its own in its progress report and
    # passes on the others' as their ticks (once each, and none left by an earlier run)
    keys = Keys(prefix)
    src = RedisStreamSource(lambda: rclient, keys, 2, read_events=200, trim_after_s=None)
    clock, now, t = Clock(), [10**12], 10**12
    readers = [src.build_part("read_events", keys.events(q), None) for q in (0, 1)]
    for r in readers:
        r._clock = clock
        r._wall_ms = lambda: now[0]  # type: ignore[method-assign]
    # partition 1's watermark as an earlier run left it: not where it is now
    rclient.hset(keys.progress(), progress_field(keys.events(1), "wm"), f"{10**13} {10**11}")

    def peers(q: int, wall_moves: bool = True) -> list[Tick]:
        clock.t += 1.0  # (reports are throttled)
        got = [v for _, v in readers[q].next_batch()]
        now[0] += 1000 if wall_moves else 0
        return [v for v in got if v.partition != q]

    assert peers(0) == []  # the stale one is ignored
    assert peers(1) == []  # 0 has not reported a watermark yet
    assert peers(0) == []  # it reports t; 1 has not
    assert peers(1) == [Tick(0, t)]
    assert peers(0, wall_moves=False) == [Tick(1, t + 1000)]  # not the stale 10**13
    assert peers(1, wall_moves=False) == [Tick(0, t + 2000)]  # it moved on meanwhile
    for _ in range(2):  # the clock stopped: what they report stops moving
        peers(0, wall_moves=False), peers(1, wall_moves=False)
    assert peers(0, wall_moves=False) == peers(1, wall_moves=False) == []  # each sent once


def test_undecodable_entry_is_dead_lettered_not_fatal(rclient: redis.Redis, prefix: str) -> None:
    keys, p, _ = part(rclient, prefix)
    stream = keys.events(0)
    rclient.xadd(stream, {ENTRY_FIELD: b"\xc1 not msgpack"})
    rclient.xadd(stream, {ENTRY_FIELD: msgpack.packb([5])})
    rclient.xadd(stream, {ENTRY_FIELD: msgpack.packb([[1, 0, "m", "2024", 1, "web", None, "u"]])})
    rclient.xadd(stream, {b"other": b"field"})
    rclient.xadd(
        stream,
        {
            ENTRY_FIELD: msgpack.packb(
                [[1, 0, "m", 1, 1, "web", None, "u", "E", None, None, None, None, ["t"], None]]
            )
        },
    )
    add(rclient, stream, events(1))
    got = [e.message_id for _ in range(4) for _, e in only_events(p.next_batch())]
    assert got == ["m0"]
    dead = rclient.xrange(keys.deadletter())
    assert len(dead) == 5
    assert all(b"could not decode" in fields[b"reason"] for _, fields in dead)


def test_trim_only_behind_old_snapshots(rclient: redis.Redis, prefix: str) -> None:
    keys, p, clock = part(rclient, prefix, trim_after=60)
    stream = keys.events(0)
    ids = [add(rclient, stream, events(1, i)) for i in range(6)]
    p.next_batch()
    first = p.snapshot()  # covers ids[0..1] at t=1000
    assert first == f"{ids[1]} 2"
    clock.t += 30
    p.next_batch()
    p.snapshot()  # covers ids[2..3] at t=1030
    assert rclient.xlen(stream) == 6  # nothing is old enough yet
    clock.t += 31  # the t=1000 snapshot is now 61 s old
    p.snapshot()
    remaining = [eid.decode() for eid, _ in rclient.xrange(stream)]
    assert remaining == ids[1:]  # MINID keeps the snapshot's own id and everything unread
    assert rclient.hget(keys.progress(), stream).decode() == ids[1]
    # entries not yet read are never trimmed, however old the snapshots get
    unread = [add(rclient, stream, events(1, 10 + i)) for i in range(3)]
    for _ in range(3):
        clock.t += 1000
        p.snapshot()
    remaining = [eid.decode() for eid, _ in rclient.xrange(stream)]
    assert remaining[-3:] == unread
    # the newest snapshot is only trimmed to once a later one exists: always conservative
    assert remaining[0] == ids[1]
    p.next_batch()
    clock.t += 61
    p.snapshot()
    clock.t += 61
    p.snapshot()
    assert next(eid.decode() for eid, _ in rclient.xrange(stream)) == ids[5]


@ON_BOTH
def test_sink_writes_last_profile_of_each_customer(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    sink = RedisProfileSink(lambda: rclient, keys, 1).build("write_profiles", 0, 1)
    sink.write_batch([("0", (0, b"1", "a")), ("1", (0, b"2", "b")), ("0", (0, b"3", "a"))])
    assert rclient.get(keys.profile("a")) == b"3"
    assert rclient.get(keys.profile("b")) == b"2"
    many = [("0", (0, str(i).encode(), f"c{i}")) for i in range(2500)]  # more than one MSET chunk
    sink.write_batch(many)
    assert [rclient.get(keys.profile(f"c{i}")) for i in (0, 999, 1000, 2499)] == [
        b"0",
        b"999",
        b"1000",
        b"2499",
    ]


@ON_BOTH
def test_sink_writes_links_erasures_and_control_records(rclient: redis.Redis, prefix: str) -> None:
    """A batch with every kind of write: on a Redis Cluster they span slots and nodes (one
    command per key there, the control records in a round trip before the state)."""
    keys = Keys(prefix)
    rclient.set(keys.profile("gone"), b"old")
    join = Control(JOIN, "ann", "anon-1", "r1", state=b"s", ids=["anon-1"])
    sink = RedisProfileSink(lambda: rclient, keys, 3).build("write_profiles", 0, 1)
    sink.write_batch([
        ("0", (PROFILE, b"ann's", "ann")),
        ("anon-1", (LINK, "anon-1", "ann")),
        ("0", (PROFILE, ERASED, "gone")),
        ("ann", (SEND, join, None)),
        ("ann", (NOTE, "identity: refused", None)),
    ])  # fmt: skip
    assert rclient.get(keys.profile("ann")) == b"ann's"
    assert rclient.get(keys.link("anon-1")) == b"ann"
    assert not rclient.exists(keys.profile("gone"))
    stream = keys.events(partition_for("ann", 3))
    ((_, fields),) = rclient.xrange(stream)
    (sent,) = decode_controls(fields[CONTROL_FIELD])
    assert (sent.kind, sent.to, sent.sender, sent.ids) == (JOIN, "ann", "anon-1", ["anon-1"])
    assert rclient.hget(keys.stats(), "identity_merges_refused") == b"1"
    sink.write_batch([("anon-1", (LINK, "anon-1", ""))])  # unlinked
    assert not rclient.exists(keys.link("anon-1"))


def test_no_trimming_without_recovery(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    src = RedisStreamSource(lambda: rclient, keys, 1, trim_after_s=None)
    p = src.build_part("read_events", keys.events(0), None)
    clock = Clock()
    p._clock = clock
    ids = [add(rclient, keys.events(0), events(1, i)) for i in range(3)]
    for _ in range(3):
        p.next_batch()
        p.snapshot()
        clock.t += 1000
    assert [eid.decode() for eid, _ in rclient.xrange(keys.events(0))] == ids


def test_refuses_a_lost_recovery_store(rclient: redis.Redis, prefix: str) -> None:
    keys, p, clock = part(rclient, prefix, trim_after=1)
    ids = [add(rclient, keys.events(0), events(1, i)) for i in range(4)]
    p.next_batch()
    p.snapshot()
    clock.t += 5
    p.next_batch()
    p.snapshot()
    assert rclient.hget(keys.progress(), keys.events(0)) is not None  # it has trimmed
    with pytest.raises(RecoveryStoreError, match=r"was trimmed up to .* has no state for it"):
        part(rclient, prefix, resume=None)
    with pytest.raises(RecoveryStoreError, match=r"resumes it at .* older backup"):
        part(rclient, prefix, resume=ids[0])  # a recovery store restored from an old backup
    with pytest.raises(RecoveryStoreError):  # a run without recovery would start at 0-0
        RedisStreamSource(lambda: rclient, keys, 1, trim_after_s=None).build_part(
            "read_events", keys.events(0), None
        )
    part(rclient, prefix, resume=ids[-1])  # with its latest recovery state it starts fine


def test_partition_count_must_match(rclient: redis.Redis, prefix: str) -> None:
    keys = Keys(prefix)
    assert RedisStreamSource(lambda: rclient, keys, 4).list_parts() == keys.all_events(4)
    with pytest.raises(RecoveryStoreError, match="set NUDGE_PARTITIONS=4"):
        RedisStreamSource(lambda: rclient, keys, 2).list_parts()


def test_source_and_sink_ride_out_a_redis_restart(tmp_path: Path) -> None:
    import threading
    import time

    from cli.embedded import RedisServer
    from dataflows.redis_io import client_factory

    server = RedisServer(tmp_path / "r", aof=True).start()
    try:
        make = client_factory(server.url)
        keys = Keys("restart")
        client = make()
        first = add(client, keys.events(0), events(2))
        src = RedisStreamSource(make, keys, 1, read_events=100)
        p = src.build_part("read_events", keys.events(0), None)
        sink = RedisProfileSink(make, keys, 1).build("write_profiles", 0, 1)
        assert [e.message_id for _, e in only_events(p.next_batch())] == ["m0", "m1"]
        server.stop()  # a Redis restart: AOF keeps the streams
        restarted = threading.Timer(0.5, server.start)
        restarted.start()
        started = time.monotonic()
        add(client, keys.events(0), events(1, 2))  # retried until Redis is back
        restarted.join()
        assert [e.message_id for _, e in only_events(p.next_batch())] == ["m2"]
        sink.write_batch([("0", (0, b"profile", "u0"))])
        assert client.get(keys.profile("u0")) == b"profile"
        assert time.monotonic() - started < 30
        assert first in [eid.decode() for eid, _ in client.xrange(keys.events(0))]
    finally:
        server.stop()


@ON_BOTH
def test_progress_reports_give_the_lag_in_entries_and_time(
    rclient: redis.Redis, prefix: str
) -> None:
    keys, p, clock = part(rclient, prefix)
    p._wall_ms = lambda: 10**12
    stream = keys.events(0)
    ids = [add(rclient, stream, events(3, 3 * i)) for i in range(5)]
    p.next_batch()  # reads 2 entries; its first report (before the read) says nothing read
    clock.t += 1
    p.next_batch()  # reports the first read, then reads 2 more
    snap = snapshot(rclient, keys, 1)
    (lag,) = snap.partitions
    assert lag.read == ids[1] and lag.read_n == 2 and lag.behind == 3
    assert lag.events == 6 and lag.event_ms == 5 and lag.reported_ms == 10**12
    assert lag.lag_ms == int(ids[4].split("-")[0]) - int(ids[1].split("-")[0])
    clock.t += 1
    p.next_batch()
    clock.t += 1
    p.next_batch()  # nothing new: reports all 5 read
    (lag,) = snapshot(rclient, keys, 1).partitions
    assert lag.caught_up and lag.read_n == 5 and lag.behind == 0 and lag.events == 15


def test_an_old_snapshot_learns_its_ordinal_once_caught_up(
    rclient: redis.Redis, prefix: str
) -> None:
    keys, _p, _ = part(rclient, prefix)
    ids = [add(rclient, keys.events(0), events(1, i)) for i in range(3)]
    _, q, _clock = part(rclient, prefix, resume=ids[0])  # a snapshot without the ordinal
    assert q._n is None
    q.next_batch()
    assert q.snapshot() == ids[2]  # still unknown
    q.next_batch()  # nothing more to read: now it knows
    assert q.snapshot() == f"{ids[2]} 3"


@ON_BOTH
def test_freshness_probes_travel_the_stream_and_are_timed_by_the_sink(
    rclient: redis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    src = RedisStreamSource(lambda: rclient, keys, 1, read_events=200, probe_every_s=5.0)
    p = src.build_part("read_events", keys.events(0), None)
    clock = Clock()
    p._clock = clock
    p._probe_at = clock.t
    add(rclient, keys.events(0), events(1))
    assert [k for k, _ in only_events(p.next_batch())] == ["u0"]  # no probe yet
    clock.t += 5
    ((key, probe),) = only_events(p.next_batch())  # the report appended it; the read got it
    assert key == f"{PROBE_KEY}0" and isinstance(probe, Probe) and probe.partition == 0
    # the report before the probe is all Redis knows of the reader until the next one: the
    # probe, the stream's last entry, is not lag (it was: `nudge status` saw the idle time
    # since the last event as lag, for 0.2 s after every probe)
    (lag,) = snapshot(rclient, keys, 1).partitions
    assert lag.read != lag.tip and lag.before_probe == lag.read
    assert lag.caught_up and lag.lag_ms == 0 and lag.behind == 0
    add(rclient, keys.events(0), events(1))  # an event after the probe: behind again
    (lag,) = snapshot(rclient, keys, 1).partitions
    assert lag.before_probe is None and not lag.caught_up
    sink = RedisProfileSink(lambda: rclient, keys, 1).build("write_profiles", 0, 1)
    sink.write_batch([("0", (0, b"1", "a")), (key, (PROBE, probe, None))])
    fresh = int(rclient.hget(keys.progress(), progress_field(keys.events(0), "fresh")))  # type: ignore[arg-type]
    assert 0 <= fresh < 60_000
    assert rclient.get(keys.profile("a")) == b"1"
