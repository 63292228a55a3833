"""Freshness, live: how long after a client sends an event the customer's profile shows it and
a decision reflects it, while the engine takes 5,000 events/s through its ingest API.

``python -m bench.freshness [--rate 5000] [--seconds 30] [--warmup 5] [--batch-size 50]
[--markers 10] [--poll redis|api] [--poll-ms 1] [--customers 50000] [--no-aof]
[--set NUDGE_X=V]``

- Deployment (`bench.live.Deployment`): a real redis-server (AOF everysec, as in production,
  unless ``--no-aof``), the real ``nudge dataflow`` process (one worker, recovery on: a
  snapshot every NUDGE_EPOCH_S, 4 partitions, freshness probes every second, default
  settings) and the real ``nudge api`` (one uvicorn worker, uvloop, httptools), on 127.0.0.1.
- Load (`bench.live`, its own process): ``POST /v1/batch`` bodies of ``--batch-size`` Segment
  calls (`bench.live.Traffic`: ``--customers`` customers, each replaying a REES46 shopper's
  events, one every customers/rate seconds, stamped now), scheduled at a fixed rate (open
  loop) on 8 keep-alive connections, as an SDK flushing small batches on a timer would.
- Markers (the prober, this module with ``--prober``, its own process): ``--markers`` a second
  during the measured window, each a normal batch of ``--batch-size`` calls whose last call is
  a ``Product Added`` (a unique product id, price 100) for a fresh customer id outside the
  holdout group. The load generator sends ``rate - markers x batch size`` events/s, so the
  total offered is ``--rate``. For a customer with that single event, the only web message
  of the default catalog whose rule holds is ``checkout_help`` (``cart.items > 0 &&
  cart.value >= 50``; ``welcome`` needs two events, ``cart_reminder`` a cart 30 min old),
  and with one candidate there is no exploration: the decision is deterministic.
- Times, on the prober's monotonic clock, from just before the request is written:
  the ingest answer; *profile in Redis*: a poller MGETs the profile keys of the markers in
  flight every ``--poll-ms`` and decodes them (`models.profile.decode_profile`) until the
  cart holds the product; *profile via the API*: ``GET /v1/customers/{id}`` shows the product
  in the cart; *decision via the API*: ``GET /v1/decide?customer_id=…&channel=web`` answers
  ``checkout_help``. With ``--poll redis`` (default) the two API calls are made as soon as
  the Redis poller sees the profile (and repeated every ``--poll-ms`` until they reflect it):
  the API reads Redis on every request, so that is the earliest they can, and the API is not
  loaded by polling. With ``--poll api`` both are polled through the API every ``--poll-ms``
  from the send, like a client would (this adds hundreds of requests/s to the API).
- For comparison, the dataflow's own probes (`models.progress`): every second each partition
  appends a probe entry, timed when the sink has written the batch it came out in (entry
  appended → profile written; no HTTP). Read from the dataflow's ``/metrics`` histogram
  (difference over the measured window: bucket bounds) and from the ``fresh`` progress
  fields sampled every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import orjson
import redis.asyncio as aioredis

from bench.decide import pct
from bench.live import (
    Deployment,
    Generator,
    LoadPlan,
    LoadResult,
    Traffic,
    bucket_quantile,
    counters,
    histogram,
    histogram_sum,
    now_iso,
    serve,
)
from bench.loadgen import read_response
from bench.machine import REES46, CpuWindow, data_path, header, table
from config.catalog import load_catalog
from models.keys import Keys
from models.policy import in_holdout
from models.profile import decode_profile

TARGET_MS: Final = 50.0
EXPECTED: Final = "checkout_help"
PROBES: Final = "nudge_dataflow_freshness_seconds"
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# --- the prober (its own process) -----------------------------------------------------------


class Pool:
    """Keep-alive HTTP/1.1 connections to the API, one request at a time on each. uvicorn
    closes a connection idle for 5 s: idle ones are dropped after 2 s, and a request that
    finds its reused connection closed is sent again on a new one (as HTTP clients do)."""

    IDLE_S: Final = 2.0

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[float, Conn]] = []

    async def open(self) -> None:
        conn = await asyncio.open_connection(self.host, self.port)
        self.idle.append((time.monotonic(), conn))

    async def request(self, raw: bytes, timeout: float) -> tuple[int, bytes]:
        now = time.monotonic()
        while self.idle and now - self.idle[-1][0] > self.IDLE_S:
            self.idle.pop()[1][1].close()
        reused = self.idle.pop()[1] if self.idle else None
        try:
            answer, conn = await self._send(reused, raw, timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            if reused is None:
                raise
            answer, conn = await self._send(None, raw, timeout)
        self.idle.append((time.monotonic(), conn))
        return answer

    async def _send(self, conn: Conn | None, raw: bytes, timeout: float
                    ) -> tuple[tuple[int, bytes], Conn]:  # fmt: skip
        try:
            async with asyncio.timeout(timeout):
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                conn[1].write(raw)
                return await read_response(conn[0]), conn
        except BaseException:
            if conn is not None:
                conn[1].close()
            raise


class Prober:
    """Sends the markers and times when they become visible (see the module's docstring)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.p = plan
        self.keys = Keys(plan["prefix"])
        self.traffic = Traffic(Path(plan["dataset"]), plan["customers"], plan["tag"] + "f", 7)
        self.pool = Pool(plan["host"], plan["port"])
        self.poll_s = plan["poll_ms"] / 1000
        self.timeout = float(plan["timeout_s"])
        # profile key -> (product id, future of the time the poller saw it)
        self.inflight: dict[str, tuple[str, asyncio.Future[float]]] = {}
        self.polls = 0
        self.api_requests = 0
        auth = f"Authorization: Bearer {plan['api_key']}"
        self.get_head = f"GET %s HTTP/1.1\r\nHost: {plan['host']}\r\n{auth}\r\n\r\n"
        basic = base64.b64encode(f"{plan['write_key']}:".encode()).decode()
        self.post_head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {plan['host']}\r\nAuthorization: Basic {basic}"
            "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        ).encode()

    async def run(self) -> bytes:
        p = self.p
        self.redis = aioredis.Redis.from_url(p["redis_url"])
        cpu0 = time.process_time()
        start = time.monotonic() + 0.2
        measure_from = self.measure_from = start + p["warmup_s"]
        await asyncio.sleep(max(0.0, measure_from - 0.5 - time.monotonic()))
        for _ in range(8):  # connections opened before the clock starts
            await self.pool.open()
        poller = asyncio.create_task(self.poll_redis())
        tasks = []
        count = int(p["duration_s"] * p["markers_per_s"])
        for j in range(count):
            at = measure_from + j / p["markers_per_s"]
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.marker(j, at)))
        records = await asyncio.gather(*tasks)
        poller.cancel()
        await self.redis.aclose()
        return orjson.dumps({"markers": records, "polls": self.polls,
                             "api_requests": self.api_requests,
                             "cpu_s": time.process_time() - cpu0})  # fmt: skip

    async def poll_redis(self) -> None:
        while True:
            if self.inflight:
                keys = list(self.inflight)
                blobs = await self.redis.mget(keys)
                seen = time.monotonic()
                self.polls += 1
                for key, blob in zip(keys, blobs, strict=True):
                    if isinstance(blob, bytes) and key in self.inflight:
                        product, fut = self.inflight[key]
                        if product in decode_profile(blob).cart:
                            del self.inflight[key]
                            if not fut.done():
                                fut.set_result(seen)
            await asyncio.sleep(self.poll_s)

    async def marker(self, j: int, scheduled: float) -> dict[str, Any]:
        p = self.p
        size = p["batch_size"]
        cid = p["marker_ids"][j]
        product = f"mk-{p['tag']}-{j}"
        stamp = now_iso()
        call = {
            "type": "track", "event": "Product Added", "userId": cid,
            "messageId": f"{p['tag']}-mk-{j}", "timestamp": stamp,
            "properties": {"product_id": product, "price": 100.0, "quantity": 1,
                           "category": "bench.marker", "currency": "USD"},
            "context": {"channel": "web"},
        }  # fmt: skip
        body = Traffic.body([*self.traffic.batch(j * (size - 1), size - 1, stamp), call], stamp)
        raw = self.post_head % len(body) + body
        rec: dict[str, Any] = {"j": j, "errors": []}
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        profile_path = f"/v1/customers/{cid}"
        decide_path = f"/v1/decide?customer_id={cid}&channel=web"
        t0 = time.monotonic()
        rec["late_ms"] = (t0 - scheduled) * 1000
        rec["at_s"] = t0 - self.measure_from
        polls: list[asyncio.Task[tuple[float | None, str | None]]] = []
        if p["poll"] == "redis":
            self.inflight[self.keys.profile(cid)] = (product, fut)
        else:
            polls = [
                asyncio.create_task(self.poll_api(profile_path, self.has_product(product), t0)),
                asyncio.create_task(self.poll_api(decide_path, self.decided, t0)),
            ]
        try:
            status, answer = await self.pool.request(raw, self.timeout)
            rec["ack_ms"] = (time.monotonic() - t0) * 1000
            if status != 200 or orjson.loads(answer).get("accepted") != size:
                rec["errors"].append(f"ingest HTTP {status}: {answer[:120]!r}")
        except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
            rec["errors"].append(f"ingest {type(exc).__name__}: {exc}")
        if p["poll"] == "redis":
            try:
                remaining = max(0.0, t0 + self.timeout - time.monotonic())
                rec["redis_ms"] = (await asyncio.wait_for(fut, remaining) - t0) * 1000
            except TimeoutError:
                self.inflight.pop(self.keys.profile(cid), None)
                rec["errors"].append("profile not in Redis within the timeout")
                return rec
            polls = [
                asyncio.create_task(self.poll_api(profile_path, self.has_product(product), t0)),
                asyncio.create_task(self.poll_api(decide_path, self.decided, t0)),
            ]
        (rec["profile_ms"], e1), (rec["decide_ms"], e2) = await asyncio.gather(*polls)
        rec["errors"] += [e for e in (e1, e2) if e]
        return rec

    @staticmethod
    def has_product(product: str) -> Any:
        def check(status: int, body: bytes) -> str | None:
            if status == 404:
                return None
            if status != 200:
                return f"GET /v1/customers HTTP {status}: {body[:120]!r}"
            items = orjson.loads(body)["cart"]["items"]
            return "yes" if any(i["product_id"] == product for i in items) else None

        return check

    @staticmethod
    def decided(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"GET /v1/decide HTTP {status}: {body[:120]!r}"
        d = orjson.loads(body)
        if d["message"] is None:
            if d["suppressed_by"] != "no_eligible_message":
                return f"decision suppressed by {d['suppressed_by']}"
            return None
        if d["message"]["id"] != EXPECTED:
            return f"unexpected message {d['message']['id']} ({d['reason']})"
        return "yes"

    async def poll_api(self, path: str, check: Any, t0: float) -> tuple[float | None, str | None]:
        """(ms from `t0` to the first answer that reflects the marker, or None; an error)."""
        deadline = t0 + self.timeout
        raw = (self.get_head % path).encode()
        while (sent := time.monotonic()) < deadline:
            try:
                status, body = await self.pool.request(raw, self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
                return None, f"GET {path.split('?')[0]}: {type(exc).__name__}: {exc}"
            done = time.monotonic()
            self.api_requests += 1
            verdict = check(status, body)
            if verdict == "yes":
                return (done - t0) * 1000, None
            if verdict is not None:
                return None, verdict
            await asyncio.sleep(max(0.0, sent + self.poll_s - time.monotonic()))
        return None, f"GET {path.split('?')[0]}: not reflected within the timeout"


def _prober(plan: dict[str, Any]) -> Any:
    prober = Prober(plan)
    return prober.run


# --- the bench -------------------------------------------------------------------------------


def marker_ids(tag: str, count: int) -> list[str]:
    """Fresh customer ids outside the default catalog's holdout group."""
    policy = load_catalog(None).policy
    out: list[str] = []
    n = 0
    while len(out) < count:
        cid = f"fresh-{tag}-{n}"
        n += 1
        if not in_holdout(cid, policy.holdout_share, policy.holdout_salt):
            out.append(cid)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.freshness",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--rate", type=int, default=5000, help="events/s offered in all (5000)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds (30)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load first (5)")
    p.add_argument("--batch-size", type=int, default=50, help="calls per POST /v1/batch (50)")
    p.add_argument("--markers", type=float, default=10.0, help="marker batches per second (10)")
    p.add_argument("--poll", choices=("redis", "api"), default="redis",
                   help="what is polled from the send (see the docstring)")  # fmt: skip
    p.add_argument("--poll-ms", type=float, default=1.0, help="poll interval (1 ms)")
    p.add_argument("--customers", type=int, default=50_000, help="population of the load")
    p.add_argument("--timeout-s", type=float, default=10.0, help="a marker not visible by then")
    p.add_argument("--no-aof", action="store_true", help="redis-server without AOF")
    p.add_argument("--set", action="append", default=[], metavar="NUDGE_X=V",
                   help="an extra setting for the dataflow and the API (repeatable)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write every marker's times to this file")
    p.add_argument("--prober", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rate < args.markers * args.batch_size or args.batch_size < 2:
        p.error("--rate must cover the markers' batches, --batch-size must be at least 2")
    for item in args.set:
        if not item.startswith("NUDGE_") or "=" not in item:
            p.error(f"--set {item}: expected NUDGE_NAME=value")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prober:
        serve(_prober)
        return 0
    print(header("nudge bench: freshness (ingest → profile and decision visible)",
                 "bench.freshness"))  # fmt: skip
    dataset = data_path(REES46)
    tag = os.urandom(4).hex()
    count = int(args.seconds * args.markers)
    settings = dict(item.split("=", 1) for item in args.set)
    samples: list[tuple[float, list[int | None], int, int | None]] = []
    with tempfile.TemporaryDirectory(prefix="nudge-bench-freshness-") as tmp:
        dep = Deployment(Path(tmp), workers=1, aof=not args.no_aof, settings=settings)
        gens: list[Generator] = []
        try:
            dep.start()
            client = dep.client()
            load = LoadPlan(
                kind="ingest", host="127.0.0.1", port=dep.api_port, key=dep.write_key,
                rate=args.rate - args.markers * args.batch_size, customers=args.customers,
                warmup_s=args.warmup, duration_s=args.seconds, window_s=args.seconds,
                timeout_s=args.timeout_s, connections=8, batch_size=args.batch_size,
                dataset=str(dataset), tag=tag + "l",
            )  # fmt: skip
            plan = {
                "host": "127.0.0.1", "port": dep.api_port, "write_key": dep.write_key,
                "api_key": dep.api_key, "redis_url": dep.url, "prefix": dep.keys.prefix,
                "batch_size": args.batch_size, "markers_per_s": args.markers,
                "warmup_s": args.warmup, "duration_s": args.seconds, "timeout_s": args.timeout_s,
                "poll_ms": args.poll_ms, "poll": args.poll, "tag": tag,
                "customers": args.customers, "dataset": str(dataset),
                "marker_ids": marker_ids(tag, count),
            }  # fmt: skip
            gens = [Generator(asdict(load)), Generator(plan, "bench.freshness", ("--prober",))]
            for g in gens:
                g.ready()
            pids = [*dep.processes().values(), *(g.proc.pid for g in gens)]
            go = time.monotonic()
            for g in gens:
                g.go()
            measure_from = go + 0.2 + args.warmup
            end = measure_from + args.seconds
            while time.monotonic() < measure_from:
                time.sleep(0.05)
            m0, s0, t0 = dep.dataflow_metrics(), dep.snapshot(client), time.monotonic()
            with CpuWindow(pids) as window:
                while (now := time.monotonic()) < end:
                    snap = dep.snapshot(client)
                    fresh = [p.fresh_ms for p in snap.partitions]
                    samples.append((now - measure_from, fresh, snap.max_lag_ms(), snap.behind()))
                    if dead := dep.alive():
                        raise RuntimeError(f"died during the run: {', '.join(dead)}")
                    time.sleep(0.25)
                m1, s1, t1 = dep.dataflow_metrics(), dep.snapshot(client), time.monotonic()
            loaded = LoadResult.from_json(gens[0].line(60))
            probed = orjson.loads(gens[1].line(args.timeout_s + 60))
            client.close()
        finally:
            for g in gens:
                g.stop()
            dep.stop()
    return report(args, loaded, probed, (m0, m1), (s0, s1, t1 - t0), samples, window.others_cores)


def _row(name: str, values: list[float], total: int) -> list[str]:
    values = sorted(values)
    if not values:
        return [name, "0", "-", "-", "-", "-", str(total)]
    return [name, f"{len(values):,}", f"{pct(values, 0.5):.1f}", f"{pct(values, 0.9):.1f}",
            f"{pct(values, 0.99):.1f}", f"{values[-1]:.1f}",
            f"{total - len(values):,}"]  # fmt: skip


def report(
    args: argparse.Namespace,
    loaded: LoadResult,
    probed: dict[str, Any],
    metrics: tuple[str, str],
    snaps: tuple[Any, Any, float],
    samples: list[tuple[float, list[int | None], int, int | None]],
    others: float,
) -> int:
    markers: list[dict[str, Any]] = probed["markers"]
    if args.json is not None:
        args.json.write_bytes(orjson.dumps({"markers": markers, "lag": samples}))
    n = len(markers)
    total = loaded.total()
    marker_events = sum(args.batch_size for m in markers if "ack_ms" in m and not m["errors"])
    accepted = total.events + marker_events
    s0, s1, dt = snaps
    read_rate = (s1.events() - s0.events()) / dt if dt > 0 else 0.0
    lag_max = max((s[2] for s in samples), default=0)
    behind_max = max((s[3] or 0 for s in samples), default=0)
    print(f"deploy    redis-server (AOF {'off' if args.no_aof else 'everysec'}), `nudge dataflow` "
          f"(1 process, 1 worker, recovery on, 4 partitions), `nudge api` (1 uvicorn worker); "
          f"127.0.0.1{'; ' + ' '.join(args.set) if args.set else ''}")  # fmt: skip
    print(f"load      {args.rate:,} events/s offered through POST /v1/batch, {args.batch_size} "
          f"calls a batch ({args.rate / args.batch_size:,.0f} batches/s, open loop), REES46 "
          f"events of {args.customers:,} customers stamped now; {args.warmup:g} s warm-up + "
          f"{args.seconds:g} s measured")  # fmt: skip
    print(f"markers   {args.markers:g}/s ({n} in all): one Product Added (unique product, price "
          f"100) for a fresh customer, last call of a normal {args.batch_size}-call batch; "
          f"poll {args.poll} every {args.poll_ms:g} ms ({probed['polls']:,} Redis polls, "
          f"{probed['api_requests']:,} API requests)")  # fmt: skip
    print(f"achieved  {accepted / args.seconds:,.0f} events/s accepted by the API "
          f"({args.rate:,} offered); the dataflow read {read_rate:,.0f} events/s; "
          f"POST p50 {total.latency.pct(0.5):.1f} ms, p99 {total.latency.pct(0.99):.1f} ms, "
          f"late p99 {total.late.pct(0.99):.1f} ms")  # fmt: skip
    print(f"lag       stream lag max {lag_max / 1000:.2f} s, at most {behind_max:,} entries "
          f"behind (models.progress, sampled every 0.25 s)")  # fmt: skip
    rows = [
        _row("POST /v1/batch answered", [m["ack_ms"] for m in markers if "ack_ms" in m], n),
        _row("profile in Redis (poller)", [m["redis_ms"] for m in markers
                                           if m.get("redis_ms") is not None], n),
        _row("profile: GET /v1/customers/{id}", [m["profile_ms"] for m in markers
                                                 if m.get("profile_ms") is not None], n),
        _row(f"decision: GET /v1/decide ({EXPECTED})", [m["decide_ms"] for m in markers
                                                        if m.get("decide_ms") is not None], n),
    ]  # fmt: skip
    if args.poll == "api":
        rows.pop(1)
    before, after = histogram(metrics[0], PROBES), histogram(metrics[1], PROBES)
    bounds = {q: bucket_quantile(before, after, q) for q in (0.5, 0.9, 0.99, 1.0)}
    probes = bounds[0.5][1]
    mean = (histogram_sum(metrics[1], PROBES) - histogram_sum(metrics[0], PROBES)) / max(1, probes)

    def le(q: float) -> str:
        v = bounds[q][0] * 1000
        return "-" if math.isnan(v) else f"≤{v:.0f}"

    rows.append(["dataflow probes, /metrics buckets", f"{probes:,}", le(0.5), le(0.9), le(0.99),
                 le(1.0), "-"])  # fmt: skip
    fresh: list[float] = []
    last: list[int | None] = [None] * len(samples[0][1]) if samples else []
    for _, values, _, _ in samples:
        for i, v in enumerate(values):
            if v is not None and v != last[i]:
                fresh.append(float(v))
            last[i] = v
    rows.append(_row("dataflow probes, `fresh` sampled", fresh, len(fresh)))
    rows[-1][-1] = "-"
    print()
    print(table(rows, ["from the send (ms)", "n", "p50", "p90", "p99", "max", "not seen"]))
    print(f"probes    mean {mean * 1000:.1f} ms over {probes} probes (entry appended → batch "
          "written: no HTTP, no poll)")  # fmt: skip
    taken = [counters(m, "nudge_dataflow_snapshots") for m in metrics]
    size = [counters(m, "nudge_dataflow_snapshot_bytes") for m in metrics]
    print("snapshots " + ", ".join(
        f"{step} {(n - taken[0].get(step, 0)) / dt:,.0f}/s "
        f"({(size[1].get(step, 0) - size[0].get(step, 0)) / dt / 1e6:.2f} MB/s)"
        for step, n in sorted(taken[1].items())
    ) + " (recovery snapshots the dataflow encoded, by step)")  # fmt: skip
    errors = [e for m in markers for e in m["errors"]]
    print(
        f"errors    load: {total.errors + loaded.warmup.errors} "
        f"({total.timeouts + loaded.warmup.timeouts} timeouts); markers: {len(errors)}"
    )
    for e in (loaded.error_samples + errors)[:5]:
        print(f"          {e}")
    note = "  WARNING: figures are biased" if others > 0.1 else ""
    print(f"others    processes not ours kept {others:.2f} cores busy during the measured "
          f"window{note}")  # fmt: skip
    for name, key in (("profile visible", "profile_ms"), ("decision visible", "decide_ms")):
        seen: list[float] = sorted(m[key] for m in markers if m.get(key) is not None)
        p99 = pct(seen, 0.99) if len(seen) == n and n else math.inf
        met = p99 <= TARGET_MS
        shown = f"{p99:.1f} ms" if math.isfinite(p99) else f"{n - len(seen)} never seen"
        print(f"target    {name} p99 ≤ {TARGET_MS:g} ms at {args.rate:,} events/s: "
              f"{'met' if met else 'NOT met'} ({shown})")  # fmt: skip
    rate_ok = accepted / args.seconds >= 0.98 * args.rate
    if not rate_ok:
        print(f"NOTE      the machine did not hold {args.rate:,} events/s: "
              f"{accepted / args.seconds:,.0f}/s were accepted")  # fmt: skip
    return 0 if not errors and total.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
