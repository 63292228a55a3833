"""Chaos: `nudge dataflow` SIGKILLed mid-replay, and Redis restarted under ingest with AOF on.

``python -m bench.chaos [--seed 1] [--kills 10] [--feed-s 40] [--fraction 1] [--skip-redis]``

1. The dataflow killed. The REES46 + Taobao replay of `bench.dataflow` (normalised as the API
   does, laid out as `api.store.Store` writes it: one entry per partition per request of
   `--entry-events` calls) is XADDed progressively, at a constant rate over `--feed-s` seconds,
   while the real `nudge dataflow` process (one process, one worker, recovery on with a fresh
   NUDGE_RECOVERY_DIR, its own NUDGE_KEY_PREFIX, NUDGE_METRICS_PORT=0) reads it. At `--kills`
   moments drawn with a seeded RNG, its process group gets SIGKILL and it is restarted at once;
   the feed never pauses, so events arrive while it is down. A kill waits, if need be, until
   the previous restart reads again (reported progress on every partition). Once the feed is over
   and the dataflow has read every partition to its tip, EVERY profile is compared with the
   reference: the same entries, pre-loaded, through one uninterrupted `nudge dataflow` (own key
   prefix), itself checked against event counts computed directly from the workload. Compared:
   per-customer event counts (lost = short of the reference, twice = above it), cart, orders,
   revenue, and the whole profile blob byte for byte; also that no trigger id was appended
   twice.
2. Redis restarted. A redis-server with ``--appendonly yes --appendfsync always`` (acknowledged
   events survive a kill only if Redis fsyncs before it answers; ``everysec`` answers first and
   fsyncs once a second) takes events from the real ingest API (`nudge api`, one uvicorn
   worker) posted as Segment ``/v1/batch`` requests by `--clients` concurrent clients, each
   event with its own messageId; a batch that is not answered 200 is sent again, as Segment's
   libraries do. In the middle, Redis gets SIGTERM or SIGKILL, stays down `--down-s` and is
   started again on the same port and directory (it reloads the AOF). At the end every entry of
   the event streams is decoded (`models.codec.decode_entry`): every messageId answered 200
   must be there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import redis

from bench.dataflow import Workload, normalized, workload_of
from bench.ingest import start_api
from bench.machine import (
    REES46,
    TAOBAO,
    CpuWindow,
    cpu_seconds,
    data_path,
    header,
    stop_process,
    table,
    tail,
)
from cli.datasets import read_calls
from cli.embedded import RedisServer, free_port
from cli.status import snapshot, wait_caught_up
from models.codec import ENTRY_FIELD, decode_entry
from models.events import Event
from models.keys import Keys
from models.profile import Profile, decode_profile
from models.progress import OpsSnapshot

ROOT: Final = Path(__file__).resolve().parents[1]
PARTITIONS: Final = 4
CAUGHT_UP_LAG_MS: Final = 500  # stream lag under which a restarted dataflow has caught up
REDIS_RUNS: Final = "always:TERM,always:KILL,everysec:KILL"
SIGNALS: Final = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}


# --- our processes and their CPU -----------------------------------------------------------


class Ours:
    """CPU seconds used by the processes this bench started, the killed ones included (read
    just before the kill), so that the others' share of the machine can be told apart."""

    def __init__(self) -> None:
        self._base: dict[int, float] = {}
        self._gone = 0.0

    def add(self, pid: int, started_now: bool = True) -> None:
        self._base[pid] = 0.0 if started_now else cpu_seconds(pid)

    def going(self, pid: int) -> None:
        """`pid` is about to be killed: keep what it used."""
        if pid in self._base:
            self._gone += max(0.0, cpu_seconds(pid) - self._base.pop(pid))

    def seconds(self) -> float:
        return self._gone + sum(max(0.0, cpu_seconds(p) - b) for p, b in self._base.items())


def others_cores(window: CpuWindow, ours: Ours) -> float:
    """Cores kept busy by processes that are not the bench's over `window`."""
    return max(0.0, window.others_cores - ours.seconds() / max(1e-9, window.seconds))


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Dataflow:
    """`nudge dataflow` (one process, one worker) in a session of its own, so that a kill
    reaches its whole process group; its output goes to a log file per start."""

    def __init__(self, env: dict[str, str], logs: Path, name: str, ours: Ours) -> None:
        self.env = env
        self.logs = logs
        self.name = name
        self.ours = ours
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> int:
        """Start it; the wall clock (ms) just before, to tell its reports from older ones."""
        self.starts += 1
        wall_ms = time.time_ns() // 1_000_000
        with (self.logs / f"{self.name}-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "dataflow", "-w", "1"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.ours.add(self.proc.pid)
        return wall_ms

    def kill(self) -> None:
        """SIGKILL to the process group, and reap."""
        assert self.proc is not None
        self.ours.going(self.proc.pid)
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGINT (a clean stop), then SIGKILL if it lingers."""
        if self.proc is None:
            return
        self.ours.going(self.proc.pid)
        if self.proc.poll() is None:  # (the group is signalled only before its leader is reaped)
            _signal_group(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- part 1: the dataflow killed mid-replay ------------------------------------------------


def load_workload(fraction: float, request_events: int) -> tuple[Workload, list[Event]]:
    """`bench.dataflow.build_workload`, on the first `fraction` of each dataset; the events
    too (for the direct count)."""
    events, datasets = normalized([data_path(REES46), data_path(TAOBAO)], fraction)
    return workload_of(events, datasets, PARTITIONS, request_events), events


def direct_counts(events: list[Event]) -> dict[str, dict[str, int]]:
    """Events per customer and name, straight from the workload: a messageId counts once per
    customer (what `models.customer.step` deduplicates)."""
    seen: set[tuple[str, str]] = set()
    out: dict[str, dict[str, int]] = {}
    for ev in events:
        key = (ev.customer_key, ev.message_id)
        if key in seen:
            continue
        seen.add(key)
        counts = out.setdefault(ev.customer_key, {})
        counts[ev.label] = counts.get(ev.label, 0) + 1
    return out


def xadd_entries(client: redis.Redis, keys: Keys, entries: list[tuple[int, bytes]]) -> None:
    """XADD `entries` in order, pipelined, as `api.store.Store._xadd` lays them out."""
    pipe = client.pipeline(transaction=False)
    for part, payload in entries:
        pipe.xadd(keys.events(part), {ENTRY_FIELD: payload})
        if len(pipe) >= 200:
            pipe.execute()
    pipe.execute()


def dataflow_env(url: str, prefix: str, recovery: Path, read_events: int | None) -> dict[str, str]:
    env = {
        **_base_env(),
        "NUDGE_REDIS_URL": url, "NUDGE_KEY_PREFIX": prefix, "NUDGE_PARTITIONS": str(PARTITIONS),
        "NUDGE_METRICS_PORT": "0", "NUDGE_RECOVERY_DIR": str(recovery), "NUDGE_LOG_FORMAT": "text",
    }  # fmt: skip
    if read_events is not None:
        env["NUDGE_READ_EVENTS"] = str(read_events)
    return env


def read_profiles(client: redis.Redis, keys: Keys) -> dict[str, bytes]:
    """Every profile blob of the key space, by customer id."""
    head, tail = len(keys.profile("")) - len("}:profile"), len("}:profile")
    names: list[bytes] = list(client.scan_iter(match=keys.profile("*"), count=5000))
    out: dict[str, bytes] = {}
    for i in range(0, len(names), 5000):
        chunk = names[i : i + 5000]
        for name, blob in zip(chunk, client.mget(chunk), strict=True):
            if isinstance(blob, bytes):
                out[name.decode()[head:-tail]] = blob
    return out


def until(seconds: float, probe: Any, every: float = 0.5) -> Any:
    """Call `probe()` until it returns something true or `seconds` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


@dataclass(slots=True)
class Totals:
    customers: int = 0
    events: int = 0
    cart_quantity: float = 0.0
    cart_value: float = 0.0
    orders: int = 0
    revenue: float = 0.0

    def add(self, p: Profile) -> None:
        self.customers += 1
        self.events += sum(p.counts.values())
        self.cart_quantity += sum(q for q, _ in p.cart.values())
        self.cart_value += sum(q * price for q, price in p.cart.values())
        self.orders += p.orders
        self.revenue += p.revenue


@dataclass(slots=True)
class Comparison:
    """The profiles after the kills against the reference's, customer by customer."""

    ref: Totals = field(default_factory=Totals)
    got: Totals = field(default_factory=Totals)
    checked: int = 0  # customers present on both sides
    missing: int = 0  # in the reference, not after the kills
    extra: int = 0  # the other way round
    lost: int = 0  # events short of the reference, over all customers
    twice: int = 0  # events above it
    counts_differ: int = 0
    commerce_differ: int = 0  # cart, orders or revenue
    bytes_differ: int = 0
    fields_differ: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.lost or self.twice or self.counts_differ
                    or self.commerce_differ or self.bytes_differ)  # fmt: skip


def compare(ref: dict[str, bytes], got: dict[str, bytes]) -> Comparison:
    c = Comparison()
    c.missing = len(ref.keys() - got.keys())
    c.extra = len(got.keys() - ref.keys())
    for cid in sorted(ref.keys() - got.keys())[:3]:
        c.examples.append(f"{cid}: no profile after the kills")
    for cid in sorted(got.keys() - ref.keys())[:3]:
        c.examples.append(f"{cid}: a profile the reference does not have")
    for cid, blob in got.items():
        if cid not in ref:
            c.got.add(decode_profile(blob))
    for cid, rblob in ref.items():
        r = decode_profile(rblob)
        c.ref.add(r)
        gblob = got.get(cid)
        if gblob is None:
            c.lost += sum(r.counts.values())
            continue
        g = decode_profile(gblob)
        c.got.add(g)
        c.checked += 1
        rn, gn = sum(r.counts.values()), sum(g.counts.values())
        c.lost += max(0, rn - gn)
        c.twice += max(0, gn - rn)
        c.counts_differ += r.counts != g.counts
        commerce = (
            r.cart != g.cart
            or r.orders != g.orders
            or abs(r.revenue - g.revenue) > 1e-6 * max(1.0, abs(r.revenue))
        )
        c.commerce_differ += commerce
        if rblob != gblob:
            c.bytes_differ += 1
            names = [f.name for f in dataclasses.fields(Profile)
                     if getattr(r, f.name) != getattr(g, f.name)]  # fmt: skip
            c.fields_differ.update(names or ["(encoding)"])
            if len(c.examples) < 6:
                diff = "; ".join(
                    f"{n}: {getattr(r, n)!r:.80} != {getattr(g, n)!r:.80}" for n in names[:3]
                )
                c.examples.append(f"{cid}: {diff or 'same fields, different bytes'}")
    return c


def check_reference(
    ref: dict[str, bytes], direct: dict[str, dict[str, int]], work: Workload
) -> list[str]:
    """The reference run against the workload: one profile per customer, counts as computed
    directly."""
    bad = []
    if len(ref) != work.customers:
        bad.append(f"{len(ref):,} profiles for {work.customers:,} customers")
    for cid, counts in direct.items():
        blob = ref.get(cid)
        got = decode_profile(blob).counts if blob is not None else None
        if got != counts:
            bad.append(f"{cid}: counts {got} != {counts} (direct)")
            if len(bad) > 5:
                break
    return bad


def trigger_ids(client: redis.Redis, keys: Keys) -> Counter[str]:
    """How many times each trigger id is in the triggers stream."""
    out: Counter[str] = Counter()
    low = "-"
    while True:
        chunk: Any = client.xrange(keys.triggers(), min=low, max="+", count=2000)
        if not chunk:
            return out
        for _, fields in chunk:
            out[fields.get(b"id", b"?").decode()] += 1
        low = "(" + chunk[-1][0].decode()


@dataclass(slots=True)
class Kill:
    planned_s: float  # drawn by the RNG, since the feed started
    at_s: float = 0.0  # when it was sent
    fed: float = 0.0  # share of the workload's events XADDed by then
    fed_down: int = 0  # events XADDed between the kill and the restart reading again
    behind: int | None = None  # entries the dataflow had not read (last report)
    lag_ms: int | None = 0  # stream lag then (None: a partition not read at all yet)
    up_s: float | None = None  # restart → reading again (reported on every partition)
    caught_up_s: float | None = None  # restart → stream lag ≤ CAUGHT_UP_LAG_MS


@dataclass(slots=True)
class ChaosRun:
    kills: list[Kill]
    feed_s: float  # the feed's actual duration
    total_s: float  # feed start → every partition read to its tip, after the last restart
    first_up_s: float | None
    reread: int  # progress reports' events read, all runs, minus the workload's events
    triggers: int
    triggers_twice: int
    comparison: Comparison
    settle_s: float  # caught up → profiles equal to the reference (or the timeout)
    others: float


def reference_run(
    url: str, client: redis.Redis, work: Workload, tmp: Path,
    read_events: int | None, timeout: float,
) -> tuple[dict[str, bytes], float]:  # fmt: skip
    """The workload pre-loaded, one uninterrupted `nudge dataflow`: its profiles and wall time."""
    keys = Keys("chaosref")
    xadd_entries(client, keys, work.entries)
    env = dataflow_env(url, keys.prefix, tmp / "recovery-ref", read_events)
    df = Dataflow(env, tmp, "dataflow-ref", Ours())
    start = time.monotonic()
    df.start()
    try:
        if not wait_caught_up(client, keys, PARTITIONS, timeout=timeout):
            raise RuntimeError(f"reference: the dataflow did not read the replay in {timeout:g} s")

        def complete() -> dict[str, bytes] | None:
            profiles = read_profiles(client, keys)
            total = sum(sum(decode_profile(b).counts.values()) for b in profiles.values())
            ok = len(profiles) == work.customers and total == work.distinct_events
            return profiles if ok else None

        profiles = until(60, complete)
        elapsed = time.monotonic() - start
        if not df.alive():
            raise RuntimeError("reference: the dataflow exited")
    finally:
        df.stop()
    if not profiles:
        raise RuntimeError("reference: the profiles did not reach the workload's counts")
    return profiles, elapsed


def chaos_run(
    url: str, client: redis.Redis, work: Workload, tmp: Path, redis_pid: int,
    ref: dict[str, bytes], args: argparse.Namespace,
) -> ChaosRun:  # fmt: skip
    """Feed the workload progressively; SIGKILL and restart the dataflow at the drawn moments;
    then compare every profile with the reference."""
    keys = Keys("chaos")
    rng = random.Random(args.seed)
    kills = [Kill(rng.uniform(0.05, 0.9) * args.feed_s) for _ in range(args.kills)]
    kills.sort(key=lambda k: k.planned_s)
    env = dataflow_env(url, keys.prefix, tmp / "recovery-chaos", args.read_events)
    ours = Ours()
    ours.add(redis_pid, started_now=False)
    df = Dataflow(env, tmp, "dataflow-chaos", ours)
    entries = work.entries
    # events in the entries up to each index, for the shares fed
    upto = [0, *itertools.accumulate(len(decode_entry(payload)) for _, payload in entries)]
    fed = 0
    pending = iter(kills)
    nxt = next(pending, None)
    current: Kill | None = None  # the kill whose restart is being timed
    first_up_s: float | None = None
    with CpuWindow() as window:
        t0 = time.monotonic()
        spawn_ms, spawn_s = df.start(), 0.0
        up = False
        feed_end = 0.0
        killed_at = 0  # entries fed at the last kill
        try:
            while fed < len(entries) or nxt is not None:
                now = time.monotonic() - t0
                due = min(len(entries), int(len(entries) * now / args.feed_s) + 1)
                if fed < due:
                    xadd_entries(client, keys, entries[fed:due])
                    fed = due
                    if fed == len(entries):
                        feed_end = now
                snap = snapshot(client, keys, PARTITIONS)
                if not df.alive():
                    raise RuntimeError(f"the dataflow exited by itself:\n{_log_tail(df)}")
                reported = all((p.reported_ms or 0) >= spawn_ms for p in snap.partitions)
                lag_ms = lag(snap)
                if reported and not up:
                    up = True
                    if current is None:
                        first_up_s = now - spawn_s
                    else:
                        current.up_s = now - spawn_s
                        current.fed_down = upto[fed] - upto[killed_at]
                if (
                    up
                    and current is not None
                    and current.caught_up_s is None
                    and lag_ms is not None
                    and lag_ms <= CAUGHT_UP_LAG_MS
                ):
                    current.caught_up_s = now - spawn_s
                if nxt is not None and now >= nxt.planned_s and up:
                    nxt.at_s, nxt.fed, killed_at = now, upto[fed] / work.events, fed
                    nxt.behind, nxt.lag_ms = snap.behind(), lag_ms
                    df.kill()
                    spawn_ms, spawn_s, up = df.start(), time.monotonic() - t0, False
                    current, nxt = nxt, next(pending, None)
                time.sleep(0.02)
            # the last start must have read to the tip itself (its predecessor may have)
            restarted = until(
                args.timeout,
                lambda: all(
                    (p.reported_ms or 0) >= spawn_ms
                    for p in snapshot(client, keys, PARTITIONS).partitions
                ),
                0.02,
            )
            if not restarted or not wait_caught_up(client, keys, PARTITIONS, timeout=args.timeout):
                raise RuntimeError(f"the dataflow did not catch up in {args.timeout:g} s")
            total_s = time.monotonic() - t0
            if current is not None:  # the last restart, if it had no time to show it
                if current.up_s is None:
                    current.up_s = total_s - spawn_s
                    current.fed_down = upto[fed] - upto[killed_at]
                if current.caught_up_s is None:
                    current.caught_up_s = total_s - spawn_s
            settle0 = time.monotonic()
            found = until(args.timeout, lambda: _equal(ref, read_profiles(client, keys)), 1.0)
            # if they never became equal: compare once more, for the report
            comparison = found or compare(ref, read_profiles(client, keys))
            settle_s = time.monotonic() - settle0
            if not df.alive():
                raise RuntimeError(f"the dataflow exited by itself:\n{_log_tail(df)}")
            events_read = snapshot(client, keys, PARTITIONS).events()
        finally:
            df.stop()
    trig = trigger_ids(client, keys)
    return ChaosRun(
        kills=kills,
        feed_s=feed_end,
        total_s=total_s,
        first_up_s=first_up_s,
        reread=events_read - work.events,
        triggers=sum(trig.values()),
        triggers_twice=sum(n - 1 for n in trig.values() if n > 1),
        comparison=comparison,
        settle_s=settle_s,
        others=others_cores(window, ours),
    )


def lag(snap: OpsSnapshot) -> int | None:
    """The stream lag of the partition furthest behind, in ms; None while one that holds entries
    has not been read at all (a restart without a snapshot to resume from reads from 0-0)."""
    if any(p.read == "0-0" and p.tip != "0-0" for p in snap.partitions):
        return None
    return snap.max_lag_ms()


def _equal(ref: dict[str, bytes], got: dict[str, bytes]) -> Comparison | None:
    c = compare(ref, got)
    return c if c.ok else None


def _log_tail(df: Dataflow) -> str:
    return tail(df.logs / f"{df.name}-{df.starts}.log")


def part_dataflow(args: argparse.Namespace, tmp: Path) -> bool:
    print()
    print(f"-- 1. `nudge dataflow` killed with SIGKILL {args.kills} times during a replay")
    t0 = time.perf_counter()
    work, events = load_workload(args.fraction, args.entry_events)
    direct = direct_counts(events)
    del events
    print(
        "workload  "
        + " + ".join(f"{name} {n:,}" for name, n in work.datasets)
        + f" = {work.events:,} events, {work.customers:,} customers, {work.distinct_events:,} "
        f"distinct (customer, messageId); {len(work.entries):,} entries over {PARTITIONS} "
        f"partitions (requests of {args.entry_events} calls); built in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    server = RedisServer(tmp / "redis-dataflow", aof=False).start()
    try:
        assert server.proc is not None
        client = redis.Redis.from_url(server.url)
        client.flushdb()
        print(f"redis     redis-server on {server.url}, AOF off (the dataflow is what is killed)")
        ref, ref_s = reference_run(server.url, client, work, tmp, args.read_events, args.timeout)
        bad_ref = check_reference(ref, direct, work)
        print(
            f"reference the same entries pre-loaded, one uninterrupted `nudge dataflow` (key "
            f"prefix chaosref): {len(ref):,} profiles in {ref_s:.1f} s; per-customer event "
            f"counts against a direct count of the workload: "
            + ("equal" if not bad_ref else f"{len(bad_ref)} DIFFER, e.g. {bad_ref[:2]}")
        )
        rate = work.events / args.feed_s
        print(
            f"feed      XADD of the entries in order, {rate:,.0f} events/s over {args.feed_s:g} s "
            f"(key prefix chaos), never paused"
        )
        print(
            f"flow      `nudge dataflow -w 1` (1 process), recovery on, fresh NUDGE_RECOVERY_DIR, "
            f"epoch 2 s (default); {args.kills} SIGKILLs to its process group at moments drawn "
            f"uniformly in [5%, 90%] of the feed (seed {args.seed}), restarted at once"
        )
        run = chaos_run(server.url, client, work, tmp, server.proc.pid, ref, args)
        client.close()
    finally:
        server.stop()
    return report_dataflow(run, work, bad_ref)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def report_dataflow(run: ChaosRun, work: Workload, bad_ref: list[str]) -> bool:
    rows = []
    for i, k in enumerate(run.kills, 1):
        held = f" (held {k.at_s - k.planned_s:.2f})" if k.at_s - k.planned_s > 0.1 else ""
        rows.append(
            [
                str(i),
                f"{k.at_s:.2f}{held}",
                f"{100 * k.fed:.0f}%",
                "?" if k.behind is None else f"{k.behind:,}",
                "from 0-0" if k.lag_ms is None else f"{k.lag_ms / 1000:.2f}",
                _s(k.up_s),
                f"{k.fed_down:,}",
                "killed first" if k.caught_up_s is None else f"{k.caught_up_s:.2f}",
            ]
        )
    print()
    print(
        table(
            rows,
            [
                "kill",
                "at s",
                "fed",
                "entries behind",
                "lag s",
                "reading again after s",
                "events fed meanwhile",
                f"caught up (lag ≤ {CAUGHT_UP_LAG_MS / 1000:g} s) after s",
            ],
        )
    )
    print(
        "columns   at: seconds since the feed began ('held': the kill waited for the previous "
        "restart to read again); fed: share of the workload's events in the streams; entries "
        "behind, lag: the dataflow's last progress report (every 0.2 s) before the kill ('from "
        "0-0': a partition not read yet since it started from the beginning, there being no "
        "snapshot to resume from); "
        "reading again: restart → progress reported on every partition; events fed meanwhile: "
        "XADDed while it was down; caught up: stream lag back under "
        f"{CAUGHT_UP_LAG_MS / 1000:g} s ('killed first': the next kill came before)"
    )
    ups = sorted(k.up_s for k in run.kills if k.up_s is not None)
    if ups:
        print(
            f"restarts  reading again {ups[0]:.2f} to {ups[-1]:.2f} s after the restart (median "
            f"{statistics.median(ups):.2f} s; the first start {_s(run.first_up_s)} s)"
        )
    equal = "equal to the reference" if run.comparison.ok else "compared (NOT equal)"
    print(
        f"timeline  feed over at {run.feed_s:.1f} s, every partition read to its tip at "
        f"{run.total_s:.1f} s, profiles {equal} {run.settle_s:.1f} s later"
    )
    c = run.comparison
    print()
    rows = [
        ["customers (profiles)", f"{c.ref.customers:,}", f"{c.got.customers:,}"],
        ["events counted", f"{c.ref.events:,}", f"{c.got.events:,}"],
        ["cart quantity, all carts", f"{c.ref.cart_quantity:,.0f}", f"{c.got.cart_quantity:,.0f}"],
        ["cart value, all carts", f"{c.ref.cart_value:,.2f}", f"{c.got.cart_value:,.2f}"],
        ["orders", f"{c.ref.orders:,}", f"{c.got.orders:,}"],
        ["revenue", f"{c.ref.revenue:,.2f}", f"{c.got.revenue:,.2f}"],
    ]
    print(table(rows, ["totals", "reference", f"after {len(run.kills)} kills"]))
    print()
    rows = [
        ["customers checked (profile on both sides)", f"{c.checked:,}"],
        ["profiles missing / extra", f"{c.missing} / {c.extra}"],
        ["events lost", f"{c.lost:,}"],
        ["events counted twice", f"{c.twice:,}"],
        ["customers whose event counts differ", f"{c.counts_differ:,}"],
        ["customers whose cart, orders or revenue differ", f"{c.commerce_differ:,}"],
        ["profiles not byte-identical to the reference", f"{c.bytes_differ:,}"],
        ["trigger ids appended twice", f"{run.triggers_twice} (of {run.triggers:,} triggers)"],
    ]
    print(table(rows, ["check (every customer)", "value"]))
    if c.fields_differ:
        print("fields    " + ", ".join(f"{n} {k:,}" for n, k in c.fields_differ.most_common()))
    for ex in c.examples:
        print(f"  e.g.    {ex}")
    print(
        f"re-read   {max(0, run.reread):,} events read more than once over the restarts (the "
        f"progress reports' events-read counter, all runs, minus the {work.events:,} fed; a "
        f"lower bound: a kill loses the last 0.2 s of counts): recovery resumed from the last "
        f"snapshot and read them again"
    )
    note = "  WARNING: timings biased" if run.others > 0.1 else ""
    print(f"others    processes not ours kept {run.others:.2f} cores busy during the run{note}")
    ok = c.ok and run.triggers_twice == 0 and not bad_ref
    print(
        f"result    {len(run.kills)} SIGKILLs, every profile as if it had never stopped: "
        + ("PASS" if ok else "FAIL")
    )
    return ok


# --- part 2: Redis restarted under ingest (AOF on) -----------------------------------------


def aof_load(server: RedisServer) -> str:
    """What a redis-server's log says about its last AOF load."""
    found = re.findall(r"DB loaded from append only file: ([0-9.]+) seconds",
                       tail(server.directory / "redis.log", 400))  # fmt: skip
    return f"{float(found[-1]) * 1000:.0f} ms" if found else "?"


@dataclass(slots=True)
class Restart:
    signal_at_s: float = 0.0  # since the clients started
    exit_s: float = 0.0  # signal → process gone
    down_s: float = 0.0  # signal → answering PING again (AOF loaded)
    entries_before: int = 0  # stream entries just before the signal
    entries_after: int = 0  # just after it answered again
    acked_before: int = 0  # events acknowledged before the signal


@dataclass(slots=True)
class RedisRun:
    fsync: str
    sig: str
    sent: int = 0  # distinct events the clients tried to send
    acked: set[str] = field(default_factory=set)
    attempts: int = 0  # requests
    refused: Counter[str] = field(default_factory=Counter)  # failed requests, by answer
    refused_first_s: float | None = None
    refused_last_s: float | None = None
    unacked_at_end: int = 0  # events of batches still unanswered when the clients stopped
    stored: Counter[str] = field(default_factory=Counter)  # messageId → times in the streams
    stored_foreign: int = 0
    restart: Restart = field(default_factory=Restart)
    aof_load: str = "?"
    deadletter: int = 0
    seconds: float = 0.0
    others: float = 0.0

    @property
    def present(self) -> int:
        return sum(1 for m in self.acked if m in self.stored)

    @property
    def missing(self) -> int:
        return len(self.acked) - self.present

    @property
    def twice(self) -> int:
        return sum(1 for n in self.stored.values() if n > 1)

    @property
    def stored_unacked(self) -> int:
        return sum(1 for m in self.stored if m not in self.acked)


def batches(tag: str, size: int) -> Iterator[tuple[list[str], bytes]]:
    """Endless `/v1/batch` bodies of REES46 calls, each call with a messageId of its own."""
    calls = [call for _, call in read_calls(data_path(REES46))]
    n = 0
    for start in itertools.cycle(range(0, len(calls), size)):
        batch = []
        ids = []
        for call in calls[start : start + size]:
            mid = f"{tag}-{n:08d}"
            n += 1
            batch.append({**call, "messageId": mid})
            ids.append(mid)
        yield ids, orjson.dumps({"batch": batch})


async def drive(
    run: RedisRun, server: RedisServer, port: int, write_key: str, args: argparse.Namespace,
    restart_at: float, ours: Ours,
) -> None:  # fmt: skip
    """`--clients` senders for `--ingest-s`; Redis restarted at `restart_at` s."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stop_at = t0 + args.ingest_s
    source = batches(f"aof{secrets.token_hex(3)}", args.batch_size)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", auth=(write_key, ""), timeout=10.0, limits=limits
    ) as http:

        async def sender() -> None:
            headers = {"Content-Type": "application/json"}
            while loop.time() < stop_at:
                ids, body = next(source)
                run.sent += len(ids)
                while True:
                    run.attempts += 1
                    try:
                        r = await http.post("/v1/batch", content=body, headers=headers)
                        answer = str(r.status_code)
                        if r.status_code == 200:
                            doc = r.json()
                            if doc.get("accepted") == len(ids) and not doc.get("rejected"):
                                run.acked.update(ids)
                                break
                            answer = "200 with events not accepted"
                    except httpx.HTTPError as exc:
                        answer = type(exc).__name__
                    now = loop.time() - t0
                    run.refused[answer] += 1
                    if run.refused_first_s is None:
                        run.refused_first_s = now
                    run.refused_last_s = now
                    if loop.time() >= stop_at:
                        run.unacked_at_end += len(ids)
                        break
                    await asyncio.sleep(0.05)  # and the same batch again, as SDKs retry

        tasks = [asyncio.create_task(sender()) for _ in range(args.clients)]
        await asyncio.sleep(restart_at)
        run.restart.acked_before = len(run.acked)
        run.restart.signal_at_s = loop.time() - t0
        await asyncio.to_thread(restart_redis, server, SIGNALS[run.sig], args.down_s, run, ours)
        await asyncio.gather(*tasks)


def _entries(client: redis.Redis, keys: Keys) -> int:
    return sum(int(client.xlen(s)) for s in keys.all_events(PARTITIONS))


def restart_redis(server: RedisServer, sig: int, down_s: float, run: RedisRun, ours: Ours) -> None:
    """Signal redis-server, wait for it to go, leave it down `down_s`, start it again."""
    keys = Keys("aof")
    client = redis.Redis(port=server.port)
    run.restart.entries_before = _entries(client, keys)
    client.close()
    assert server.proc is not None
    start = time.monotonic()
    ours.going(server.proc.pid)
    server.proc.send_signal(sig)
    server.proc.wait(60)
    run.restart.exit_s = time.monotonic() - start
    time.sleep(down_s)
    server.start()
    assert server.proc is not None
    ours.add(server.proc.pid)
    run.restart.down_s = time.monotonic() - start
    client = redis.Redis(port=server.port)
    run.restart.entries_after = _entries(client, keys)
    client.close()


def read_stored(client: redis.Redis, keys: Keys, run: RedisRun, tag_prefix: str) -> None:
    """Every event in the streams (XRANGE, `decode_entry`), counted by messageId."""
    for stream in keys.all_events(PARTITIONS):
        low = "-"
        while True:
            chunk: Any = client.xrange(stream, min=low, max="+", count=1000)
            if not chunk:
                break
            for _, fields in chunk:
                for ev in decode_entry(fields[ENTRY_FIELD]):
                    run.stored[ev.message_id] += 1
                    run.stored_foreign += not ev.message_id.startswith(tag_prefix)
            low = "(" + chunk[-1][0].decode()
    run.deadletter = int(client.xlen(keys.deadletter()))


def redis_run(
    fsync: str, sig: str, args: argparse.Namespace, tmp: Path, rng: random.Random
) -> RedisRun:
    run = RedisRun(fsync, sig)
    directory = tmp / f"redis-{fsync}-{sig.lower()}"
    server = RedisServer(directory, aof=True, fsync=fsync)
    ours = Ours()
    write_key = secrets.token_hex(12)
    port = free_port()
    env = {
        **_base_env(),
        "NUDGE_REDIS_URL": server.url, "NUDGE_WRITE_KEYS": write_key,
        "NUDGE_API_KEYS": secrets.token_hex(16), "NUDGE_ADMIN_KEYS": secrets.token_hex(16),
        "NUDGE_PARTITIONS": str(PARTITIONS), "NUDGE_KEY_PREFIX": "aof",
        "NUDGE_READY_PROGRESS_S": "0",  # no dataflow here: ready = Redis answers
        "NUDGE_LOG_FORMAT": "text",
    }  # fmt: skip
    restart_at = rng.uniform(0.35, 0.55) * args.ingest_s
    server.start()
    api: subprocess.Popen[bytes] | None = None
    try:
        assert server.proc is not None
        ours.add(server.proc.pid, started_now=False)
        api = start_api(env, port, log=directory / "api.log")
        ours.add(api.pid, started_now=False)
        with CpuWindow() as window:
            start = time.monotonic()
            asyncio.run(drive(run, server, port, write_key, args, restart_at, ours))
            run.seconds = time.monotonic() - start
        run.others = others_cores(window, ours)
        run.aof_load = aof_load(server)
        client = redis.Redis(port=server.port)
        read_stored(client, Keys("aof"), run, "aof")
        client.close()
    finally:
        if api is not None:
            stop_process(api)
        server.stop()
    return run


def part_redis(args: argparse.Namespace, tmp: Path) -> bool:
    runs_spec = [tuple(s.split(":")) for s in args.redis_runs.split(",") if s]
    print()
    print("-- 2. Redis restarted during ingest through the API, AOF on")
    print(
        f"ingest    `nudge api` (1 uvicorn worker); {args.clients} clients POST /v1/batch "
        f"(HTTP Basic write key, {args.batch_size} REES46 calls, a messageId each) for "
        f"{args.ingest_s:g} s; not 200 → the same batch again after 50 ms"
    )
    print(
        f"restart   redis-server (--appendonly yes, no RDB) signalled at a moment drawn in "
        f"[35%, 55%] of the ingest (seed {args.seed}), down {args.down_s:g} s after it exits, "
        "started again on the same port and directory"
    )
    print(
        "fsync     always: Redis fsyncs the AOF before it answers, so an acknowledged event is "
        "on disk; everysec (informational) answers first and fsyncs once a second: a process "
        "kill still leaves its writes in the page cache, a machine crash loses up to ~2 s"
    )
    rng = random.Random(args.seed)
    runs = []
    for fsync, sig in runs_spec:
        runs.append(redis_run(fsync, sig, args, tmp, rng))
    rows = []
    for r in runs:
        rows.append(
            [
                f"appendfsync {r.fsync}, SIG{r.sig}",
                f"{r.sent:,}",
                f"{len(r.acked):,}",
                f"{r.present:,}",
                f"{r.missing:,}",
                f"{sum(r.refused.values()):,}",
                f"{r.restart.signal_at_s:.1f}",
                f"{r.restart.down_s:.2f}",
                f"{r.twice:,}",
            ]
        )
    print()
    print(
        table(
            rows,
            [
                "redis restart",
                "events sent",
                "acknowledged (200)",
                "present",
                "missing",
                "requests refused",
                "signal at s",
                "down s",
                "stored twice",
            ],
        )
    )
    ok = True
    print()
    for r in runs:
        refused = ", ".join(f"{n} {k}" for k, n in r.refused.most_common()) or "none"
        window = (
            f" between {r.refused_first_s:.2f} and {r.refused_last_s:.2f} s"
            if r.refused_first_s is not None and r.refused_last_s is not None
            else ""
        )
        print(f"{r.fsync}/SIG{r.sig}:")
        print(
            f"  requests  {r.attempts:,} ({r.attempts - sum(r.refused.values()):,} answered 200); "
            f"refused {refused}{window}"
        )
        print(
            f"  redis     exited {r.restart.exit_s:.2f} s after the signal; answering again "
            f"{r.restart.down_s:.2f} s after it (AOF loaded in {r.aof_load}); stream entries "
            f"{r.restart.entries_before:,} just before the signal, {r.restart.entries_after:,} "
            f"once it answered again; {r.restart.acked_before:,} events acknowledged before "
            "the signal"
        )
        print(
            f"  streams   {sum(r.stored.values()):,} events stored, {len(r.stored):,} distinct "
            f"messageIds; stored twice {r.twice:,} (a retry of a write whose answer was lost: "
            f"the dataflow counts a messageId once); stored but never acknowledged "
            f"{r.stored_unacked:,}; unanswered when the clients stopped {r.unacked_at_end:,}; "
            f"not from this run {r.stored_foreign}; dead letters {r.deadletter}"
        )
        note = "  WARNING: timings biased" if r.others > 0.1 else ""
        print(f"  others    processes not ours kept {r.others:.2f} cores busy{note}")
        required = r.fsync == "always"
        good = r.missing == 0 and r.stored_foreign == 0 and r.deadletter == 0
        verdict = "PASS" if good else ("FAIL" if required else "LOSS (not guaranteed)")
        print(
            f"  result    every acknowledged messageId in the streams: {verdict} "
            f"({r.missing:,} missing of {len(r.acked):,})"
        )
        if required:
            ok = ok and good
    return ok


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1, help="RNG seed of the kill and restart moments")
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of the dataflow (default 10)")
    p.add_argument("--feed-s", type=float, default=40.0, help="seconds over which to feed")
    p.add_argument("--fraction", type=float, default=1.0, help="share of each dataset (0..1]")
    p.add_argument("--entry-events", type=int, default=100, help="calls per simulated request")
    p.add_argument("--read-events", type=int, default=None, help="NUDGE_READ_EVENTS override")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for catch-up")
    p.add_argument("--redis-runs", default=REDIS_RUNS, help=f"fsync:SIGNAL,... ({REDIS_RUNS})")
    p.add_argument("--ingest-s", type=float, default=12.0, help="seconds of ingest per restart")
    p.add_argument("--down-s", type=float, default=1.0, help="seconds Redis stays down")
    p.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    p.add_argument("--batch-size", type=int, default=100, help="calls per /v1/batch")
    p.add_argument("--skip-dataflow", action="store_true", help="only the Redis restarts")
    p.add_argument("--skip-redis", action="store_true", help="only the dataflow kills")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, AOF, recovery)")
    args = p.parse_args(argv)
    if not 0 < args.fraction <= 1:
        p.error("--fraction must be in (0, 1]")
    if not 0 <= args.kills <= 100 or not 1 <= args.feed_s <= 600:
        p.error("--kills must be 0..100 and --feed-s 1..600")
    if not 1 <= args.ingest_s <= 120 or not 0 <= args.down_s <= 30:
        p.error("--ingest-s must be 1..120 and --down-s 0..30")
    if not 1 <= args.clients <= 64 or not 1 <= args.batch_size <= 1000:
        p.error("--clients must be 1..64 and --batch-size 1..1000")
    for spec in args.redis_runs.split(","):
        fsync, _, sig = spec.partition(":")
        if fsync not in ("always", "everysec", "no") or sig not in SIGNALS:
            p.error(f"--redis-runs: {spec!r} is not fsync:SIGNAL (always|everysec|no, TERM|KILL)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header("nudge bench: chaos (dataflow SIGKILLs; Redis restarts with AOF)", "bench.chaos"))
    tmp = Path(tempfile.mkdtemp(prefix="nudge-bench-chaos-"))
    ok = False
    try:
        ok = True
        if not args.skip_dataflow:
            ok = part_dataflow(args, tmp) and ok
        if not args.skip_redis:
            ok = part_redis(args, tmp) and ok
    except BaseException:
        ok = False
        raise
    finally:
        if args.keep or not ok:
            print(f"\nkept      {tmp} (logs, recovery stores, AOF)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nverdict   {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
