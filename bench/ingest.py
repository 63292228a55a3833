"""Ingest throughput: Segment ``/v1/batch`` → API (one uvicorn worker) → Redis Streams.

``python -m bench.ingest [--duration 10] [--batch-size 500] [--concurrency 8]``

Starts a redis-server (temp dir, AOF off unless ``--aof``), the API as one uvicorn worker in its
own process (``python -m cli.main api``), and load-generator process(es) (`bench.loadgen`)
posting REES46-derived batches with fresh messageIds over HTTP Basic auth on 127.0.0.1. It
checks every answer (200, ``accepted`` = batch size), then reads the streams back (XLEN, and
XRANGE decoded with `models.codec.decode_entry`) to check they hold every accepted event.

In the same run it measures the baseline: a bare pipelined XADD loop (redis-py, one XADD per
event carrying its msgpack-encoded event) against the same redis-server.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import redis

from bench.loadgen import LoadConfig
from bench.machine import REES46, CpuWindow, cpu_seconds, data_path, header, stop_process, table
from cli.datasets import read_calls
from cli.embedded import RedisServer, free_port
from models.codec import ENTRY_FIELD, decode_entry, encode_entry, encode_event
from models.events import Event
from models.keys import Keys, partition_for
from models.segment import normalize

TARGET: Final = 30_000  # accepted events/s, one API worker


@dataclass(slots=True)
class IngestRun:
    """Aggregated load-generator results and the CPU each process used."""

    requests: int
    events_sent: int
    accepted: int
    rejected: int
    http_errors: int
    accepted_mismatch: int
    errors: list[str]
    measured_events: int
    measured_s: float
    latencies_ms: list[float]
    cpu: dict[str, float]  # process → CPU seconds over warmup + duration
    wall_s: float
    tag: str  # prefix of every messageId this run sent
    others_cores: float  # CPU cores other processes kept busy meanwhile

    @property
    def rate(self) -> float:
        return self.measured_events / self.measured_s if self.measured_s else 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--batch-size", type=int, default=500, help="events per /v1/batch")
    p.add_argument("--concurrency", type=int, default=8, help="connections in flight, in all")
    p.add_argument("--clients", type=int, default=1, help="load-generator processes (≤ 8)")
    p.add_argument("--partitions", type=int, default=4, help="event stream partitions")
    p.add_argument("--baseline-duration", type=float, default=5.0, help="seconds of bare XADD")
    p.add_argument("--pipeline", type=int, default=500, help="XADDs per pipeline (baseline)")
    p.add_argument("--aof", action="store_true", help="redis-server with appendonly yes")
    p.add_argument("--dataset", type=Path, default=REES46, help="REES46 CSV(.gz)")
    args = p.parse_args(argv)
    if not 1 <= args.batch_size <= 1000:
        p.error("--batch-size must be 1..1000 (Segment's 500 KB batch limit)")
    if not 1 <= args.clients <= 8 or args.concurrency < args.clients:
        p.error("--clients must be 1..8 and at most --concurrency")
    if not 0 < args.duration <= 120 or not 0 < args.baseline_duration <= 60:
        p.error("--duration must be in (0, 120] and --baseline-duration in (0, 60]")
    return args


# --- the API process -----------------------------------------------------------------------


def start_api(
    env: dict[str, str], port: int, cmd: list[str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`nudge api` (or `cmd`) on 127.0.0.1:`port`, once it answers `/readyz` (which, unless
    `env` says otherwise, checks Redis only: the benches of the API run no dataflow); its
    output to `log` if given."""
    if cmd is None:
        cmd = [sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1", "--port", str(port)]
    env = {"NUDGE_READY_PROGRESS_S": "0", **env}
    if log is None:
        proc = subprocess.Popen(cmd, env=env)
    else:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited at start with code {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_process(proc)
    raise RuntimeError("the API did not answer within 30 s")


# --- the load ------------------------------------------------------------------------------


def run_load(
    args: argparse.Namespace, port: int, write_key: str, pids: dict[str, int]
) -> IngestRun:
    """Start the load generators, wait until all are ready, start them together, collect."""
    tag = uuid.uuid4().hex[:8]
    per_proc = [args.concurrency // args.clients] * args.clients
    for i in range(args.concurrency % args.clients):
        per_proc[i] += 1
    procs: list[subprocess.Popen[str]] = []
    try:
        for index, conns in enumerate(per_proc):
            cfg = LoadConfig(
                host="127.0.0.1",
                port=port,
                write_key=write_key,
                dataset=str(data_path(args.dataset)),
                batch_size=args.batch_size,
                connections=conns,
                duration_s=args.duration,
                warmup_s=args.warmup,
                process_index=index,
                tag=tag,
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps(asdict(cfg)).decode() + "\n")
            proc.stdin.flush()
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a load generator failed to start")
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        results = []
        with CpuWindow([*pids.values(), *(p.pid for p in procs)]) as window:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError("a load generator died without results")
                results.append(orjson.loads(line))
        wall = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        for i, r in enumerate(results):
            cpu[f"loadgen{i}"] = r["cpu_s"]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
    finally:
        for proc in procs:
            stop_process(proc)
    lat = sorted(x for r in results for x in r["latencies_ms"])
    return IngestRun(
        requests=sum(r["requests"] for r in results),
        events_sent=sum(r["events_sent"] for r in results),
        accepted=sum(r["accepted"] for r in results),
        rejected=sum(r["rejected"] for r in results),
        http_errors=sum(r["http_errors"] for r in results),
        accepted_mismatch=sum(r["accepted_mismatch"] for r in results),
        errors=[e for r in results for e in r["errors"]][:5],
        measured_events=sum(r["measured_events"] for r in results),
        measured_s=max(r["measured_s"] for r in results),
        latencies_ms=lat,
        cpu=cpu,
        wall_s=wall,
        tag=tag,
        others_cores=window.others_cores,
    )


# --- checks and baseline -------------------------------------------------------------------


@dataclass(slots=True)
class StreamCheck:
    """What the event streams hold after the run."""

    entries: int  # sum of XLEN
    events: int  # events in the entries, decoded
    unique_ids: int
    foreign: int  # events whose messageId is not one of this run's
    deadletter: int


def check_streams(client: redis.Redis, keys: Keys, partitions: int, tag: str) -> StreamCheck:
    """XLEN every partition, then XRANGE it all and decode every entry."""
    entries = events = foreign = 0
    ids: set[str] = set()
    for stream in keys.all_events(partitions):
        xlen = int(client.xlen(stream))
        entries += xlen
        seen, low = 0, "-"
        while True:
            chunk: Any = client.xrange(stream, min=low, max="+", count=1000)
            if not chunk:
                break
            for _, fields in chunk:
                for ev in decode_entry(fields[ENTRY_FIELD]):
                    events += 1
                    ids.add(ev.message_id)
                    foreign += not ev.message_id.startswith(tag)
            seen += len(chunk)
            low = "(" + chunk[-1][0].decode()
        if seen != xlen:
            raise RuntimeError(f"{stream}: XLEN {xlen} but XRANGE returned {seen} entries")
    return StreamCheck(entries, events, len(ids), foreign, int(client.xlen(keys.deadletter())))


def bench_events(dataset: Path, tag: str) -> list[Event]:
    """The dataset's calls normalised as the API does, each with a fresh messageId."""
    now = time.time_ns() // 1_000_000
    out = []
    for i, (_, call) in enumerate(read_calls(dataset)):
        call = {**call, "messageId": f"{tag}-{i:06d}"}
        out.append(normalize(call, received_at=now, new_id=lambda: uuid.uuid4().hex))
    return out


def xadd_per_event(
    client: redis.Redis,
    keys: Keys,
    partitions: int,
    events: list[Event],
    seconds: float,
    chunk: int,
) -> tuple[int, float]:
    """Baseline: one XADD per event (its msgpack), pipelined `chunk` at a time, for `seconds`.

    Payloads are encoded before the clock starts: this is what Redis and redis-py take."""
    work: list[tuple[str, dict[Any, Any]]] = [
        (keys.events(partition_for(ev.customer_key, partitions)), {ENTRY_FIELD: encode_event(ev)})
        for ev in events
    ]
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        pipe = client.pipeline(transaction=False)
        at = sent % len(work)
        for stream, fields in work[at : at + chunk]:
            pipe.xadd(stream, fields)
        sent += len(pipe)
        pipe.execute()
    return sent, time.perf_counter() - start


def xadd_api_layout(
    client: redis.Redis,
    keys: Keys,
    partitions: int,
    events: list[Event],
    seconds: float,
    batch: int,
) -> tuple[int, float]:
    """Reference: the API's layout (one entry per partition per batch), bare, for `seconds`."""
    work: list[tuple[int, list[tuple[str, dict[Any, Any]]]]] = []
    for start in range(0, len(events), batch):
        by_part: dict[int, list[Event]] = {}
        for ev in events[start : start + batch]:
            by_part.setdefault(partition_for(ev.customer_key, partitions), []).append(ev)
        cmds: list[tuple[str, dict[Any, Any]]] = [
            (keys.events(p), {ENTRY_FIELD: encode_entry(evs)}) for p, evs in by_part.items()
        ]
        work.append((sum(len(evs) for evs in by_part.values()), cmds))
    sent = n = 0
    start_t = time.perf_counter()
    deadline = start_t + seconds
    while time.perf_counter() < deadline:
        count, cmds = work[n % len(work)]
        n += 1
        pipe = client.pipeline(transaction=False)
        for stream, fields in cmds:
            pipe.xadd(stream, fields)
        pipe.execute()
        sent += count
    return sent, time.perf_counter() - start_t


def stream_events(client: redis.Redis, keys: Keys, partitions: int) -> int:
    return sum(int(client.xlen(s)) for s in keys.all_events(partitions))


# --- main ----------------------------------------------------------------------------------


def _others(cores: float) -> str:
    note = "  WARNING: figures are biased low" if cores > 0.1 else ""
    return f"processes not ours kept {cores:.2f} cores busy during the measured run{note}"


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header("nudge bench: ingest (POST /v1/batch → Redis Streams)", "bench.ingest"))
    dataset = data_path(args.dataset)
    write_key = secrets.token_hex(12)
    keys = Keys()
    with tempfile.TemporaryDirectory(prefix="nudge-bench-ingest-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=args.aof).start()
        print(
            f"redis     redis-server on {server.url}, "
            + ("AOF on (appendfsync everysec)" if args.aof else "AOF off (bench), no RDB saves")
        )
        client = redis.Redis.from_url(server.url)
        port = free_port()
        env = {
            **os.environ,
            "NUDGE_REDIS_URL": server.url,
            "NUDGE_WRITE_KEYS": write_key,
            "NUDGE_API_KEYS": secrets.token_hex(16),
            "NUDGE_ADMIN_KEYS": secrets.token_hex(16),
            "NUDGE_PARTITIONS": str(args.partitions),
            "NUDGE_KEY_PREFIX": keys.prefix,
        }
        try:
            assert server.proc is not None
            api = start_api(env, port)
            print(f"api       one uvicorn worker (uvloop, httptools), pid {api.pid}, port {port}")
            print(
                f"clients   {args.clients} load-generator process(es), {args.concurrency} "
                f"keep-alive connections, {args.batch_size} events per batch, "
                f"{args.warmup:g} s warm-up + {args.duration:g} s measured; dataset {dataset}"
            )
            try:
                run = run_load(
                    args, port, write_key, {"api": api.pid, "redis-server": server.proc.pid}
                )
            finally:
                stop_process(api)
            check = check_streams(client, keys, args.partitions, run.tag)
            base_keys, layout_keys = Keys("benchbase"), Keys("benchlayout")
            events = bench_events(dataset, "base")
            base_n, base_s = xadd_per_event(
                client, base_keys, args.partitions, events, args.baseline_duration, args.pipeline
            )
            base_held = stream_events(client, base_keys, args.partitions)
            lay_n, lay_s = xadd_api_layout(
                client, layout_keys, args.partitions, events, args.baseline_duration,
                args.batch_size,
            )  # fmt: skip
        finally:
            client.close()
            server.stop()
    report(args, run, check, (base_n, base_s, base_held), (lay_n, lay_s))
    ok = (
        run.http_errors == 0
        and run.accepted_mismatch == 0
        and check.events == run.accepted == check.unique_ids
        and check.foreign == check.deadletter == 0
        and base_held == base_n
    )
    return 0 if ok else 1


def report(
    args: argparse.Namespace,
    run: IngestRun,
    check: StreamCheck,
    base: tuple[int, float, int],
    layout: tuple[int, float],
) -> None:
    base_n, base_s, base_held = base
    base_rate = base_n / base_s
    lay_rate = layout[0] / layout[1]
    lat = run.latencies_ms
    span = run.wall_s
    cpu = ", ".join(
        f"{name} {sec:.1f} s ({100 * sec / span:.0f}% of a core)" for name, sec in run.cpu.items()
    )
    print()
    print(
        table(
            [
                [
                    "ingest POST /v1/batch → XADD (1 uvicorn worker)",
                    f"{run.rate:,.0f}",
                    f"{run.rate / base_rate:.2f}",
                    args.batch_size,
                    args.concurrency,
                    f"{run.measured_s:.1f}",
                ],
                [
                    "baseline: bare pipelined XADD, 1 event per entry",
                    f"{base_rate:,.0f}",
                    "1.00",
                    f"{args.pipeline}/pipe",
                    1,
                    f"{base_s:.1f}",
                ],
                [
                    "reference: bare XADD, API layout (entry/partition/batch)",
                    f"{lay_rate:,.0f}",
                    f"{lay_rate / base_rate:.2f}",
                    args.batch_size,
                    1,
                    f"{layout[1]:.1f}",
                ],
            ],
            ["", "events/s", "ratio", "batch size", "concurrency", "duration s"],
        )
    )
    print()
    print(
        f"requests  {run.requests:,} in {run.wall_s:.1f} s ({run.measured_events:,} events "
        f"measured); latency per batch p50 {_pct(lat, 0.5):.1f} ms, p99 {_pct(lat, 0.99):.1f} ms"
    )
    print(f"cpu       {cpu}")
    print(f"others    {_others(run.others_cores)}")
    print(
        f"answers   {run.requests - run.http_errors:,} answered 200, {run.http_errors} errors, "
        f"accepted {run.accepted:,} of {run.events_sent:,} sent, {run.rejected} rejected, "
        f"{run.accepted_mismatch} batches with accepted ≠ batch size"
    )
    for err in run.errors:
        print(f"          {err}")
    print(
        f"streams   XLEN {check.entries:,} entries over {args.partitions} partitions holding "
        f"{check.events:,} events (decode_entry), {check.unique_ids:,} distinct messageIds, "
        f"{check.foreign} not from this run, dead-letter {check.deadletter}: "
        + (
            "OK"
            if check.events == run.accepted == check.unique_ids
            and check.foreign == check.deadletter == 0
            else "MISMATCH"
        )
    )
    print(
        f"baseline  {base_n:,} XADDs sent, streams hold {base_held:,}: "
        + ("OK" if base_held == base_n else "MISMATCH")
    )
    verdict = "met" if run.rate >= TARGET else "NOT met"
    print(f"target    ingest ≥ {TARGET:,} events/s: {verdict} ({run.rate:,.0f} events/s)")


if __name__ == "__main__":
    sys.exit(main())
