"""Dataflow scaling: events/s of `nudge dataflow` with 1 and with 2 processes, same run.

Workload: the REES46 + Taobao replay of `bench.dataflow` (113,602 events, 63,236 customers),
pre-loaded into the 4 stream partitions as the API lays it out. Each run is the real command,
`nudge dataflow --processes P -w 1` (P = 1: one process, one worker; P = 2: a Bytewax cluster of
two processes, one worker each, exchanging keyed items over TCP), against a fresh key prefix,
with recovery on (a fresh store) unless `--no-recovery`.

The rate is read from the dataflow's own progress reports (`models.progress`, every 0.2 s per
partition): events / (time every partition had reported all its events - time the first report
showed any), polled every 20 ms; the ±0.2 s of report granularity at both ends is why the
replay is run `--rounds` times, alternating, and medians are shown. Start-up (interpreter,
imports, cluster handshake) is not counted. Each run is checked: one profile per customer,
events counted once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.dataflow import REES46, TAOBAO, Workload, build_workload, check, data_path, preload
from bench.machine import CpuWindow, descendants, header, table
from cli.embedded import LocalCluster, RedisServer
from cli.status import snapshot
from config.connect import sync_client
from models.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def run_once(
    processes: int, url: str, client: redis.Redis, work: Workload, tmp: Path, recovery: bool,
    round_: int, watch: list[int], cluster: bool = False,
) -> tuple[float, float]:  # fmt: skip
    """events/s, and cores used by processes not ours meanwhile."""
    prefix = f"scale{processes}r{round_}"
    keys = Keys(prefix)
    preload(client, keys, work)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")},
        "NUDGE_REDIS_URL": url, "NUDGE_REDIS_CLUSTER": str(cluster).lower(),
        "NUDGE_KEY_PREFIX": prefix, "NUDGE_PARTITIONS": str(PARTITIONS),
        "NUDGE_METRICS_PORT": "0", "NUDGE_RECOVERY_DIR": str(tmp / prefix),
        "NUDGE_LOG_FORMAT": "text", "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    args = [sys.executable, "-m", "cli.main", "dataflow", "-w", "1", "--processes",
            str(processes)] + ([] if recovery else ["--no-recovery"])  # fmt: skip
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    first = last = None
    want = work.per_partition
    try:
        with CpuWindow([proc.pid]) as window:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                snap = snapshot(client, keys, PARTITIONS)
                now = time.monotonic()
                if first is None and snap.events() > 0:
                    first = now
                if all(p.events >= want.get(p.partition, 0) for p in snap.partitions):
                    last = now
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"the dataflow exited with {proc.returncode}")
                for child in descendants(proc.pid):  # a cluster's processes are ours too
                    if child not in window.pids:
                        window.pids.append(child)
                time.sleep(0.02)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if first is None or last is None:
        raise RuntimeError(f"{processes} process(es): the replay was not read in time")
    time.sleep(0.5)  # the last batch's profiles
    check("nudge", client, keys, work)
    return work.events / (last - first), window.others_cores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-recovery", action="store_true", help="run without recovery snapshots")
    p.add_argument("--redis-cluster", action="store_true",
                   help="against a local 3-master Redis Cluster (NUDGE_REDIS_CLUSTER)")  # fmt: skip
    args = p.parse_args(argv)
    print(header("nudge bench: dataflow scaling (1 vs 2 processes)", "bench.scaling"))
    work = build_workload([data_path(REES46), data_path(TAOBAO)], PARTITIONS, 1000)
    print(f"workload  {work.events:,} events, {work.customers:,} customers, "
          f"{len(work.entries):,} entries over {PARTITIONS} partitions")  # fmt: skip
    recovery = not args.no_recovery
    print(f"flow      `nudge dataflow --processes P -w 1`, recovery {'on' if recovery else 'off'},"
          f" {args.rounds} round(s) alternating; rate from the progress reports")  # fmt: skip
    rates: dict[int, list[float]] = {1: [], 2: []}
    others = 0.0
    with tempfile.TemporaryDirectory(prefix="nudge-bench-scaling-") as tmp_name:
        tmp = Path(tmp_name)
        server: RedisServer | LocalCluster
        if args.redis_cluster:
            server = LocalCluster(tmp / "cluster", masters=3).start()
            pids = [n.proc.pid for n in server.nodes if n.proc is not None]
        else:
            server = RedisServer(tmp / "redis").start()
            pids = [server.proc.pid] if server.proc is not None else []
        print(f"redis     {'a 3-master Redis Cluster' if args.redis_cluster else 'one server'},"
              " on this machine")  # fmt: skip
        try:
            client = sync_client(server.url, cluster=args.redis_cluster)
            for r in range(args.rounds):
                for n in (1, 2):
                    rate, busy = run_once(n, server.url, client, work, tmp, recovery, r, pids,
                                          args.redis_cluster)  # fmt: skip
                    rates[n].append(rate)
                    others = max(others, busy)
            client.close()
        finally:
            server.stop()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    rows = [
        ["1 process, 1 worker", f"{one:,.0f}", "1.00", " ".join(f"{x:,.0f}" for x in rates[1])],
        ["2 processes, 1 worker each", f"{two:,.0f}", f"{two / one:.2f}",
         " ".join(f"{x:,.0f}" for x in rates[2])],
    ]  # fmt: skip
    print()
    print(table(rows, ["dataflow", "events/s (median)", "ratio", "rounds"]))
    print(f"others    processes not ours kept up to {others:.2f} cores busy during a run")
    verdict = "met" if two / one >= 1.5 else "NOT met"
    print(f"target    2 processes >= 1.5 x 1 process: {verdict} ({two / one:.2f} x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
