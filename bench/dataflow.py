"""Dataflow throughput per worker: REES46 + Taobao replay through the real nudge flow.

``python -m bench.dataflow [--rounds 3] [--entry-events 1000] [--no-recovery-only] [--no-products]
[--no-triggers] [--profile]``

Pre-loads the two datasets into the event streams exactly as the API lays them out
(`api.store.Store.append`: one entry per partition per request, `models.codec.encode_entry`,
partition from `models.keys.partition_for`), then runs, with ONE Bytewax worker in this
process (`bytewax.testing.run_main`):

- nudge: `dataflows.flow.build_flow(settings)` with its Redis source and profile sink;
- bare: the same `RedisStreamSource` (which keys events by customer) → a stateful step
  keeping a dict of event counts per customer (the issue's "dict state"), packed with
  msgpack → a sink MSETting the values, one pipeline per batch;

each without and with recovery (a fresh `bytewax.recovery.init_db_dir` store, the default
epoch of ``NUDGE_EPOCH_S`` = 2 s). The stream source is live (it never ends), so the flows read
it through `UntilTip`, a wrapper that ends each partition once it has delivered the events
pre-loaded there; ``run_main`` then returns once every profile has been written and the last
snapshot taken. Every run is checked against Redis (profile count, event counts in profiles).
Both flows run after `config.runtime.tune_gc()`, as under ``nudge dataflow``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import bytewax.operators as op
import msgpack
import redis
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from bench.machine import REES46, TAOBAO, CpuWindow, data_path, header, table
from cli.datasets import read_calls
from cli.embedded import RedisServer
from config import Settings
from config.connect import is_cluster
from config.runtime import DATAFLOW_YOUNG, tune_gc
from dataflows.flow import build_flow, redis_source
from dataflows.redis_io import client_factory
from models.codec import ENTRY_FIELD, encode_entry
from models.events import Event
from models.keys import Keys, partition_for
from models.profile import decode_profile
from models.segment import normalize

TARGET: Final = 50_000  # events/s per worker, nudge flow
TARGET_RATIO: Final = 0.5  # nudge ≥ half the bare flow


# --- the stream, pre-loaded ----------------------------------------------------------------


@dataclass(slots=True)
class Workload:
    """The replay as stream entries, and what the flows must end up writing."""

    entries: list[tuple[int, bytes]]  # (partition, encode_entry payload), in XADD order
    per_partition: dict[int, int]  # events per partition
    events: int
    customers: int
    distinct_events: int  # distinct (customer, messageId): what profiles count after dedupe
    datasets: list[tuple[str, int]] = field(default_factory=list)


def lay_out(
    events: list[Event], partitions: int, request_events: int
) -> tuple[list[tuple[int, bytes]], dict[int, int]]:
    """The events as stream entries, as `api.store.Store.append` writes them: requests of
    `request_events` calls, one entry per partition per request. Returns the entries, in XADD
    order, and the events per partition."""
    entries: list[tuple[int, bytes]] = []
    per_partition = dict.fromkeys(range(partitions), 0)
    for start in range(0, len(events), request_events):
        by_part: dict[int, list[Event]] = {}
        for ev in events[start : start + request_events]:
            by_part.setdefault(partition_for(ev.customer_key, partitions), []).append(ev)
        for part, evs in by_part.items():
            entries.append((part, encode_entry(evs)))
            per_partition[part] += len(evs)
    return entries, per_partition


def normalized(paths: list[Path], fraction: float = 1.0) -> tuple[list[Event], list[Any]]:
    """The calls of `paths` (the first `fraction` of each) normalised as the API does, and
    (dataset, events) per path."""
    now = time.time_ns() // 1_000_000
    counter = iter(range(1 << 62))
    events: list[Event] = []
    datasets = []
    for path in paths:
        calls = [call for _, call in read_calls(path)]
        keep = calls[: max(1, round(len(calls) * fraction))]
        for call in keep:
            events.append(normalize(call, received_at=now, new_id=lambda: f"g{next(counter)}"))
        datasets.append((path.parent.name, len(keep)))
    return events, datasets


def build_workload(paths: list[Path], partitions: int, request_events: int) -> Workload:
    """Normalise every call as the API does and cut the replay into requests of
    `request_events` calls, each request giving one entry per partition (as `Store.append`)."""
    return workload_of(*normalized(paths), partitions, request_events)


def workload_of(
    events: list[Event], datasets: list[Any], partitions: int, request_events: int
) -> Workload:
    """The `Workload` of events from `normalized`."""
    entries, per_partition = lay_out(events, partitions, request_events)
    return Workload(
        entries=entries,
        per_partition=per_partition,
        events=len(events),
        customers=len({ev.customer_key for ev in events}),
        distinct_events=len({(ev.customer_key, ev.message_id) for ev in events}),
        datasets=datasets,
    )


def preload(client: redis.Redis, keys: Keys, work: Workload) -> None:
    """FLUSHDB, then XADD every entry (pipelined), as the API would have."""
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for part, payload in work.entries:
        pipe.xadd(keys.events(part), {ENTRY_FIELD: payload})
        if len(pipe) >= 200:
            pipe.execute()
    pipe.execute()


# --- a source that ends at the pre-loaded tip ----------------------------------------------


@dataclass(slots=True)
class Marks:
    """Wall-clock marks of a run, set by `UntilTip`'s partitions."""

    first_read: float | None = None
    last_read: float | None = None
    done_parts: int = 0


class _UntilTipPartition(StatefulSourcePartition[tuple[str, Event], Any]):
    """Delegates to the real partition until it has delivered `expected` events, then ends."""

    def __init__(
        self, inner: StatefulSourcePartition[tuple[str, Event], Any], expected: int, marks: Marks
    ) -> None:
        self._inner = inner
        self._left = expected
        self._marks = marks

    def next_batch(self) -> list[tuple[str, Event]]:
        marks = self._marks
        if self._left <= 0:
            marks.done_parts += 1
            marks.last_read = time.perf_counter()
            raise StopIteration
        if marks.first_read is None:
            marks.first_read = time.perf_counter()
        batch = list(self._inner.next_batch())
        self._left -= sum(1 for _, v in batch if type(v) is Event)  # not ticks nor probes
        return batch

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class UntilTip(FixedPartitionedSource[tuple[str, Event], Any]):
    """A finite view of a live `FixedPartitionedSource`: each partition ends after the number
    of events known to be in it (the streams are pre-loaded and nothing else writes)."""

    def __init__(
        self,
        inner: FixedPartitionedSource[tuple[str, Event], Any],
        expected: dict[str, int],
        marks: Marks,
    ) -> None:
        self._inner = inner
        self._expected = expected
        self._marks = marks
        self.stream_partitions = getattr(inner, "stream_partitions", None)  # how it keys

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _UntilTipPartition:
        inner = self._inner.build_part(step_id, for_part, resume_state)
        return _UntilTipPartition(inner, self._expected[for_part], self._marks)


# --- the bare flow -------------------------------------------------------------------------


class _DictLogic(StatefulBatchLogic[Event, bytes, dict[str, int]]):
    """The issue's "dict state": a dict of event counts by name per customer; emits it
    msgpack-packed once per batch (the sink needs bytes, as nudge's does)."""

    def __init__(self, resume: dict[str, int] | None) -> None:
        self.counts: dict[str, int] = resume or {}

    def on_batch(self, values: list[Event]) -> tuple[Iterable[bytes], bool]:
        if type(values[0]) is not Event:  # the source's watermark ticks (their own key)
            return [], StatefulBatchLogic.DISCARD
        counts = self.counts
        for ev in values:
            label = ev.event or ev.type
            counts[label] = counts.get(label, 0) + 1
        return [_pack(counts)], StatefulBatchLogic.RETAIN

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


_pack = msgpack.Packer(use_bin_type=True).pack


class _MsetPartition(StatelessSinkPartition[tuple[str, bytes]]):
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix

    def write_batch(self, items: list[tuple[str, bytes]]) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.mset({f"{self._prefix}{{{cid}}}": n for cid, n in items})
        pipe.execute()

    def close(self) -> None:
        self._r.close()


class MsetSink(DynamicSink[tuple[str, bytes]]):
    """One MSET of every (customer, value) of a batch, in one pipeline."""

    def __init__(self, make_client: Callable[[], redis.Redis], prefix: str) -> None:
        self._make_client = make_client
        self._prefix = prefix

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MsetPartition:
        return _MsetPartition(self._make_client(), self._prefix)


def build_bare_flow(
    source: FixedPartitionedSource[tuple[str, Event], Any], sink: MsetSink
) -> Dataflow:
    # the same source as nudge's, which keys events by customer as it decodes them
    flow = Dataflow("bare")
    keyed = op.input("read_events", flow, source)
    counts = op.stateful_batch("count", keyed, _DictLogic)
    op.output("write_counts", counts, sink)
    return flow


# --- runs ----------------------------------------------------------------------------------


@dataclass(slots=True)
class RunResult:
    flow: str
    recovery: bool
    wall_s: float  # run_main, start to return
    startup_s: float  # run_main start → first read
    drain_s: float  # last partition ended → run_main returned (last writes, snapshot, close)
    rounds: int = 1
    others_cores: float = 0.0  # CPU cores kept busy by processes not ours (max over rounds)

    def rate(self, events: int) -> float:
        return events / (self.wall_s - self.startup_s)

    def wall_rate(self, events: int) -> float:
        return events / self.wall_s


def bare_prefix(keys: Keys) -> str:
    return f"{keys.base}:bare:"


def run_once(
    kind: str,
    recovery: bool,
    settings: Settings,
    work: Workload,
    client: redis.Redis,
    tmp: Path,
    watch: list[int],
    profiler: cProfile.Profile | None = None,
) -> RunResult:
    """Pre-load the streams, run one flow to the tip with one worker, check Redis."""
    keys = Keys(settings.key_prefix)
    preload(client, keys, work)
    marks = Marks()
    expected = {keys.events(p): n for p, n in work.per_partition.items()}
    source = UntilTip(redis_source(settings), expected, marks)
    if kind == "nudge":
        flow = build_flow(settings, source=source, recovery=recovery)
    else:
        sink = MsetSink(client_factory(settings.require_redis()), bare_prefix(keys))
        flow = build_bare_flow(source, sink)
    recovery_config = None
    if recovery:
        db = Path(tempfile.mkdtemp(prefix=f"recovery-{kind}-", dir=tmp))
        init_db_dir(db, settings.recovery_partitions)  # type: ignore[no-untyped-call]
        recovery_config = RecoveryConfig(str(db))  # type: ignore[no-untyped-call]
    epoch = timedelta(seconds=settings.epoch_s)
    if profiler is not None:
        profiler.enable()
    with CpuWindow(watch) as window:
        start = time.perf_counter()
        run_main(flow, epoch_interval=epoch, recovery_config=recovery_config)  # type: ignore[no-untyped-call]
        end = time.perf_counter()
    if profiler is not None:
        profiler.disable()
    if marks.first_read is None or marks.last_read is None:
        raise RuntimeError(f"{kind}: the source was never read")
    if marks.done_parts != len(expected):
        raise RuntimeError(f"{kind}: {marks.done_parts} of {len(expected)} partitions ended")
    check(kind, client, keys, work)
    return RunResult(
        kind,
        recovery,
        end - start,
        marks.first_read - start,
        end - marks.last_read,
        others_cores=window.others_cores,
    )


def get_many(client: redis.Redis, names: list[Any]) -> list[Any]:
    """MGET, or its per-slot split on a Redis Cluster."""
    if is_cluster(client):
        return list(client.mget_nonatomic(names))  # type: ignore[attr-defined]
    return list(client.mget(names))


def check(kind: str, client: redis.Redis, keys: Keys, work: Workload) -> None:
    """Every customer written, every event counted (after dedupe, for nudge)."""
    if kind == "nudge":
        pattern = keys.profile("*")
        found = total = 0
        names = list(client.scan_iter(match=pattern, count=5000))
        for i in range(0, len(names), 5000):
            for blob in get_many(client, names[i : i + 5000]):
                if isinstance(blob, bytes):
                    found += 1
                    total += sum(decode_profile(blob).counts.values())
        want = work.distinct_events
    else:
        found = total = 0
        prefix = bare_prefix(keys)
        names = list(client.scan_iter(match=prefix + "*", count=5000))
        for i in range(0, len(names), 5000):
            values = get_many(client, names[i : i + 5000])
            found += len(values)
            total += sum(sum(msgpack.unpackb(v).values()) for v in values if isinstance(v, bytes))
        want = work.events
    if found != work.customers or total != want:
        raise RuntimeError(
            f"{kind}: {found:,} customers written (want {work.customers:,}), "
            f"{total:,} events counted (want {want:,})"
        )


def run_variant(
    kind: str,
    recovery: bool,
    rounds: int,
    settings: Settings,
    work: Workload,
    client: redis.Redis,
    tmp: Path,
    watch: list[int],
) -> RunResult:
    """`rounds` runs; the median of each time."""
    runs = [run_once(kind, recovery, settings, work, client, tmp, watch) for _ in range(rounds)]
    return RunResult(
        kind,
        recovery,
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.startup_s for r in runs),
        statistics.median(r.drain_s for r in runs),
        rounds,
        max(r.others_cores for r in runs),
    )


def profile(
    kind: str,
    settings: Settings,
    work: Workload,
    client: redis.Redis,
    tmp: Path,
    watch: list[int],
    top: int,
    recovery: bool = False,
) -> str:
    """cProfile of one run (Python side of the worker thread only; time spent in Bytewax's
    Rust code, pickling and writing snapshots included, shows as `run_main`)."""
    prof = cProfile.Profile()
    run_once(kind, recovery, settings, work, client, tmp, watch, profiler=prof)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.dataflow", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="runs per variant; medians (default 3)")
    p.add_argument(
        "--entry-events",
        type=int,
        default=1000,
        help="calls per simulated /v1/batch request; each gives one entry per partition "
        "(default 1000, i.e. ~250 events per entry with 4 partitions)",
    )
    p.add_argument("--partitions", type=int, default=4, help="event stream partitions")
    p.add_argument("--read-events", type=int, default=None, help="NUDGE_READ_EVENTS override")
    p.add_argument("--epoch-s", type=float, default=None, help="NUDGE_EPOCH_S override")
    p.add_argument("--no-recovery-only", action="store_true", help="skip the recovery runs")
    p.add_argument(
        "--python-gc-defaults",
        action="store_true",
        help="keep CPython's default GC thresholds instead of `tune_gc()` (as `nudge dataflow`)",
    )
    p.add_argument("--aof", action="store_true", help="redis-server with appendonly yes")
    p.add_argument(
        "--no-products", action="store_true", help="NUDGE_PRODUCTS=false: no product index"
    )
    p.add_argument(
        "--no-triggers",
        action="store_true",
        help="NUDGE_TRIGGER_{CART,CHECKOUT,BROWSE}_S empty: no trigger rules (what they cost)",
    )
    p.add_argument("--profile", action="store_true", help="also print cProfile of both flows")
    p.add_argument("--profile-top", type=int, default=25, help="functions in each profile")
    p.add_argument(
        "--profile-recovery", action="store_true", help="profile the runs with recovery instead"
    )
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 10:
        p.error("--rounds must be 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header("nudge bench: dataflow (Redis Streams → Bytewax → profiles)", "bench.dataflow"))
    paths = [data_path(REES46), data_path(TAOBAO)]
    t0 = time.perf_counter()
    work = build_workload(paths, args.partitions, args.entry_events)
    sizes = [len(payload) for _, payload in work.entries]
    print(
        "workload  "
        + " + ".join(f"{name} {n:,}" for name, n in work.datasets)
        + f" = {work.events:,} events, {work.customers:,} customers, "
        f"{work.distinct_events:,} distinct (customer, messageId); {len(work.entries):,} "
        f"entries over {args.partitions} partitions (~{work.events / len(work.entries):.0f} "
        f"events, {statistics.mean(sizes) / 1024:.0f} KiB each); built in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    overrides: dict[str, Any] = {"partitions": args.partitions}
    if args.read_events is not None:
        overrides["read_events"] = args.read_events
    if args.epoch_s is not None:
        overrides["epoch_s"] = args.epoch_s
    if args.no_products:
        overrides["products"] = False
    if args.no_triggers:
        overrides.update(trigger_cart_s=(), trigger_checkout_s=(), trigger_browse_s=())
    if args.python_gc_defaults:
        gc_note = f"CPython defaults {gc.get_threshold()}, not frozen"
    else:
        tune_gc(DATAFLOW_YOUNG)  # as `nudge dataflow` does before running the flow; both flows
        gc_note = (
            f"config.runtime.tune_gc() as in `nudge dataflow`: thresholds {gc.get_threshold()}"
        )
    print(f"gc        {gc_note}")
    with tempfile.TemporaryDirectory(prefix="nudge-bench-dataflow-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis", aof=args.aof).start()
        try:
            settings = Settings(redis_url=server.url, **overrides)
            rules = [r for r, on in (("cart", settings.trigger_cart_s),
                                     ("checkout", settings.trigger_checkout_s),
                                     ("browse", settings.trigger_browse_s)) if on]  # fmt: skip
            print(
                f"features  NUDGE_PRODUCTS={str(settings.products).lower()}; trigger rules: "
                + (", ".join(rules) or "none")
            )
            print(
                f"redis     redis-server on {server.url}, "
                + ("AOF on (appendfsync everysec)" if args.aof else "AOF off (bench), no RDB saves")
            )
            print(
                f"flow      1 worker, in-process (bytewax.testing.run_main); about "
                f"{settings.read_events} events per XREAD, epoch {settings.epoch_s:g} s, "
                f"recovery partitions {settings.recovery_partitions}; {args.rounds} round(s)"
            )
            client = redis.Redis.from_url(server.url)
            assert server.proc is not None
            watch = [server.proc.pid]
            results = []
            for recovery in (False, True):
                if recovery and args.no_recovery_only:
                    continue
                for kind in ("nudge", "bare"):
                    results.append(
                        run_variant(kind, recovery, args.rounds, settings, work, client, tmp, watch)
                    )
            profiles = []
            if args.profile:
                for kind in ("nudge", "bare"):
                    profiles.append(
                        (
                            kind,
                            profile(
                                kind,
                                settings,
                                work,
                                client,
                                tmp,
                                watch,
                                args.profile_top,
                                recovery=args.profile_recovery,
                            ),
                        )
                    )
            client.close()
        finally:
            server.stop()
    report(work, results)
    mode = "with recovery" if args.profile_recovery else "no recovery"
    for kind, text in profiles:
        print(f"\n== cProfile, {kind} flow, {mode} (tottime; cProfile slows Python code)")
        print(text.rstrip())
    return 0


def report(work: Workload, results: list[RunResult]) -> None:
    bare = {r.recovery: r for r in results if r.flow == "bare"}
    rows = []
    for r in results:
        ref = bare.get(r.recovery)
        ratio = f"{r.rate(work.events) / ref.rate(work.events):.2f}" if ref else "-"
        rows.append(
            [
                "nudge (build_flow)" if r.flow == "nudge" else "bare (source→key→dict→MSET)",
                "on" if r.recovery else "off",
                f"{r.rate(work.events):,.0f}",
                f"{r.wall_rate(work.events):,.0f}",
                ratio,
                f"{r.wall_s:.2f}",
                f"{r.startup_s:.2f}",
                f"{r.drain_s:.2f}",
            ]
        )
    print()
    print(
        table(
            rows,
            [
                "flow (1 worker)",
                "recovery",
                "events/s",
                "incl. start-up",
                "ratio to bare",
                "wall s",
                "start-up s",
                "drain s",
            ],
        )
    )
    print(
        "\nevents/s = events / (wall - start-up); start-up = run_main call → first XREAD; "
        "drain = last partition ended → run_main returned (last writes, final snapshot).\n"
        f"checked   every run: {work.customers:,} customers written; nudge profiles count "
        f"{work.distinct_events:,} events (duplicates once), bare values sum to {work.events:,}"
    )
    others = max(r.others_cores for r in results)
    note = "  WARNING: figures are biased low" if others > 0.1 else ""
    print(f"others    processes not ours kept up to {others:.2f} cores busy during a run{note}")
    for rec in (True, False):
        nudge = next((r for r in results if r.flow == "nudge" and r.recovery == rec), None)
        ref = bare.get(rec)
        if nudge is None or ref is None:
            continue
        rate = nudge.rate(work.events)
        share = rate / ref.rate(work.events)
        label = "with recovery" if rec else "without recovery"
        print(
            f"target    dataflow ≥ {TARGET:,} events/s per worker ({label}): "
            f"{'met' if rate >= TARGET else 'NOT met'} ({rate:,.0f}); "
            f"at least half the bare flow: {'met' if share >= TARGET_RATIO else 'NOT met'} "
            f"({share:.2f})"
        )


if __name__ == "__main__":
    sys.exit(main())
