"""What a decision and an event cost, in CPU instructions counted by callgrind: a figure that
does not move with the host's load (the wall-clock benches' baselines moved by 2 - 3 x
between days on these shared VMs), for comparing commits and for the share of a decision or
an event that is nudge's own work. It is not a target of any issue: those are in
`bench.decide` (latency under load) and `bench.dataflow` (events/s).

- decision: `GET /v1/decide` and the bench's `/bench/bare-mux` (one HGETALL over the same
  multiplexed connection, `bench.decide_app`), called through the ASGI app in-process with 8
  requests in flight, on the REES46 profiles of `bench.decide` (channel web); Redis runs in
  its own process (not counted).
- dataflow: `dataflows.flow.build_flow` and the bare source → key → dict → MSET flow of
  `bench.dataflow`, one worker, recovery off, on REES46 plus a share of Taobao.

Each figure is (instructions of a run doing N units) - (instructions of the same run doing
none) over N, both runs under ``valgrind --tool=callgrind`` (~50 x slower: a few minutes per
run). What runs on timers would run as often per second of a slowed run, so weigh ~50 x more
per unit than at full speed: the children stretch those timers by `SLOWDOWN` (the decision
log's 5 ms flush, the model refresh, the ops sampler, the product index's publication, the
freshness probes). Even so the figures are for comparing like with like, not for converting
into seconds.

    python -m bench.cost [--requests 1000] [--taobao 0.2] [--only decide|dataflow]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from bench.machine import header, table

DECIDE_MODES = ("none", "decide", "bare-mux")
FLOW_MODES = ("none", "nudge", "bare")
WARM = 400  # requests of each endpoint before the count, in every mode
IN_FLIGHT = 8
SLOWDOWN = 50  # callgrind's, roughly: the children's timers are stretched by as much


def _decide_child(mode: str, requests: int) -> None:
    import redis
    import uvloop

    from bench.decide import API_KEY, fresh_history, seed
    from cli.embedded import RedisServer
    from config.runtime import tune_gc
    from models.keys import Keys

    with tempfile.TemporaryDirectory(prefix="nudge-bench-cost-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False).start()
        try:
            os.environ.update({"NUDGE_REDIS_URL": server.url, "NUDGE_API_KEYS": API_KEY,
                               "NUDGE_WRITE_KEYS": "bench-write", "NUDGE_ADMIN_KEYS": "bench-admin",
                               "NUDGE_LOG_LEVEL": "WARNING",
                               "NUDGE_MODEL_REFRESH_S": str(2 * SLOWDOWN),
                               "NUDGE_OPS_SAMPLE_S": "60"})  # fmt: skip
            import api.main
            from api.decision_log import DecisionLog
            from bench.decide_app import create
            from config import get_settings

            api.main.DecisionLog = partial(DecisionLog, flush_s=0.005 * SLOWDOWN)  # type: ignore[misc]

            client = redis.Redis.from_url(server.url)
            keys = Keys(get_settings().key_prefix)
            ids = seed(client, keys, 4504)
            app = create()
            uvloop.run(_drive(app, ids, mode, requests, lambda: fresh_history(client, keys),
                              tune_gc))  # fmt: skip
        finally:
            server.stop()


async def _drive(app: Any, ids: list[str], mode: str, n: int, reset: Any, tune: Any) -> None:
    from bench.decide import API_KEY

    life_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    life_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await life_in.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    life = asyncio.create_task(app(scope, life_in.get, life_out.put))
    started = await life_out.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    tune()  # as `nudge api` does once started
    headers = [(b"authorization", f"Bearer {API_KEY}".encode()), (b"host", b"127.0.0.1")]

    async def one(customer: str, path: str) -> None:
        query = f"customer_id={customer}&channel=web".encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "root_path": "", "query_string": query, "headers": headers,
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"{path}: {sent}")

    async def run(first: int, count: int, path: str) -> None:
        for i in range(first, first + count, IN_FLIGHT):
            await asyncio.gather(*(one(ids[j % len(ids)], path) for j in range(i, i + IN_FLIGHT)))

    await run(0, WARM, "/v1/decide")
    await run(0, WARM, "/bench/bare-mux")
    reset()  # every customer counted starts with no contact history, as in `bench.decide`
    if mode != "none":
        await run(WARM, n, "/v1/decide" if mode == "decide" else "/bench/bare-mux")
    await life_in.put({"type": "lifespan.shutdown"})
    await life


def _flow_child(mode: str, taobao: float) -> None:
    import redis

    from bench.dataflow import normalized, preload, run_once, workload_of
    from bench.machine import REES46, TAOBAO, data_path
    from cli.embedded import RedisServer
    from config import Settings
    from config.runtime import DATAFLOW_YOUNG, tune_gc
    from models.keys import Keys

    first, named = normalized([data_path(REES46)])
    more, more_named = normalized([data_path(TAOBAO)], taobao)
    work = workload_of(first + more, named + more_named, 4, 1000)
    tune_gc(DATAFLOW_YOUNG)
    with tempfile.TemporaryDirectory(prefix="nudge-bench-cost-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False).start()
        try:
            settings = Settings(redis_url=server.url, partitions=4,
                                products_publish_s=5 * SLOWDOWN, probe_s=SLOWDOWN)  # fmt: skip
            client = redis.Redis.from_url(server.url)
            if mode == "none":
                preload(client, Keys(settings.key_prefix), work)
            else:
                run_once(mode, False, settings, work, client, Path(tmp), [])
        finally:
            server.stop()
    print(f"units {work.events}")


def _counted(args: list[str]) -> tuple[int, str]:
    """Instructions of ``python -m bench.cost --child ...args`` under callgrind, and what it
    printed."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.cost", "--child", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"bench.cost {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return int(found.group(1)), proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="decisions counted per run")
    p.add_argument("--taobao", type=float, default=0.2, help="share of the Taobao sample")
    p.add_argument("--only", choices=["decide", "dataflow"], help="one of the two")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, mode, size = args.child
        if kind == "decide":
            _decide_child(mode, int(size))
        else:
            _flow_child(mode, float(size))
        return 0
    if shutil.which("valgrind") is None:
        p.error("needs valgrind (Debian: apt-get install valgrind)")
    print(header("nudge bench: cost in instructions (callgrind)", "bench.cost"))
    jobs: list[list[str]] = []
    if args.only in (None, "decide"):
        jobs += [["decide", m, str(args.requests)] for m in DECIDE_MODES]
    if args.only in (None, "dataflow"):
        jobs += [["flow", m, str(args.taobao)] for m in FLOW_MODES]
    print(f"runs      {len(jobs)} under callgrind, two at a time (a few minutes each)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip([tuple(j) for j in jobs], pool.map(_counted, jobs), strict=True))
    rows: list[list[Any]] = []
    if args.only in (None, "decide"):
        n = args.requests
        none = done["decide", "none", str(n)][0]
        per = {m: (done["decide", m, str(n)][0] - none) / n for m in DECIDE_MODES[1:]}
        rows.append(["GET /v1/decide", "request", f"{per['decide']:,.0f}",
                     f"{per['decide'] / per['bare-mux']:.2f} x bare-mux"])  # fmt: skip
        rows.append(["bare-mux (one HGETALL)", "request", f"{per['bare-mux']:,.0f}", "1.00"])
    if args.only in (None, "dataflow"):
        none = done["flow", "none", str(args.taobao)][0]
        units = int(done["flow", "nudge", str(args.taobao)][1].split()[-1])
        per = {m: (done["flow", m, str(args.taobao)][0] - none) / units for m in FLOW_MODES[1:]}
        ratio = f"{per['nudge'] / per['bare']:.2f} x bare"
        rows.append([f"dataflow (build_flow), {units:,} events", "event", f"{per['nudge']:,.0f}",
                     ratio])  # fmt: skip
        rows.append(["bare flow (source→key→dict→MSET)", "event", f"{per['bare']:,.0f}", "1.00"])
    print()
    print(table(rows, ["what", "per", "instructions", "ratio"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
