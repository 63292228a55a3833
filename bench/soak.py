"""Soak: 2,000 decisions/s and 5,000 events/s for ten minutes against the real engine; no
error, and memory and lag that stay bounded.

``python -m bench.soak [--seconds 600] [--warmup 60] [--decisions 2000] [--rate 5000]
[--workers 1] [--customers 50000] [--sample-s 5] [--window-s 60] [--no-aof]
[--set NUDGE_X=V]``

- Deployment (`bench.live.Deployment`): a real redis-server (AOF everysec unless
  ``--no-aof``), the real ``nudge dataflow`` (one process, one worker, recovery on, 4
  partitions, default settings: stream trimming after 60 s, 24 h de-duplication window,
  1 h cart triggers…) and the real ``nudge api --workers N`` (uvicorn, uvloop, httptools),
  on 127.0.0.1. One worker by default, as ``nudge api`` starts it: on a 2-vCPU machine a
  second worker takes the CPU the dataflow needs (measured there: with two workers at
  2,000 decisions/s the dataflow read less than it was sent and its lag grew without end);
  with 4 cores or more, ``--workers 2``.
- Two load generators (`bench.live`), each its own process, open loop (requests scheduled
  at a fixed rate whatever the answers do): ``POST /v1/batch`` of ``--batch-size`` calls at
  ``--rate`` events/s (8 connections), and ``GET /v1/decide?customer_id=…&channel=web`` at
  ``--decisions``/s (64 connections). Both over the same bounded population of
  ``--customers`` customers (`bench.live.Traffic`: each replays a REES46 shopper's events,
  one every customers/rate seconds; decisions round-robin in another order), so after the
  warm-up every customer has a profile and memory should plateau: profiles, contact
  histories and dataflow state are per customer, the catalog's cooldowns bound the messages
  served, and streams are trimmed once a recovery snapshot 60 s old has passed them (the
  60 s warm-up lets them reach that length before the start sample).
  A generator that falls behind its schedule does not send the rest at the end: "achieved"
  gives the rate it made.
- Every request has a ``--timeout-s`` timeout; errors are non-2xx answers, timeouts, broken
  connections and ingest answers that did not accept every event. Decision latency is from
  request written to answer read (1%-wide histograms per ``--window-s``, by when the request
  was written), "late" how far behind schedule requests were written (it grows once the API
  no longer keeps up: the connections are then busy back to back).
- Every ``--sample-s``: RSS (/proc VmRSS) of every process (redis-server, dataflow, API
  processes, both load generators, this one), Redis ``used_memory``, the lag
  (`cli.status.snapshot` / `models.progress`: entries behind and stream lag) and the
  dataflow's recovery snapshot counters (bytes per customer snapshot: the size of a
  customer's state). Start = the first sample after the warm-up, end = the last one under
  load.
- Bounded: for each process, RSS end ≤ start x 1.1 + 20 MB; Redis used_memory end ≤ start
  x 1.1 + 20 MB; stream lag always below NUDGE_LAG_SLO_S, and not growing: the worst lag of
  the last window (``--window-s``) ≤ 2 x the first window's + 1 s. The exit code is 1 on any
  error, a growth past those bounds, a lag over the SLO or growing, the dataflow not
  catching up within 120 s once the load stops, or a process that died.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import redis

from bench.live import (
    Deployment,
    Generator,
    LoadPlan,
    LoadResult,
    Window,
    counters,
)
from bench.machine import REES46, CpuWindow, cpu_seconds, data_path, header, rss_mb, table
from config.settings import Settings

GROWTH: Final = 1.10
SLACK_MB: Final = 20.0
LAG_GROWTH: Final = 2.0
LAG_SLACK_S: Final = 1.0
STATE: Final = "read_events"  # the readers (customers are processed where read; state in Redis)


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the end of the warm-up
    rss: dict[str, float | None]
    cpu: dict[str, float]  # CPU seconds used so far
    used_memory: int
    lag_ms: int
    behind: int | None
    snapshots: float  # customer snapshots encoded so far
    snapshot_bytes: float


@dataclass(slots=True)
class Run:
    samples: list[Sample] = field(default_factory=list)
    drain_s: float | None = None
    pids: dict[str, int] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=600.0, help="measured seconds (600)")
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds of load before the start sample (60: every customer has a "
                        "profile and the streams reach their trimmed length)")  # fmt: skip
    p.add_argument("--decisions", type=float, default=2000.0, help="decisions/s (2000)")
    p.add_argument("--rate", type=float, default=5000.0, help="events/s ingested (5000)")
    p.add_argument("--batch-size", type=int, default=50, help="calls per POST /v1/batch (50)")
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn workers of the API (1: see the docstring)")  # fmt: skip
    p.add_argument("--customers", type=int, default=50_000, help="population (50,000)")
    p.add_argument("--connections", type=int, default=64, help="decision connections (64)")
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling interval (5 s)")
    p.add_argument("--window-s", type=float, default=60.0, help="latency table rows (60 s)")
    p.add_argument("--timeout-s", type=float, default=5.0, help="request timeout (5 s)")
    p.add_argument("--no-aof", action="store_true", help="redis-server without AOF")
    p.add_argument("--set", action="append", default=[], metavar="NUDGE_X=V",
                   help="an extra setting for the dataflow and the API (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    for item in args.set:
        if not item.startswith("NUDGE_") or "=" not in item:
            p.error(f"--set {item}: expected NUDGE_NAME=value")
    return args


def sample(dep: Deployment, client: redis.Redis, pids: dict[str, int], t: float) -> Sample:
    snap = dep.snapshot(client)
    info: Any = client.info("memory")
    metrics = dep.dataflow_metrics()
    taken = counters(metrics, "nudge_dataflow_snapshots").get(STATE, 0.0)
    size = counters(metrics, "nudge_dataflow_snapshot_bytes").get(STATE, 0.0)
    return Sample(t, {k: rss_mb(pid) for k, pid in pids.items()},
                  {k: cpu_seconds(pid) for k, pid in pids.items()}, int(info["used_memory"]),
                  snap.max_lag_ms(), snap.behind(), taken, size)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header("nudge bench: soak (decisions + ingest, errors, memory, lag)", "bench.soak"))
    dataset = data_path(REES46)
    tag = os.urandom(4).hex()
    settings = dict(item.split("=", 1) for item in args.set)
    run = Run()
    with tempfile.TemporaryDirectory(prefix="nudge-bench-soak-") as tmp:
        dep = Deployment(Path(tmp), workers=args.workers, aof=not args.no_aof, settings=settings)
        gens: dict[str, Generator] = {}
        try:
            dep.start()
            client = dep.client()
            common = {"host": "127.0.0.1", "port": dep.api_port, "customers": args.customers,
                      "warmup_s": args.warmup, "duration_s": args.seconds,
                      "window_s": args.window_s, "timeout_s": args.timeout_s}  # fmt: skip
            ingest = LoadPlan(kind="ingest", key=dep.write_key, rate=args.rate, connections=8,
                              batch_size=args.batch_size, dataset=str(dataset), tag=tag,
                              **common)  # fmt: skip
            decide = LoadPlan(kind="decide", key=dep.api_key, rate=args.decisions,
                              connections=args.connections, **common)  # fmt: skip
            gens = {"ingest load": Generator(asdict(ingest))}
            if args.decisions > 0:
                gens["decide load"] = Generator(asdict(decide))
            for g in gens.values():
                g.ready()
            go = time.monotonic()
            for g in gens.values():
                g.go()
            measure_from = go + 0.2 + args.warmup
            end = measure_from + args.seconds
            window: CpuWindow | None = None
            next_at = measure_from
            while (now := time.monotonic()) < end:
                if now >= measure_from and window is None:  # the warm-up is over
                    run.pids = {**dep.processes(), "bench (this process)": os.getpid(),
                                **{k: g.proc.pid for k, g in gens.items()}}  # fmt: skip
                    window = CpuWindow(list(run.pids.values())).__enter__()
                if now >= next_at and run.pids:
                    run.samples.append(sample(dep, client, run.pids, now - measure_from))
                    next_at += args.sample_s
                    while next_at <= time.monotonic():
                        next_at += args.sample_s
                if dead := dep.alive():
                    tails = "\n".join(
                        f"--- {n}.log\n{dep.log_tail(n)}" for n in ("dataflow", "api")
                    )
                    raise RuntimeError(f"died during the run: {', '.join(dead)}\n{tails}")
                time.sleep(min(0.5, max(0.01, min(next_at, end) - time.monotonic())))
            if window is not None:
                window.__exit__()
            results = {k: LoadResult.from_json(g.line(args.timeout_s + 120))
                       for k, g in gens.items()}  # fmt: skip
            run.drain_s = drain(dep, client)
            client.close()
        finally:
            for g in gens.values():
                g.stop()
            dep.stop()
    return report(args, run, results, window.others_cores if window else 0.0)


def drain(dep: Deployment, client: redis.Redis, limit_s: float = 120.0) -> float | None:
    """Seconds until the dataflow has read every partition to its tip once the load stopped."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if all(p.caught_up for p in dep.snapshot(client).partitions):
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def report(args: argparse.Namespace, run: Run, results: dict[str, LoadResult],
           others: float) -> int:  # fmt: skip
    slo_s = float(dict(s.split("=", 1) for s in args.set).get(
        "NUDGE_LAG_SLO_S", Settings.model_fields["lag_slo_s"].default))  # fmt: skip
    ing = results["ingest load"]
    dec = results.get("decide load") or LoadResult(
        [Window() for _ in ing.windows], Window(), [], 0, 0.0, 0.0
    )
    print(f"deploy    redis-server (AOF {'off' if args.no_aof else 'everysec'}), `nudge dataflow` "
          f"(1 process, 1 worker, recovery on, 4 partitions), `nudge api --workers "
          f"{args.workers}`; 127.0.0.1{'; ' + ' '.join(args.set) if args.set else ''}")  # fmt: skip
    print(f"load      {args.decisions:,.0f} GET /v1/decide/s (channel web, {args.connections} "
          f"connections) + {args.rate:,.0f} events/s through POST /v1/batch ({args.batch_size} "
          f"calls a batch, 8 connections), open loop, each its own process; "
          f"{args.customers:,} customers (bounded population); {args.warmup:g} s warm-up + "
          f"{args.seconds:g} s measured")  # fmt: skip
    rows = []
    for i, (d, g) in enumerate(zip(dec.windows, ing.windows, strict=True)):
        lo, hi = i * args.window_s, (i + 1) * args.window_s
        inside = [s for s in run.samples if lo <= s.t < hi]
        span = min(hi, args.seconds) - lo
        rows.append([
            label(lo, min(hi, args.seconds), args.window_s), f"{d.requests:,}",
            f"{100 * d.served / max(1, d.requests):.1f}%", _ms(d.latency.pct(0.5)),
            _ms(d.latency.pct(0.99)), _ms(d.latency.max), _ms(d.late.pct(0.99)),
            f"{g.events / span:,.0f}" if span > 0 else "-", _ms(g.latency.pct(0.99)),
            f"{d.errors + g.errors}",
            f"{max((s.lag_ms for s in inside), default=0) / 1000:.2f}",
            f"{max((s.behind or 0 for s in inside), default=0):,}", state_size(run, lo, hi),
            *memory_at(inside),
        ])  # fmt: skip
    d_all, g_all = dec.total(), ing.total()
    rows.append([
        "all", f"{d_all.requests:,}", f"{100 * d_all.served / max(1, d_all.requests):.1f}%",
        _ms(d_all.latency.pct(0.5)), _ms(d_all.latency.pct(0.99)), _ms(d_all.latency.max),
        _ms(d_all.late.pct(0.99)), f"{g_all.events / args.seconds:,.0f}",
        _ms(g_all.latency.pct(0.99)), f"{d_all.errors + g_all.errors}",
        f"{max((s.lag_ms for s in run.samples), default=0) / 1000:.2f}",
        f"{max((s.behind or 0 for s in run.samples), default=0):,}",
        state_size(run, 0, args.seconds), *memory_at(run.samples),
    ])  # fmt: skip
    print()
    print(table(rows, ["window", "decisions", "served", "p50 ms", "p99 ms", "max ms",
                       "late p99", "events/s in", "POST p99", "errors", "lag max s",
                       "behind max", "state B/cust", "dataflow MB", "redis MB"]))  # fmt: skip
    warm = Window()
    warm.merge(dec.warmup)
    warm.merge(ing.warmup)
    errors = d_all.errors + g_all.errors + warm.errors
    timeouts = d_all.timeouts + g_all.timeouts + warm.timeouts
    print()
    print(f"requests  {d_all.requests + dec.warmup.requests:,} decisions and "
          f"{g_all.requests + ing.warmup.requests:,} ingest batches "
          f"({g_all.events + ing.warmup.events:,} events), warm-up included; errors {errors} "
          f"(timeouts {timeouts}; {warm.errors} in the warm-up)")  # fmt: skip
    for e in (dec.error_samples + ing.error_samples)[:6]:
        print(f"          {e}")

    def rate(r: LoadResult, n: int) -> str:
        return f"{n / r.measured_s:,.0f}/s over {r.measured_s:.0f} s" if r.measured_s else "-"

    print(f"achieved  decisions {rate(dec, d_all.requests)} (offered {dec.offered_per_s:,.0f}/s); "
          f"events {rate(ing, g_all.events)} (offered {args.rate:,.0f}/s)")  # fmt: skip
    memory_ok = print_memory(run)
    ok = errors == 0 and memory_ok
    lag_max = max((s.lag_ms for s in run.samples), default=0) / 1000
    end = run.samples[-1] if run.samples else None
    # growing: the last window's worst lag is past twice the first window's, plus a second
    firsts = [s.lag_ms for s in run.samples if s.t < args.window_s]
    lasts = [s.lag_ms for s in run.samples if s.t >= args.seconds - args.window_s]
    first_max = max(firsts, default=0) / 1000
    last_max = max(lasts, default=0) / 1000
    steady = last_max <= LAG_GROWTH * first_max + LAG_SLACK_S
    lag_ok = lag_max < slo_s and steady
    lag_end = end.lag_ms / 1000 if end else 0.0
    behind_max = max((s.behind or 0 for s in run.samples), default=0)
    print(f"lag       stream lag max {lag_max:.2f} s (SLO {slo_s:g} s), at the end {lag_end:.2f} "
          f"s; entries behind max {behind_max:,}, at the end "
          f"{(end.behind or 0) if end else 0:,}; caught up "
          + (f"{run.drain_s:.1f} s after the load stopped" if run.drain_s is not None
             else "NOT within 120 s of the load stopping"))  # fmt: skip
    print(f"          worst lag in the first window {first_max:.2f} s, in the last {last_max:.2f} "
          f"s: {'steady' if steady else 'GROWING'} (last ≤ first x {LAG_GROWTH:g} + "
          f"{LAG_SLACK_S:g} s)")  # fmt: skip
    note = "  WARNING: figures are biased" if others > 0.1 else ""
    print(f"others    processes not ours kept {others:.2f} cores busy during the measured "
          f"window{note}")  # fmt: skip
    ok = ok and lag_ok and run.drain_s is not None
    print(f"verdict   {'PASS' if ok else 'FAIL'}: errors {errors}, memory "
          f"{'bounded' if memory_ok else 'GROWING'} (end ≤ start x {GROWTH:g} + "
          f"{SLACK_MB:g} MB), lag {'bounded' if lag_ok else 'NOT bounded'} (max "
          f"{lag_max:.2f} s vs SLO {slo_s:g} s; {'steady' if steady else 'growing'})")  # fmt: skip
    return 0 if ok else 1


def label(lo: float, hi: float, window_s: float) -> str:
    if window_s % 60 == 0:
        return f"{lo / 60:.0f}-{hi / 60:.0f} min"
    return f"{lo:.0f}-{hi:.0f} s"


def memory_at(samples: list[Sample]) -> list[str]:
    """The dataflow's RSS and Redis used_memory (MB) at the last of `samples`."""
    if not samples:
        return ["-", "-"]
    df = samples[-1].rss.get("dataflow")
    return [f"{df:,.0f}" if df is not None else "-", f"{samples[-1].used_memory / 2**20:,.0f}"]


def state_size(run: Run, lo: float, hi: float) -> str:
    """Mean bytes of a customer's recovery snapshot encoded between `lo` and `hi` s."""
    inside = [s for s in run.samples if lo <= s.t <= hi]
    if len(inside) < 2:
        return "-"
    n = inside[-1].snapshots - inside[0].snapshots
    return f"{(inside[-1].snapshot_bytes - inside[0].snapshot_bytes) / n:,.0f}" if n else "-"


def print_memory(run: Run) -> bool:
    """The RSS and Redis memory table; whether everything stayed bounded. "MB/min 2nd half"
    is the slope from the middle sample to the last: ~0 once memory has plateaued."""
    if len(run.samples) < 2:
        print("memory    not enough samples")
        return False
    first, mid, last = run.samples[0], run.samples[len(run.samples) // 2], run.samples[-1]
    span_min = max(1e-9, last.t - mid.t) / 60
    rows = []
    ok = True

    def row(name: str, pid: object, series: list[float], start: float, middle: float,
            end: float, cpu: str) -> bool:  # fmt: skip
        fine = end <= start * GROWTH + SLACK_MB
        rows.append([name, pid, f"{start:,.1f}", f"{end:,.1f}", f"{max(series):,.1f}",
                     f"{end - start:+,.1f}", f"{(end - middle) / span_min:+,.1f}",
                     "ok" if fine else "GROWING", cpu])  # fmt: skip
        return fine

    for label, pid in run.pids.items():
        values = [v for s in run.samples if (v := s.rss.get(label)) is not None]
        start, middle, end = (s.rss.get(label) for s in (first, mid, last))
        if start is None or middle is None or end is None:
            rows.append([label, pid, "-", "-", "-", "-", "-", "gone", "-"])
            ok = False
            continue
        busy = (last.cpu[label] - first.cpu[label]) / max(1e-9, last.t - first.t)
        ok = row(label, pid, values, start, middle, end, f"{100 * busy:.0f}%") and ok
    used = [s.used_memory / 2**20 for s in run.samples]
    ok = row("redis used_memory", "-", used, used[0], used[len(used) // 2], used[-1], "-") and ok
    print()
    print(table(rows, ["memory (MB)", "pid", f"start (+{first.t:.0f} s)",
                       f"end (+{last.t:.0f} s)", "max", "end - start", "MB/min 2nd half",
                       "bounded", "CPU"]))  # fmt: skip
    return ok


if __name__ == "__main__":
    sys.exit(main())
