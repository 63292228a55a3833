"""Open-loop HTTP GET load for `bench.decide`, in its own process (127.0.0.1 only).

Reads one JSON line of `Plan` on stdin, prints ``ready``, waits for ``go``, runs, and prints
one JSON line of results. Requests are *scheduled* at a fixed rate, whatever the answers do
(open loop: a slow answer does not slow the offered load); each of `connections` keep-alive
connections takes the next scheduled request when it is free. Latency is measured from the
moment a request is written; how late requests started against their schedule is reported
too (if the server keeps up, they do not start late). With ``rate = 0`` the connections send
back to back (closed loop): the saturation throughput.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import uvloop

from bench.loadgen import read_response


@dataclass(frozen=True, slots=True)
class Plan:
    host: str
    port: int
    api_key: str
    paths: list[str]  # request targets, used round-robin
    rate: float  # requests/s; 0: closed loop
    duration_s: float
    warmup_s: float
    connections: int
    result_path: str  # where the `Result` is written, as JSON


@dataclass(slots=True)
class Result:
    sent: int = 0
    measured: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)  # start - schedule, measured requests
    measured_s: float = 0.0
    cpu_s: float = 0.0


async def run(plan: Plan) -> Result:
    res = Result()
    cpu0 = time.process_time()
    start = time.monotonic() + 0.2
    measure_from = start + plan.warmup_s
    deadline = measure_from + plan.duration_s
    counter = [0]
    heads = [
        (f"GET {p} HTTP/1.1\r\nHost: {plan.host}\r\nAuthorization: Bearer {plan.api_key}\r\n"
         "User-Agent: nudge-bench\r\n\r\n").encode()
        for p in plan.paths
    ]  # fmt: skip
    last = [measure_from]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(plan.host, plan.port)
        try:
            while True:
                i = counter[0]
                counter[0] += 1
                scheduled = start + i / plan.rate if plan.rate else time.monotonic()
                if scheduled >= deadline:
                    return
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.monotonic()
                writer.write(heads[i % len(heads)])
                status, body = await read_response(reader)
                done = time.monotonic()
                res.sent += 1
                if status != 200:
                    res.errors += 1
                    if len(res.error_samples) < 5:
                        res.error_samples.append(f"{status}: {body[:160].decode(errors='replace')}")
                    continue
                if scheduled >= measure_from:
                    res.measured += 1
                    res.latencies_ms.append((done - sent) * 1000)
                    res.late_ms.append(max(0.0, sent - scheduled) * 1000)
                    last[0] = max(last[0], done)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(plan.connections)))
    res.measured_s = last[0] - measure_from
    res.cpu_s = time.process_time() - cpu0
    return res


def main() -> None:
    plan = Plan(**orjson.loads(sys.stdin.readline()))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    res = uvloop.run(run(plan))
    res.latencies_ms.sort()
    res.late_ms.sort()
    # a file, not stdout: a result of ~1 MB printed to the pipe was cut at 64 KB (the pipe's
    # size) in 3 of ~30 runs, never understood; a file is read whole
    Path(plan.result_path).write_bytes(orjson.dumps(asdict(res)))
    print("done", flush=True)


if __name__ == "__main__":
    main()
