"""Redis memory per customer after the replays: MEMORY USAGE over all of a customer's keys.

The REES46 + Taobao replay of `bench.dataflow` goes through the real flow (one worker,
in-process, recovery off); then, for every customer, `MEMORY USAGE key SAMPLES 0` of each of
their keys (profile, dataflow state, the link and state keys of their other ids, their
contact history), pipelined. Also
shown: what the deployment-wide keys take (the product index, models, progress, triggers)
and what the event streams hold, which the dataflow trims once snapshots pass them
(`NUDGE_TRIM_AFTER_S`), so they are not per-customer state.

Then the dataflow's side: every customer's stored state read back into the partitions'
caches as the dataflow keeps them (`dataflows.flow.PartitionLogic`, up to
``NUDGE_CACHE_CUSTOMERS`` in all), the Python heap they take measured with `tracemalloc`:
bytes per cached customer, to size the dataflow's memory (cache size x this).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import tracemalloc
from pathlib import Path

import redis

from bench.dataflow import REES46, TAOBAO, build_workload, data_path, run_once
from bench.machine import header, table
from cli.embedded import RedisServer
from config import Settings
from config.runtime import DATAFLOW_YOUNG, tune_gc
from dataflows.flow import partition_logic
from dataflows.redis_io import NodeStore, client_factory
from models.keys import Keys, partition_for
from models.profile import decode_profile

TARGET = 1024  # bytes per customer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.parse_args(argv)
    print(header("nudge bench: Redis memory per customer", "bench.memory"))
    work = build_workload([data_path(REES46), data_path(TAOBAO)], 4, 1000)
    tune_gc(DATAFLOW_YOUNG)
    with tempfile.TemporaryDirectory(prefix="nudge-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis").start()
        try:
            settings = Settings(redis_url=server.url, partitions=4)
            client = redis.Redis.from_url(server.url)
            assert server.proc is not None
            run_once("nudge", False, settings, work, client, tmp, [server.proc.pid])
            rows, per_customer, ids = measure(client, Keys(settings.key_prefix))
            info = client.info("memory")
            cached = cache_bytes(settings, ids)
            client.close()
        finally:
            server.stop()
    print(f"workload  {work.events:,} events replayed through the flow; "
          f"{len(per_customer):,} customers")  # fmt: skip
    print()
    print(table(rows, ["keys", "count", "bytes (MEMORY USAGE)", "bytes per customer"]))
    mean = statistics.mean(per_customer)
    q = statistics.quantiles(per_customer, n=100)
    print(f"\nper customer  mean {mean:,.0f} B, p50 {q[49]:,.0f} B, p99 {q[98]:,.0f} B, "
          f"max {max(per_customer):,} B")  # fmt: skip
    print(f"redis         used_memory {info['used_memory']:,} B in all")
    verdict = "met" if mean <= TARGET else "NOT met"
    print(f"target        ≤ {TARGET:,} B per customer (mean of all their keys): {verdict}")
    print(f"dataflow      {cached / max(1, len(ids)):,.0f} B of Python heap per cached id "
          f"({len(ids):,} ids read back into the partitions' caches: {cached / 2**20:,.1f} MiB; "
          f"tracemalloc)")  # fmt: skip
    return 0


def cache_bytes(settings: Settings, ids: list[str]) -> int:
    """The Python heap that the dataflow's partition caches take holding `ids`, read back
    from Redis as the flow reads them (`PartitionLogic`, one MGET per thousand)."""
    store = NodeStore(
        client_factory(settings.require_redis(), settings.redis_cluster), Keys(settings.key_prefix)
    )
    logic = partition_logic(settings, store, cache=len(ids))
    n = settings.partitions
    by_partition: dict[int, list[str]] = {p: [] for p in range(n)}
    for i in ids:
        by_partition[partition_for(i, n)].append(i)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    caches = [logic() for _ in range(n)]
    for p, cache in enumerate(caches):
        cache.start(p)
        part = by_partition[p]
        for k in range(0, len(part), 1000):
            cache.warm(part[k : k + 1000])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert sum(len(c.ids) for c in caches) == len(ids)
    return after - before


def measure(client: redis.Redis, keys: Keys) -> tuple[list[list[object]], list[int], list[str]]:
    """Per-kind totals, each customer's bytes over all their keys, and every id with a
    stored state."""
    profiles = [k.decode() for k in client.scan_iter(match=keys.profile("*"), count=5000)]
    customers = [k[k.index("{") + 1 : k.rindex("}")] for k in profiles]
    own: dict[str, list[str]] = {}
    for i in range(0, len(customers), 2000):
        chunk = customers[i : i + 2000]
        blobs = client.mget([keys.profile(c) for c in chunk])
        for cid, blob in zip(chunk, blobs, strict=True):
            ids = decode_profile(blob).ids if isinstance(blob, bytes) else []
            own[cid] = [keys.profile(cid), keys.state(cid), keys.contacts(cid),
                        *(keys.link(x) for x in ids if x != cid),
                        *(keys.state(x) for x in ids if x != cid)]  # fmt: skip
    sizes: dict[str, int] = {}
    names = [k for ks in own.values() for k in ks]
    for i in range(0, len(names), 5000):
        pipe = client.pipeline(transaction=False)
        for k in names[i : i + 5000]:
            pipe.memory_usage(k, samples=0)
        sizes.update(zip(names[i : i + 5000], pipe.execute(), strict=True))
    per_customer = [sum(sizes.get(k) or 0 for k in ks) for ks in own.values()]
    rows: list[list[object]] = []
    n = max(1, len(own))
    for name in ("profile", "state", "contacts", "link"):
        found = [v for k, v in sizes.items() if k.endswith(f"}}:{name}") and v]
        rows.append([name, f"{len(found):,}", f"{sum(found):,}", f"{sum(found) / n:,.1f}"])
    customer_keys = f"{keys.base}:c:*"
    others = {k.decode() for k in client.scan_iter(match=customer_keys, count=5000)} - set(sizes)
    rows.append(["customer keys of no profile", f"{len(others):,}", "-", "-"])
    shared = [k.decode() for k in client.scan_iter(match=f"{keys.base}:*", count=5000)]
    shared = [k for k in shared if ":c:{" not in k and ":events:" not in k]
    streams = [k.decode() for k in client.scan_iter(match=f"{keys.base}:events:*", count=100)]
    for label, group in (
        ("deployment-wide (index, models, progress, triggers…)", shared),
        ("event streams (trimmed by the dataflow in production)", streams),
    ):
        pipe = client.pipeline(transaction=False)
        for k in group:
            pipe.memory_usage(k, samples=0)
        total = sum(v or 0 for v in pipe.execute())
        rows.append([label, f"{len(group):,}", f"{total:,}", "-"])
    ids = [k for ks in own.values() for k in ks if k.endswith("}:state")]
    return rows, per_customer, [k[k.index("{") + 1 : k.rindex("}")] for k in ids]


if __name__ == "__main__":
    sys.exit(main())
