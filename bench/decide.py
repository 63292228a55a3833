"""Decision latency: ``GET /v1/decide`` under open-loop fixed-rate load, beside a bare endpoint
doing one Redis HGETALL, measured in the same run, against the same API process.

``python -m bench.decide [--duration 10] [--rates 1000,2000] [--rounds 3] [--customers 20000]
[--pin]``

- Redis: an embedded redis-server (AOF off), loaded with the profiles of the REES46 sample's
  customers, built by the real transition (`models.customer.step`) and stored as the dataflow
  stores them, plus one 10-field hash per customer for the bare endpoint.
- API: ONE uvicorn worker (uvloop, httptools, no access log), the app of `nudge api` plus the
  bench-only routes ``/bench/bare`` (redis-py's client) and ``/bench/bare-mux`` (the
  multiplexed connection the decision uses: the baseline the ratio is judged against), both
  served the short way ``GET /v1/decide`` is (`api.hot`) (`bench/decide_app.py`), in its own
  process.
- Load: `bench/openloop.py`, another process: requests scheduled at a fixed rate (open loop),
  64 keep-alive connections, customers round-robin, channel ``web`` (the full path: eligibility
  of every web message, arbitration, and the atomic Lua write when a message is chosen).
  Latency is from request written to answer read, on the load generator's clock; "late" says
  how far behind schedule requests started (0 when the server keeps up).
- Rounds: at each rate, `--rounds` runs of each endpoint, taking turns (bare, bare-mux,
  decide); the ratio is judged round by round (decide's p99 over bare-mux's of the same
  round), on the median ratio. Every decide run starts with no contact history (so the
  same messages are servable in every run); "served" is the share of its requests that
  chose a message (the rest: cooldown, caps, no eligible message).
- Saturation: the same connections sending back to back for 5 s, once.
- ``--pin``: the API's process alone on the last CPU, Redis, the load and the bench on the
  others (an API worker with a core of its own, as in production).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import orjson
import redis

from bench.decide_app import bare_key
from bench.ingest import start_api
from bench.machine import REES46, data_path, header, stop_process, table
from cli.datasets import read_calls
from cli.embedded import RedisServer, free_port
from models.customer import ProfileParams, step
from models.keys import Keys
from models.profile import encode_profile
from models.segment import normalize

API_KEY: Final = "bench-api-key"
P99_TARGET_MS: Final = 3.0
RATIO_TARGET: Final = 1.5
CONNECTIONS: Final = 64


def seed(client: redis.Redis, keys: Keys, limit: int) -> list[str]:
    """Profiles of the REES46 customers (real shapes), and a hash each for the bare route."""
    params = ProfileParams()
    now = time.time_ns() // 1_000_000
    states: dict[str, Any] = {}
    for _, call in read_calls(data_path(REES46)):
        ev = normalize(call, received_at=now, new_id=lambda: "x")
        states[ev.customer_key], _ = step(states.get(ev.customer_key), ev, params)
    # the sample is from 2019: move every customer to "two hours ago" so carts and sessions
    # are as recent as a live shop's
    ids = list(states)[:limit]
    pipe = client.pipeline(transaction=False)
    for n, cid in enumerate(ids, 1):
        s = states[cid]
        shift = now - 2 * 3_600_000 - s.last_seen
        s.first_seen += shift
        s.last_seen += shift
        s.anchor += shift
        if s.cart_updated is not None:
            s.cart_updated += shift
        if s.last_order is not None:
            s.last_order += shift
        pipe.set(keys.profile(cid), encode_profile(s, params))
        pipe.hset(bare_key(keys.base, cid), mapping={f"f{i}": str(i) for i in range(10)})
        if n % 500 == 0:
            pipe.execute()
    pipe.execute()
    return ids


def api_command(port: int) -> list[str]:
    """The API of `nudge api` plus the baseline route, as `nudge api` serves it."""
    return [
        sys.executable, "-m", "uvicorn", "bench.decide_app:create", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def load(
    port: int, paths: list[str], rate: float, duration: float, cpus: set[int] | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nudge-openloop-") as tmp:
        result = Path(tmp) / "result.json"
        plan = {
            "host": "127.0.0.1", "port": port, "api_key": API_KEY, "paths": paths,
            "rate": rate, "duration_s": duration, "warmup_s": 1.0, "connections": CONNECTIONS,
            "result_path": str(result),
        }  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.openloop"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ},
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        proc.stdin.write(orjson.dumps(plan) + b"\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == b"ready"
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        said = proc.stdout.readline().strip()
        proc.stdin.close()
        proc.wait(30)
        if said != b"done" or proc.returncode != 0:
            raise RuntimeError(f"bench.openloop failed (exit {proc.returncode}, said {said!r})")
        out: dict[str, Any] = orjson.loads(result.read_bytes())
        return out


def fresh_history(client: redis.Redis, keys: Keys) -> None:
    """No contact history and no decision hold: every decide run starts from the same state
    (else each run would find the messages the runs before it served in cooldown, and do
    less work)."""
    for pattern in (keys.contacts("*"), keys.hold("*")):
        found = list(client.scan_iter(match=pattern, count=5000))
        for i in range(0, len(found), 1000):
            client.delete(*found[i : i + 1000])


def served_count(client: redis.Redis, keys: Keys) -> int:
    """Decisions that chose a message so far (`Keys.stats`, counted by the decision log)."""
    raw: Any = client.hget(keys.stats(), "decisions_served")
    return int(raw or 0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decide", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--rates", default="1000,2000", help="offered requests/s, comma-separated")
    p.add_argument("--customers", type=int, default=20_000, help="customers loaded")
    p.add_argument("--rounds", type=int, default=3, help="runs of each endpoint at each rate")
    p.add_argument(
        "--pin",
        action="store_true",
        help="the API on the last CPU alone; Redis and the load on the others",
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: at least 1")
    rates = [float(r) for r in args.rates.split(",")]
    print(header("nudge bench: decision latency (GET /v1/decide vs one HGETALL)", "bench.decide"))
    rows: list[list[Any]] = []
    results: dict[tuple[str, float, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="nudge-bench-decide-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False).start()
        api = None
        try:
            client = redis.Redis.from_url(server.url)
            keys = Keys("nudge")
            ids = seed(client, keys, args.customers)
            print(f"redis     {server.url}, AOF off; {len(ids):,} REES46 customers loaded")
            port = free_port()
            env = {
                **os.environ, "NUDGE_REDIS_URL": server.url, "NUDGE_API_KEYS": API_KEY,
                "NUDGE_WRITE_KEYS": "bench-write", "NUDGE_ADMIN_KEYS": "bench-admin",
            }  # fmt: skip
            api = start_api(env, port, api_command(port))
            print(f"api       one uvicorn worker (uvloop, httptools), pid {api.pid}, port {port}")
            others: set[int] | None = None
            if args.pin:
                cpus = sorted(os.sched_getaffinity(0))
                if len(cpus) < 2:
                    p.error("--pin: needs at least 2 CPUs")
                others = set(cpus[:-1])
                os.sched_setaffinity(api.pid, {cpus[-1]})
                assert server.proc is not None
                os.sched_setaffinity(server.proc.pid, others)
                os.sched_setaffinity(0, others)
                print(
                    f"pinned    api on CPU {cpus[-1]}; redis, load and this process on "
                    f"{sorted(others)}"
                )
            print(f"load      bench.openloop in another process, {CONNECTIONS} connections, "
                  f"1 s warm-up + {args.duration:g} s measured per run, channel web")  # fmt: skip
            cyc = itertools.cycle(ids)
            targets = {
                "decide": [f"/v1/decide?customer_id={next(cyc)}&channel=web" for _ in ids],
                "bare": [f"/bench/bare?customer_id={cid}" for cid in ids],
                "bare-mux": [f"/bench/bare-mux?customer_id={cid}" for cid in ids],
            }
            # rounds alternate the endpoints at each rate, so that a slow minute of this
            # shared VM weighs on both sides of a ratio; saturation once, at the end
            plan = [(rate, n) for rate in rates for n in range(1, args.rounds + 1)]
            for rate, n in [*plan, (0.0, 1)]:
                for name in ("bare", "bare-mux", "decide"):
                    served = "-"
                    if name == "decide":
                        fresh_history(client, keys)
                        before = served_count(client, keys)
                    out = load(port, targets[name], rate, args.duration if rate else 5.0, others)
                    if name == "decide":
                        time.sleep(0.2)  # the decision log's last flush (every 5 ms)
                        served = f"{(served_count(client, keys) - before) / out['sent']:.0%}"
                    results[(name, rate, n)] = out
                    lat = out["latencies_ms"]
                    rows.append([
                        name, f"{rate:,.0f}" if rate else "saturation", n, served,
                        f"{out['measured'] / out['measured_s']:,.0f}" if out["measured_s"] else "-",
                        f"{pct(lat, 0.5):.2f}", f"{pct(lat, 0.99):.2f}", f"{pct(lat, 0.999):.2f}",
                        f"{pct(out['late_ms'], 0.99):.2f}" if rate else "-", out["errors"],
                    ])  # fmt: skip
            decisions = client.zcard(keys.contacts(ids[0]))
            sent = sum(1 for _ in client.scan_iter(match=keys.contacts("*"), count=5000))
            client.close()
        finally:
            if api is not None:
                stop_process(api)
            server.stop()
    print()
    print(table(rows, ["endpoint", "offered/s", "round", "served", "done/s", "p50 ms", "p99 ms",
                       "p99.9 ms", "late p99 ms", "errors"]))  # fmt: skip
    print(f"checked   {sent:,} customers have a recorded contact (first customer: {decisions})")

    def p99s(name: str, rate: float) -> list[float]:
        return [pct(results[(name, rate, n)]["latencies_ms"], 0.99)
                for n in range(1, args.rounds + 1)]  # fmt: skip

    top = max(rates)
    d99 = statistics.median(p99s("decide", top))
    print(f"target    decide p99 ≤ {P99_TARGET_MS:g} ms at {top:,.0f}/s: "
          f"{'met' if d99 <= P99_TARGET_MS else 'NOT met'} ({d99:.2f} ms, median of "
          f"{args.rounds} round(s))")  # fmt: skip
    # judged at every rate against the baseline on the decision's own transport, round by
    # round (the median of the ratios); redis-py's beside it
    for rate in sorted(rates):
        for name in ("bare-mux", "bare"):
            ratios = [d / b for d, b in zip(p99s("decide", rate), p99s(name, rate), strict=True)]
            mid = statistics.median(ratios)
            note = "" if name == "bare-mux" else "  (redis-py's pooled client: for reference)"
            verdict = "met" if mid <= RATIO_TARGET else "NOT met"
            each = " ".join(f"{r:.2f}" for r in ratios)
            print(f"target    decide p99 ≤ {RATIO_TARGET:g} x {name} p99 at {rate:,.0f}/s: "
                  f"{verdict} ({mid:.2f} x; rounds: {each}){note}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
