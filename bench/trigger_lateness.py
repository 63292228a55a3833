"""Trigger lateness, live: how long after its deadline a trigger is in the triggers stream,
while the dataflow takes a steady 5,000 events/s.

``python -m bench.trigger_lateness [--rate 5000] [--duration 20] [--window-s 2]``

A real redis-server and the real `nudge dataflow` process (recovery on, 4 partitions, the
abandoned-cart rule with a `--window-s` window, the other rules off). This process replays
REES46 rows, restamped to the wall clock as they are sent, at a fixed rate straight into the
event streams (50-event entries, as the ingest API writes them: the API is not what is
measured). Every cart left alone for the window fires a trigger; its lateness is the time its
entry got in the stream (the entry id's milliseconds) minus its deadline (`due_at`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import orjson
import redis

from bench.decide import pct
from bench.machine import REES46, data_path, header, table
from cli.datasets import read_calls
from cli.embedded import RedisServer
from models.codec import ENTRY_FIELD, encode_entry
from models.events import Event
from models.keys import Keys, partition_for
from models.segment import normalize

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def ms_of(iso_time: str) -> int:
    return int(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.trigger_lateness",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--rate", type=int, default=5000, help="events/s offered (5000)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (20)")
    p.add_argument("--window-s", type=int, default=2, help="abandoned-cart window (2)")
    args = p.parse_args(argv)
    print(header("nudge bench: trigger lateness under load", "bench.trigger_lateness"))
    calls = [c for _, c in read_calls(data_path(REES46))]
    with tempfile.TemporaryDirectory(prefix="nudge-bench-triggers-") as tmp:
        server = RedisServer(Path(tmp) / "redis", aof=False).start()
        r = redis.Redis.from_url(server.url)
        keys = Keys("bench")
        env = {**os.environ, "NUDGE_REDIS_URL": server.url, "NUDGE_KEY_PREFIX": "bench",
               "NUDGE_PARTITIONS": str(PARTITIONS), "NUDGE_RECOVERY_DIR": f"{tmp}/recovery",
               "NUDGE_TRIGGER_CART_S": str(args.window_s), "NUDGE_TRIGGER_CHECKOUT_S": "",
               "NUDGE_TRIGGER_BROWSE_S": "", "PYTHONPATH": str(ROOT)}  # fmt: skip
        r.hset(keys.meta(), "partitions", PARTITIONS)
        df = subprocess.Popen([sys.executable, "-m", "cli.main", "dataflow"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(3.0)  # started, caught up on empty streams
            sent = send(r, keys, calls, args.rate, args.duration)
            time.sleep(args.window_s + 3.0)  # the last carts' deadlines pass
            lag = [
                int(entry_id.split(b"-")[0]) - ms_of(orjson.loads(f[b"data"])["due_at"])
                for entry_id, f in r.xrange(keys.triggers())
            ]
        finally:
            df.send_signal(signal.SIGINT)
            df.wait(30)
            server.stop()
    lag.sort()
    print(f"load      {sent:,} events in {args.duration:.0f} s ({sent / args.duration:,.0f}/s "
          f"offered at {args.rate:,}/s) into {PARTITIONS} partitions; "
          f"window {args.window_s} s")  # fmt: skip
    rows = [("triggers", f"{len(lag):,}"), ("p50 ms", f"{pct(lag, 0.5):.0f}"),
            ("p99 ms", f"{pct(lag, 0.99):.0f}"), ("max ms", f"{lag[-1] if lag else 0:.0f}"),
            ("fired before the deadline", f"{sum(1 for x in lag if x < 0)}")]  # fmt: skip
    print(table(rows, ("lateness (in stream - due)", "value")))
    return 0


def send(r: redis.Redis, keys: Keys, calls: list[dict], rate: int, duration: float) -> int:  # type: ignore[type-arg]
    """Restamp REES46 calls to now and XADD them at `rate`/s (50 per entry) for `duration`."""
    per_entry = 50
    interval = per_entry / rate
    source = itertools.cycle(enumerate(calls))
    start = time.perf_counter()
    sent = 0
    n = 0
    while (now := time.perf_counter()) - start < duration:
        due = start + n * interval
        if due > now:
            time.sleep(due - now)
        wall = time.time_ns() // 1_000_000
        stamp = datetime.fromtimestamp(wall / 1000).astimezone().isoformat()
        by_part: dict[int, list[Event]] = {}
        for i, call in itertools.islice(source, per_entry):
            lap = sent // len(calls)  # a new customer id each lap: fresh carts
            c = {**call, "userId": f"{call['userId']}-{lap}", "timestamp": stamp,
                 "messageId": f"{i}-{lap}"}  # fmt: skip
            ev = normalize(c, received_at=wall, new_id=lambda: "x")
            by_part.setdefault(partition_for(ev.customer_key, PARTITIONS), []).append(ev)
            sent += 1
        pipe = r.pipeline(transaction=False)
        for part, evs in by_part.items():
            pipe.xadd(keys.events(part), {ENTRY_FIELD: encode_entry(evs)})
        pipe.execute()
        n += 1
    return sent


if __name__ == "__main__":
    raise SystemExit(main())
