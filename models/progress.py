"""Where the dataflow is in each event stream partition, and how far behind: what operators
watch (pure, but for queuing the reads on a caller's pipeline).

The dataflow's source reports, per partition, into one hash (`Keys.progress`): the last
entry id read (``{stream}:read``), its ordinal in the stream (``:n``, entries ever added up
to it), the newest event time read (``:ts``), the wall clock of the report (``:at``), the
events read so far (``:events``) and the last freshness probe (``:fresh``: ingest → profile
written, ms). Redis knows the other end: each stream's last id and entries ever added.

- stream lag: the age gap between the newest entry and the last one read (stream ids are
  Redis-clock milliseconds), and the count of entries behind;
- event-time lag: now - the event time of the newest event read;
- freshness: the latest probe's ingest → profile-visible time (`dataflows.redis_io`);
- report age: how long since the dataflow last reported (a stopped dataflow stops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models import scripts
from models.keys import Keys, progress_field, stream_id

PROBE_FIELD = b"probe"  # the field of a freshness probe's stream entry (no value)


@dataclass(frozen=True, slots=True)
class Probe:
    """A freshness probe: an entry the source appended to its partition at `ingest_ms` (the
    entry id's time) and has read back; the sink times it once its batch is written."""

    partition: int
    ingest_ms: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    stream: str
    tip: str  # the stream's last entry id ("0-0": never written)
    added: int  # entries ever added to the stream
    length: int  # entries in it now
    read: str  # last id the dataflow read ("0-0": none)
    read_n: int | None  # entries ever added up to `read` (None: unknown)
    event_ms: int | None  # newest event time read
    reported_ms: int | None  # when the dataflow last reported (its wall clock)
    events: int  # events read, all runs together
    fresh_ms: int | None  # last probe: ingest → profile written
    # when the last entry is the dataflow's own freshness probe: the entry before it ("0-0":
    # none). A reader there has read every event: the probe, appended by the reader itself,
    # is read back at once, but where the reader is gets reported only every 0.2 s.
    before_probe: str | None = None

    @property
    def _tip(self) -> tuple[int, int]:
        """The last entry that is not the dataflow's own freshness probe."""
        return stream_id(self.tip if self.before_probe is None else self.before_probe)

    @property
    def caught_up(self) -> bool:
        return stream_id(self.read) >= self._tip

    @property
    def lag_ms(self) -> int:
        """Age gap between the newest entry and the last one read."""
        return max(0, self._tip[0] - stream_id(self.read)[0])

    @property
    def behind(self) -> int | None:
        """Entries not read yet (None: unknown, until the dataflow reports an ordinal)."""
        if self.caught_up:
            return 0
        if self.read_n is None:
            return None
        return max(0, self.added - self.read_n - (self.before_probe is not None))

    def event_lag_ms(self, now_ms: int) -> int | None:
        return None if self.event_ms is None else max(0, now_ms - self.event_ms)

    def report_age_ms(self, now_ms: int) -> int | None:
        return None if self.reported_ms is None else max(0, now_ms - self.reported_ms)


@dataclass(frozen=True, slots=True)
class OpsSnapshot:
    """One read of everything operators watch (`queue_reads` / `parse`)."""

    partitions: list[PartitionLag]
    stats: dict[str, int]  # `Keys.stats`: decisions, triggers by type, webhook outcomes…
    deadletter: int  # entries in the ingest dead-letter stream
    webhook_deadletter: int  # triggers no webhook accepted
    triggers_added: int  # entries ever added to the triggers stream

    def max_lag_ms(self) -> int:
        return max((p.lag_ms for p in self.partitions), default=0)

    def behind(self) -> int | None:
        counts = [p.behind for p in self.partitions]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def events(self) -> int:
        return sum(p.events for p in self.partitions)

    def triggers(self) -> int:
        return sum(v for k, v in self.stats.items() if k.startswith("triggers:"))

    def events_per_s(self, before: OpsSnapshot, dt_s: float) -> list[float]:
        """Events read per second on each partition since `before`, `dt_s` earlier."""
        return [
            max(0, a.events - b.events) / dt_s if dt_s > 0 else 0.0
            for a, b in zip(self.partitions, before.partitions, strict=True)
        ]

    def triggers_per_s(self, before: OpsSnapshot, dt_s: float) -> float:
        return max(0, self.triggers() - before.triggers()) / dt_s if dt_s > 0 else 0.0

    def silent(self, now_ms: int, limit_s: float) -> list[tuple[PartitionLag, int | None]]:
        """The partitions the dataflow never reported on (age None) or not for more than
        `limit_s`, with the age of their last report in ms."""
        out = []
        for p in self.partitions:
            age = p.report_age_ms(now_ms)
            if age is None or age > limit_s * 1000:
                out.append((p, age))
        return out

    def report_age_ms(self, now_ms: int) -> int | None:
        """Since the partition heard from longest ago last reported (None: never)."""
        ages = [p.report_age_ms(now_ms) for p in self.partitions]
        if not ages or any(a is None for a in ages):
            return None
        return max(a for a in ages if a is not None)


def queue_reads(pipe: Any, keys: Keys, partitions: int) -> None:
    """Queue the reads of an `OpsSnapshot` on a redis-py pipeline (sync or asyncio; each
    command touches one key, so a Redis Cluster pipeline takes them too)."""
    for stream in [*keys.all_events(partitions), keys.triggers()]:
        # EVAL as a plain command: a cluster pipeline has no `eval` method, but routes it
        pipe.execute_command("EVAL", scripts.STREAM_INFO, 1, stream, PROBE_FIELD)
    pipe.hgetall(keys.progress())
    pipe.hgetall(keys.stats())
    pipe.xlen(keys.deadletter())
    pipe.xlen(keys.webhook_deadletter())


def parse(results: Sequence[Any], keys: Keys, partitions: int) -> OpsSnapshot:
    """The `OpsSnapshot` of what the pipeline of `queue_reads` returned."""
    streams = keys.all_events(partitions)
    infos = results[:partitions]
    trig, progress, stats, dlq, wdlq = results[partitions:]
    prog = {_text(k): _text(v) for k, v in progress.items()}
    out = []
    for p, (stream, (tip, added, length, before)) in enumerate(zip(streams, infos, strict=True)):
        out.append(
            PartitionLag(
                partition=p,
                stream=stream,
                tip=_text(tip),
                added=int(added),
                length=int(length),
                read=prog.get(progress_field(stream, "read"), "0-0"),
                read_n=_int(prog, progress_field(stream, "n")),
                event_ms=_int(prog, progress_field(stream, "ts")),
                reported_ms=_int(prog, progress_field(stream, "at")),
                events=_int(prog, progress_field(stream, "events")) or 0,
                fresh_ms=_int(prog, progress_field(stream, "fresh")),
                before_probe=_text(before) if before is not None else None,
            )
        )
    return OpsSnapshot(
        out,
        {_text(k): int(v) for k, v in stats.items()},
        int(dlq),
        int(wdlq),
        int(trig[1]),
    )


def seconds(ms: int | None) -> float | None:
    """Milliseconds (None: unknown) as seconds."""
    return None if ms is None else ms / 1000


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _int(values: Mapping[str, str], key: str) -> int | None:
    v = values.get(key)
    return int(v) if v not in (None, "") else None
