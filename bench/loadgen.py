"""Load generator for `bench.ingest`: a separate process posting Segment ``/v1/batch`` bodies.

Run by `bench.ingest` as ``python -m bench.loadgen``; it reads one JSON line of settings on
stdin, builds its request bodies, prints ``ready``, waits for ``go`` on stdin, posts for the
given time and prints one JSON line of results. It talks to 127.0.0.1 only.

The HTTP client is a minimal HTTP/1.1 keep-alive client on asyncio streams (uvloop), so that
the load generator spends as little CPU as possible on the shared machine: one request per
connection in flight, ``connections`` connections.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import uvloop

from cli.datasets import read_calls

# Replaced in every request by a request id unique over processes, connections and requests,
# so that every messageId sent is fresh (nothing is deduplicated downstream).
PLACEHOLDER: Final = b"@@@@@@@@@@@@"
REQUEST_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What one load-generator process does."""

    host: str
    port: int
    write_key: str
    dataset: str
    batch_size: int
    connections: int
    duration_s: float
    warmup_s: float
    process_index: int
    tag: str


@dataclass(slots=True)
class Template:
    """A pre-built ``/v1/batch`` body with `PLACEHOLDER` in every messageId."""

    body: bytes
    events: int


@dataclass(slots=True)
class LoadResult:
    """What one load-generator process saw (sent as JSON to the parent)."""

    requests: int = 0
    events_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    http_errors: int = 0
    accepted_mismatch: int = 0
    errors: list[str] = field(default_factory=list)
    measured_requests: int = 0
    measured_events: int = 0
    measured_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds this process used while posting
    latencies_ms: list[float] = field(default_factory=list)


def build_templates(cfg: LoadConfig) -> list[Template]:
    """The dataset cut into batches of `batch_size` calls, each with placeholder messageIds."""
    calls = [call for _, call in read_calls(Path(cfg.dataset))]
    sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    placeholder = PLACEHOLDER.decode()
    templates = []
    for start in range(0, len(calls), cfg.batch_size):
        batch = []
        for i, call in enumerate(calls[start : start + cfg.batch_size], start):
            batch.append({**call, "messageId": f"{cfg.tag}-{placeholder}-{i:06d}"})
        # as Segment's server-side libraries send it: the batch, and when it was sent
        body = orjson.dumps({"batch": batch, "sentAt": sent_at})
        templates.append(Template(body, len(batch)))
    return templates


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without Content-Length (not supported by this client)")
    return status, await reader.readexactly(length)


async def _connection(
    cfg: LoadConfig,
    index: int,
    templates: list[Template],
    start: float,
    result: LoadResult,
    last_done: list[float],
) -> None:
    reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
    auth = base64.b64encode(f"{cfg.write_key}:".encode()).decode()
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: {cfg.host}:{cfg.port}\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
        "User-Agent: nudge-bench\r\nContent-Length: %d\r\n\r\n"
    ).encode()
    measure_from = start + cfg.warmup_s
    deadline = measure_from + cfg.duration_s
    seq = 0
    try:
        while True:
            sent = time.monotonic()
            if sent >= deadline:
                break
            tpl = templates[(index + seq * cfg.connections) % len(templates)]
            rid = f"{cfg.process_index:02x}{index:03x}{seq:07x}".encode()
            seq += 1
            body = tpl.body.replace(PLACEHOLDER, rid)
            writer.write(head % len(body))
            writer.write(body)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, payload = await read_response(reader)
            done = time.monotonic()
            result.requests += 1
            result.events_sent += tpl.events
            if status != 200:
                result.http_errors += 1
                if len(result.errors) < 5:
                    result.errors.append(f"HTTP {status}: {payload[:200].decode(errors='replace')}")
                continue
            out: dict[str, Any] = orjson.loads(payload)
            accepted = int(out["accepted"])
            result.accepted += accepted
            result.rejected += len(out["rejected"])
            if accepted != tpl.events:
                result.accepted_mismatch += 1
            if sent >= measure_from:
                result.measured_requests += 1
                result.measured_events += accepted
                result.latencies_ms.append((done - sent) * 1000)
                last_done[0] = max(last_done[0], done)
    finally:
        writer.close()
        await writer.wait_closed()


async def run(cfg: LoadConfig, templates: list[Template]) -> LoadResult:
    """Post with `connections` connections for warmup + duration seconds."""
    result = LoadResult()
    cpu0 = time.process_time()
    start = time.monotonic()
    last_done = [start + cfg.warmup_s]
    await asyncio.gather(
        *(_connection(cfg, i, templates, start, result, last_done) for i in range(cfg.connections))
    )
    result.measured_s = last_done[0] - (start + cfg.warmup_s)
    result.cpu_s = time.process_time() - cpu0
    return result


def main() -> None:
    cfg = LoadConfig(**orjson.loads(sys.stdin.readline()))
    templates = build_templates(cfg)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    result = uvloop.run(run(cfg, templates))
    result.latencies_ms.sort()
    print(orjson.dumps(asdict(result)).decode(), flush=True)
    sys.stdin.readline()  # stay alive (CPU accounting) until the parent closes stdin


if __name__ == "__main__":
    main()
