"""The cost of identity stitching: the same replay through the nudge dataflow with
``NUDGE_IDENTITY`` on and off, in one run.

``python -m bench.identity [--rounds 3] [--partitions 4] [--every-session]``

The replay is REES46 as a shop with logins sees it (`cli.datasets.with_late_logins`: each
session browses anonymously until its first cart change or order, then an ``identify`` links
the session to the user and both ids travel from then on; with ``--every-session`` each
session signs in at its first event) followed by the Taobao slice (user ids
only). With identity on, every login is a merge: a LINK request and a JOIN reply loop through
the Redis streams, the anonymous session's state moves to the user's, and the session's id
becomes a pointer. With identity off, each id is its own customer.

Both variants pre-load the same stream entries and run `dataflows.flow.build_flow` with one
worker in this process. The streams are live and the identity run writes its control records
into them while it runs, so each run ends once every partition has delivered its pre-loaded
entries and nothing new has arrived for `IDLE_S`; the rate is events / (last entry read -
first entry read). Recovery is off: on this short replay, whether one of Bytewax's snapshot
pauses (about a second for 60k customers) falls inside a run or after it would decide the
figure, and that measures epoch alignment, not identity (`bench.dataflow` measures recovery).

The table also shows how long the run went on after the last pre-loaded entry had been read:
control records written during the run queue behind the pre-loaded backlog, so the last merges
complete after it (work deferred, which this rate counts). Each run is checked
against Redis: every event counted once, the expected number of customers, and (identity on) a
link for every id merged into another.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import run_main

from bench.dataflow import Workload, lay_out, preload
from bench.machine import REES46, TAOBAO, CpuWindow, data_path, header, table
from cli.datasets import LOGIN_EVENTS, read_calls, with_late_logins
from cli.embedded import RedisServer
from config import Settings
from config.runtime import DATAFLOW_YOUNG, tune_gc
from dataflows.flow import build_flow, redis_source
from models.events import Event
from models.identity import Control
from models.keys import Keys
from models.profile import decode_profile
from models.segment import normalize

MAX_COST: Final = 0.20  # identity may cost at most 20% of the throughput
IDLE_S: Final = 0.5


@dataclass(slots=True)
class Expect:
    customers_on: int  # canonical customers with identity on
    customers_off: int  # ids with identity off
    links: int  # ids merged into another one
    distinct: int  # distinct messageIds (what profiles count)


def build(partitions: int, request_events: int, every: bool) -> tuple[Workload, Expect]:
    now = time.time_ns() // 1_000_000
    login_on = None if every else LOGIN_EVENTS
    calls = [c for _, c in with_late_logins(read_calls(data_path(REES46)), login_on)]
    n_rees = len(calls)
    calls += [c for _, c in read_calls(data_path(TAOBAO))]
    events = [normalize(c, received_at=now, new_id=lambda: "unused") for c in calls]
    # the customers: ids carried by one event are one customer (union-find)
    parent: dict[str, str] = {}

    def find(i: str) -> str:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for e in events:
        ids = [i for i in (e.user_id, e.anonymous_id, e.previous_id) if i]
        head = find(ids[0])
        for other in ids[1:]:
            parent[find(other)] = head
    groups = len({find(i) for i in parent})
    seen = {e.message_id for e in events}
    entries, per_partition = lay_out(events, partitions, request_events)
    keyed = {e.customer_key for e in events}
    work = Workload(
        entries, per_partition, len(events), groups, len(seen),
        datasets=[("rees46 with logins", n_rees), ("taobao", len(events) - n_rees)],
    )  # fmt: skip
    return work, Expect(groups, len(keyed), len(parent) - groups, len(seen))


@dataclass(slots=True)
class Marks:
    first: float | None = None
    last: float = 0.0  # last non-empty read, any partition
    at_tip: set[str] | None = None
    tip: float | None = None  # when every partition had delivered its pre-loaded events


class _Quiescent(StatefulSourcePartition[Any, Any]):
    def __init__(
        self, inner: Any, name: str, expected: int, parts: int, marks: Marks, idle_s: float
    ) -> None:
        self._inner, self._name, self._left, self._parts, self._m, self._idle = (
            inner, name, expected, parts, marks, idle_s,
        )  # fmt: skip

    def next_batch(self) -> list[Any]:
        m = self._m
        now = time.perf_counter()
        assert m.at_tip is not None
        if self._left <= 0:
            m.at_tip.add(self._name)
            if m.tip is None and len(m.at_tip) == self._parts:
                m.tip = now
        if len(m.at_tip) == self._parts and now - m.last > self._idle:
            raise StopIteration
        batch = list(self._inner.next_batch())
        # only events and control records count as arrivals: the partitions' watermark ticks
        # (and freshness probes) keep coming while the streams are idle, and counted, they
        # kept the run from ever ending
        if any(type(v) is Event or type(v) is Control for _, v in batch):
            if m.first is None:
                m.first = now
            m.last = time.perf_counter()
            self._left -= sum(1 for _, v in batch if type(v) is Event)
        return batch

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()  # type: ignore[no-any-return]

    def snapshot(self) -> Any:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


class Quiescent(FixedPartitionedSource[Any, Any]):
    """Ends every partition once all have delivered their pre-loaded events and no entry at
    all (events or control records) has arrived for `idle_s`."""

    def __init__(self, inner: Any, expected: dict[str, int], marks: Marks, idle_s: float) -> None:
        self._inner, self._expected, self._m, self._idle = inner, expected, marks, idle_s
        self.stream_partitions = getattr(inner, "stream_partitions", None)  # how it keys
        marks.at_tip = set()

    def list_parts(self) -> list[str]:
        return self._inner.list_parts()  # type: ignore[no-any-return]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Quiescent:
        inner = self._inner.build_part(step_id, for_part, resume_state)
        return _Quiescent(
            inner, for_part, self._expected[for_part], len(self._expected), self._m, self._idle
        )


def run_once(
    identity: bool, settings: Settings, work: Workload, expect: Expect, client: redis.Redis,
    watch: list[int],
) -> tuple[float, float, float]:  # fmt: skip
    """One run; (events/s, seconds after the backlog, CPU cores others used)."""
    settings = settings.model_copy(update={"identity": identity})
    keys = Keys(settings.key_prefix)
    preload(client, keys, work)
    marks = Marks()
    expected = {keys.events(p): n for p, n in work.per_partition.items()}
    source = Quiescent(redis_source(settings, recovery=False), expected, marks, IDLE_S)
    flow = build_flow(settings, source=source, recovery=False)
    with CpuWindow(watch) as window:
        run_main(flow, epoch_interval=timedelta(seconds=settings.epoch_s))  # type: ignore[no-untyped-call]
    assert marks.first is not None
    check(identity, client, keys, expect)
    assert marks.tip is not None
    tail = max(0.0, marks.last - marks.tip)
    return work.events / (marks.last - marks.first), tail, window.others_cores


def check(identity: bool, client: redis.Redis, keys: Keys, expect: Expect) -> None:
    found = total = 0
    names = list(client.scan_iter(match=keys.profile("*"), count=5000))
    for i in range(0, len(names), 5000):
        for blob in client.mget(names[i : i + 5000]):
            if isinstance(blob, bytes):
                found += 1
                total += sum(decode_profile(blob).counts.values())
    links = sum(1 for _ in client.scan_iter(match=keys.link("*"), count=5000))
    want = expect.customers_on if identity else expect.customers_off
    want_links = expect.links if identity else 0
    if (found, total, links) != (want, expect.distinct, want_links):
        raise RuntimeError(
            f"identity {'on' if identity else 'off'}: {found:,} customers (want {want:,}), "
            f"{total:,} events counted (want {expect.distinct:,}), {links:,} links "
            f"(want {want_links:,})"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.identity", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="runs per variant; medians (default 3)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--entry-events", type=int, default=1000, help="calls per simulated request")
    p.add_argument(
        "--every-session",
        action="store_true",
        help="every REES46 session signs in at its first event (default: at its first cart "
        "change or order)",
    )
    args = p.parse_args(argv)
    print(header("nudge bench: identity stitching cost (dataflow, on vs off)", "bench.identity"))
    work, expect = build(args.partitions, args.entry_events, args.every_session)
    print(
        "workload  " + " + ".join(f"{name} {n:,}" for name, n in work.datasets)
        + f" = {work.events:,} events; {expect.links:,} ids merged into another (logins); "
        f"{expect.customers_off:,} ids → {expect.customers_on:,} customers"
    )  # fmt: skip
    tune_gc(DATAFLOW_YOUNG)
    rates: dict[bool, list[float]] = {True: [], False: []}
    tails: dict[bool, list[float]] = {True: [], False: []}
    others = 0.0
    with tempfile.TemporaryDirectory(prefix="nudge-bench-identity-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis", aof=False).start()
        try:
            # no freshness probes: a run ends once no entry has arrived for IDLE_S
            settings = Settings(redis_url=server.url, partitions=args.partitions, probe_s=0)
            print(f"flow      1 worker in-process, recovery off; {args.rounds} round(s), "
                  "alternating")  # fmt: skip
            client = redis.Redis.from_url(server.url)
            assert server.proc is not None
            for _ in range(args.rounds):
                for identity in (False, True):  # alternate: drift hits both alike
                    rate, tail, busy = run_once(identity, settings, work, expect, client,
                                                [server.proc.pid])  # fmt: skip
                    rates[identity].append(rate)
                    tails[identity].append(tail)
                    others = max(others, busy)
            client.close()
        finally:
            server.stop()
    # each round runs off then on, a second apart: the ratio within a round is immune to the
    # VM's minute-to-minute speed drift, which the medians are not
    pairs = [n / f for f, n in zip(rates[False], rates[True], strict=True)]
    cost = 1 - statistics.median(pairs)
    print(table(
        [[name, f"{statistics.median(rates[v]):,.0f}", " ".join(f"{r:,.0f}" for r in rates[v]),
          f"{statistics.median(tails[v]) * 1000:.0f}"]
         for name, v in (("identity off", False), ("identity on", True))],
        ["flow", "events/s (median)", "rounds", "ms after the backlog (median)"],
    ))  # fmt: skip
    verdict = "met" if cost <= MAX_COST else "NOT met"
    print("on/off per round: " + " ".join(f"{r:.2f}" for r in pairs))
    print(f"cost of identity stitching: {cost:.1%} of throughput, median of the per-round "
          f"ratios (target ≤ {MAX_COST:.0%}: "
          f"{verdict}); other processes kept up to {others:.2f} cores busy")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
