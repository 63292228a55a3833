"""What `bench.freshness` and `bench.soak` share: a live deployment on 127.0.0.1, traffic of a
bounded population of customers, an open-loop load generator and process accounting.

- `Deployment`: a real redis-server (`cli.embedded.RedisServer`, AOF everysec unless told
  otherwise), the real `nudge dataflow` process (one process, one worker, recovery on, a
  fresh recovery store; its /metrics on a free port) and the real `nudge api` (uvicorn,
  uvloop, httptools, ``--workers N``), started in that order in a temporary directory, on free
  loopback ports, with fresh keys; stopped in reverse order. Their logs go to files there.
- `Traffic`: Segment calls of a fixed set of customers (``c000000`` …), each replaying a
  REES46 shopper's events (product, category, brand, price, event type) cyclically, taking
  turns in a fixed shuffled order, so every customer sends an event every
  ``customers / rate`` seconds and the population stays bounded.
  Each batch is stamped with the client's clock (``timestamp`` = ``sentAt`` = now), as a live
  SDK sends it, and every messageId is unique.
- The load generator, ``python -m bench.live`` in its own process (`LoadPlan` as one JSON
  line on stdin, ``ready``, then ``go``; one JSON line of results): requests *scheduled* at a
  fixed rate whatever the answers do (open loop, as `bench.openloop`), each of `connections`
  keep-alive connections taking the next scheduled request when it is free; the minimal
  HTTP/1.1 client of `bench.loadgen` (`read_response`); every request has a timeout. Kinds:
  ``ingest`` (``POST /v1/batch`` of `batch_size` calls, rate in events/s) and ``decide``
  (``GET /v1/decide?customer_id=…&channel=web`` over the population, round-robin in another
  shuffled order). A generator that falls behind its schedule stops at the end of the run
  anyway (what it did not send is not sent: the rate achieved says so). Latency (request
  written → answer read) and lateness (written - scheduled) go into 1%-wide log histograms
  of the window (`window_s`) the request was written in, so memory stays flat over a long
  run.
(Process helpers — `rss_mb`, `descendants`, `stop_process`, `tail` — are in `bench.machine`.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import redis
import uvloop

from bench.loadgen import read_response
from bench.machine import REES46, descendants, stop_process, tail
from cli.datasets import read_calls
from cli.embedded import RedisServer, free_port
from cli.status import snapshot
from models.keys import Keys
from models.progress import OpsSnapshot

ROOT: Final = Path(__file__).resolve().parents[1]
PARTITIONS: Final = 4
PREFIX: Final = "nudge"


def population_id(i: int) -> str:
    return f"c{i:06d}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the deployment ------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@dataclass
class Deployment:
    """redis-server, `nudge dataflow` and `nudge api` on 127.0.0.1 in `tmp`."""

    tmp: Path
    workers: int = 1
    aof: bool = True
    settings: dict[str, str] = field(default_factory=dict)  # extra NUDGE_* variables
    partitions: int = PARTITIONS
    keys: Keys = field(default_factory=lambda: Keys(PREFIX))
    write_key: str = field(default_factory=lambda: os.urandom(12).hex())
    api_key: str = field(default_factory=lambda: os.urandom(16).hex())
    server: RedisServer | None = None
    dataflow: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    api_port: int = 0
    metrics_port: int = 0
    _logs: list[Any] = field(default_factory=list)
    _api_children: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
        return {
            **base,
            "NUDGE_REDIS_URL": self.url, "NUDGE_KEY_PREFIX": self.keys.prefix,
            "NUDGE_PARTITIONS": str(self.partitions), "NUDGE_WRITE_KEYS": self.write_key,
            "NUDGE_API_KEYS": self.api_key, "NUDGE_ADMIN_KEYS": os.urandom(16).hex(),
            "NUDGE_RECOVERY_DIR": str(self.tmp / "recovery"),
            "NUDGE_METRICS_PORT": str(self.metrics_port), "NUDGE_METRICS_HOST": "127.0.0.1",
            "NUDGE_LOG_FORMAT": "text", "PYTHONPATH": str(ROOT),
            **self.settings,
        }  # fmt: skip

    def _log(self, name: str) -> Any:
        f = (self.tmp / f"{name}.log").open("wb")
        self._logs.append(f)
        return f

    def start(self) -> Deployment:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.server = RedisServer(self.tmp / "redis", aof=self.aof).start()
        self.metrics_port = free_port()
        env = self.env()
        self.dataflow = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dataflow"], env=env, cwd=ROOT,
            stdout=(log := self._log("dataflow")), stderr=log,
        )  # fmt: skip
        self._wait_dataflow()
        self.api_port = free_port()
        self.api = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1",
             "--port", str(self.api_port), "--workers", str(self.workers)],
            env=env, cwd=ROOT, stdout=(log := self._log("api")), stderr=log,
        )  # fmt: skip
        self._wait_api()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def snapshot(self, client: redis.Redis) -> OpsSnapshot:
        return snapshot(client, self.keys, self.partitions)

    def _wait_dataflow(self, timeout: float = 60.0) -> None:
        assert self.dataflow is not None
        client = self.client()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.dataflow.poll() is not None:
                    raise RuntimeError(
                        f"the dataflow exited with {self.dataflow.returncode}:\n"
                        + self.log_tail("dataflow")
                    )
                snap = self.snapshot(client)
                if all(p.reported_ms is not None for p in snap.partitions):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError("the dataflow did not report progress within 60 s")

    def _wait_api(self, timeout: float = 60.0) -> None:
        assert self.api is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(
                    f"the API exited with {self.api.returncode}:\n{self.log_tail('api')}"
                )
            try:
                answer = httpx.get(f"http://127.0.0.1:{self.api_port}/readyz", timeout=1)
                if answer.status_code == 200 and (
                    self.workers == 1 or len(self.api_workers()) >= self.workers
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API did not answer /readyz within 60 s")

    def api_workers(self) -> list[int]:
        """The uvicorn worker processes below the API's supervisor (with ``--workers > 1``)."""
        if self.api is None:
            return []
        kids = [pid for pid in descendants(self.api.pid) if "resource_tracker" not in cmdline(pid)]
        for pid in kids:
            if pid not in self._api_children:
                self._api_children.append(pid)
        return kids

    def processes(self) -> dict[str, int]:
        """label → pid of every process of the deployment."""
        out: dict[str, int] = {}
        if self.server is not None and self.server.proc is not None:
            out["redis-server"] = self.server.proc.pid
        if self.dataflow is not None:
            out["dataflow"] = self.dataflow.pid
        if self.api is not None:
            if self.workers == 1:
                out["api"] = self.api.pid
            else:
                out["api supervisor"] = self.api.pid
                for n, pid in enumerate(self.api_workers(), 1):
                    out[f"api worker {n}"] = pid
        return out

    def dataflow_metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def alive(self) -> list[str]:
        """What has died (empty: all up)."""
        dead = []
        if self.dataflow is not None and self.dataflow.poll() is not None:
            dead.append(f"dataflow (exit {self.dataflow.returncode})")
        if self.api is not None and self.api.poll() is not None:
            dead.append(f"api (exit {self.api.returncode})")
        proc = self.server.proc if self.server is not None else None
        if proc is not None and proc.poll() is not None:
            dead.append("redis-server")
        return dead

    def stop(self) -> None:
        if self.api is not None:
            self.api_workers()
            stop_process(self.api, signal.SIGTERM, 20)
            for pid in self._api_children:  # workers the supervisor left behind, if any
                if "multiprocessing" in cmdline(pid):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        if self.dataflow is not None:
            stop_process(self.dataflow, signal.SIGINT, 30)
        if self.server is not None:
            self.server.stop()
        for f in self._logs:
            f.close()

    def log_tail(self, name: str, lines: int = 15) -> str:
        return tail(self.tmp / f"{name}.log", lines, missing="(no log)")


# --- the dataflow's freshness histogram ------------------------------------------------------


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """(upper bound in s, cumulative count) of a Prometheus histogram in `text`."""
    out = []
    prefix = f"{name}_bucket{{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].rsplit("}", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            out.append((math.inf if le == "+Inf" else float(le), float(value)))
    return sorted(out)


def histogram_sum(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            return float(line.split()[-1])
    return 0.0


def counters(text: str, name: str) -> dict[str, float]:
    """A Prometheus counter family in `text`, by its (first) label's value."""
    out: dict[str, float] = {}
    prefix = f"{name}_total{{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].rsplit("}", 1)
            out[labels.split('"')[1]] = float(value)
    return out


def bucket_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]],
                    q: float) -> tuple[float, int]:  # fmt: skip
    """The upper bound (s) of the bucket holding quantile `q` of what was observed between two
    scrapes, and how many observations there were."""
    prior = dict(before)
    diff = [(le, n - prior.get(le, 0.0)) for le, n in after]
    total = int(diff[-1][1]) if diff else 0
    if total == 0:
        return math.nan, 0
    want = max(1, math.ceil(q * total))
    for le, n in diff:
        if n >= want:
            return le, total
    return math.inf, total


# --- traffic -------------------------------------------------------------------------------


class Traffic:
    """Segment calls of a bounded population (see the module's docstring): customer ``i``
    replays, cyclically, the events of the REES46 sample's user ``i mod users`` (4,504 users,
    3.9 events each on average), so a customer's products, categories and brands are a real
    shopper's; customers take turns in a fixed shuffled order, one call each per turn."""

    def __init__(self, dataset: Path, customers: int, tag: str, seed: int = 1) -> None:
        drop = {"userId", "anonymousId", "messageId", "timestamp"}
        by_user: dict[str, list[dict[str, Any]]] = {}
        for _, call in read_calls(dataset):
            template = {k: v for k, v in call.items() if k not in drop}
            by_user.setdefault(str(call.get("userId")), []).append(template)
        personas = list(by_user.values())
        order = list(range(customers))
        random.Random(seed).shuffle(order)
        self.ids = [population_id(i) for i in order]
        self.sequences = [personas[i % len(personas)] for i in order]
        self.tag = tag

    def batch(self, first: int, size: int, stamp: str) -> list[dict[str, Any]]:
        """Calls `first` … `first + size - 1` of the stream, stamped `stamp`."""
        ids, seqs, n = self.ids, self.sequences, len(self.ids)
        out = []
        for k in range(first, first + size):
            turn, c = divmod(k, n)
            seq = seqs[c]
            out.append({**seq[turn % len(seq)], "userId": ids[c], "messageId": f"{self.tag}-{k}",
                        "timestamp": stamp})  # fmt: skip
        return out

    @staticmethod
    def body(batch: list[dict[str, Any]], stamp: str) -> bytes:
        return orjson.dumps({"batch": batch, "sentAt": stamp})


# --- latency histograms ----------------------------------------------------------------------

_BASE_MS: Final = 0.001
_STEP: Final = math.log(1.01)


@dataclass(slots=True)
class Hist:
    """Values (ms) in log buckets 1% wide from 1 µs: bounded memory, quantiles within 1%."""

    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0
    max: float = 0.0
    total: float = 0.0

    def add(self, ms: float) -> None:
        i = int(math.log(max(ms, _BASE_MS) / _BASE_MS) / _STEP)
        self.counts[i] = self.counts.get(i, 0) + 1
        self.n += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def pct(self, q: float) -> float:
        if self.n == 0:
            return math.nan
        want = max(1, math.ceil(q * self.n))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= want:
                return min(self.max, _BASE_MS * math.exp((i + 1) * _STEP))
        return self.max

    def merge(self, other: Hist) -> None:
        for i, c in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + c
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def to_json(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "n": self.n,
                "max": self.max, "total": self.total}  # fmt: skip

    @staticmethod
    def from_json(d: dict[str, Any]) -> Hist:
        return Hist({int(k): int(v) for k, v in d["counts"].items()}, int(d["n"]),
                    float(d["max"]), float(d["total"]))  # fmt: skip


@dataclass(slots=True)
class Window:
    """What one window of scheduled requests gave."""

    requests: int = 0  # answered or failed
    errors: int = 0  # non-2xx, timeouts, broken connections, events not all accepted
    timeouts: int = 0
    served: int = 0  # decide: answers that carry a message
    events: int = 0  # ingest: events accepted
    latency: Hist = field(default_factory=Hist)
    late: Hist = field(default_factory=Hist)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("requests", "errors", "timeouts", "served", "events")}
        return {**d, "latency": self.latency.to_json(), "late": self.late.to_json()}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Window:
        return Window(d["requests"], d["errors"], d["timeouts"], d["served"], d["events"],
                      Hist.from_json(d["latency"]), Hist.from_json(d["late"]))  # fmt: skip

    def merge(self, other: Window) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.served += other.served
        self.events += other.events
        self.latency.merge(other.latency)
        self.late.merge(other.late)


# --- the load generator --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadPlan:
    kind: str  # "ingest" | "decide"
    host: str
    port: int
    key: str  # the write key (ingest) or an API key (decide)
    rate: float  # events/s (ingest) or requests/s (decide)
    customers: int
    warmup_s: float
    duration_s: float
    window_s: float = 60.0
    timeout_s: float = 5.0
    connections: int = 8
    batch_size: int = 50  # ingest: calls per POST
    dataset: str = str(REES46)
    tag: str = "load"
    seed: int = 1


@dataclass(slots=True)
class LoadResult:
    windows: list[Window]  # measured windows, from the end of the warm-up
    warmup: Window
    error_samples: list[str]
    sent: int
    cpu_s: float
    offered_per_s: float  # requests/s scheduled
    measured_s: float = 0.0  # from the end of the warm-up to the last measured answer

    def to_json(self) -> bytes:
        return orjson.dumps({
            "windows": [w.to_json() for w in self.windows], "warmup": self.warmup.to_json(),
            "error_samples": self.error_samples, "sent": self.sent, "cpu_s": self.cpu_s,
            "offered_per_s": self.offered_per_s, "measured_s": self.measured_s,
        })  # fmt: skip

    @staticmethod
    def from_json(raw: bytes | str) -> LoadResult:
        d = orjson.loads(raw)
        return LoadResult([Window.from_json(w) for w in d["windows"]],
                          Window.from_json(d["warmup"]), d["error_samples"], d["sent"],
                          d["cpu_s"], d["offered_per_s"], d["measured_s"])  # fmt: skip

    def total(self) -> Window:
        out = Window()
        for w in self.windows:
            out.merge(w)
        return out


class Load:
    """One load generator's run of a `LoadPlan` (everything built before ``ready``)."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.per_request = plan.batch_size if plan.kind == "ingest" else 1
        self.req_rate = plan.rate / self.per_request
        n_windows = max(1, math.ceil(plan.duration_s / plan.window_s))
        self.windows = [Window() for _ in range(n_windows)]
        self.warm = Window()
        self.errors: list[str] = []
        self.counter = 0
        self.heads: list[bytes] = []
        if plan.kind == "ingest":
            self.traffic = Traffic(Path(plan.dataset), plan.customers, plan.tag, plan.seed)
            auth = base64.b64encode(f"{plan.key}:".encode()).decode()
            self.heads = [(
                f"POST /v1/batch HTTP/1.1\r\nHost: {plan.host}:{plan.port}\r\n"
                f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
                "User-Agent: nudge-bench\r\nContent-Length: %d\r\n\r\n"
            ).encode()]  # fmt: skip
        else:
            order = list(range(plan.customers))
            random.Random(plan.seed + 1).shuffle(order)
            self.heads = [
                (f"GET /v1/decide?customer_id={population_id(i)}&channel=web HTTP/1.1\r\n"
                 f"Host: {plan.host}:{plan.port}\r\nAuthorization: Bearer {plan.key}\r\n"
                 "User-Agent: nudge-bench\r\n\r\n").encode()
                for i in order
            ]  # fmt: skip

    def request(self, i: int) -> bytes:
        if self.plan.kind == "ingest":
            stamp = now_iso()
            size = self.plan.batch_size
            body = self.traffic.body(self.traffic.batch(i * size, size, stamp), stamp)
            return self.heads[0] % len(body) + body
        return self.heads[i % len(self.heads)]

    def failed(self, w: Window, what: str, timeout: bool = False) -> None:
        w.requests += 1
        w.errors += 1
        w.timeouts += timeout
        if len(self.errors) < 8:
            self.errors.append(f"{what} (at {time.monotonic() - self.measure_from:+.1f} s)")

    async def run(self) -> LoadResult:
        plan = self.plan
        cpu0 = time.process_time()
        self.start = time.monotonic() + 0.2
        self.measure_from = self.start + plan.warmup_s
        self.deadline = self.measure_from + plan.duration_s
        self.last_done = self.measure_from
        await asyncio.gather(*(self.connection() for _ in range(plan.connections)))
        return LoadResult(self.windows, self.warm, self.errors, self.counter,
                          time.process_time() - cpu0, self.req_rate,
                          self.last_done - self.measure_from)  # fmt: skip

    def window(self, at: float) -> Window:
        if at < self.measure_from:
            return self.warm
        i = int((at - self.measure_from) / self.plan.window_s)
        return self.windows[min(len(self.windows) - 1, i)]

    async def connection(self) -> None:
        plan = self.plan
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                i = self.counter
                self.counter += 1
                scheduled = self.start + i / self.req_rate
                if scheduled >= self.deadline or time.monotonic() >= self.deadline:
                    return  # the end (behind schedule: what is left is not sent)
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = self.request(i)
                sent = time.monotonic()
                w = self.window(sent)  # by when it was sent: windows hold what was done then
                try:
                    async with asyncio.timeout(plan.timeout_s):
                        if conn is None:
                            conn = await asyncio.open_connection(plan.host, plan.port)
                        conn[1].write(payload)
                        status, body = await read_response(conn[0])
                except TimeoutError:
                    self.failed(w, f"timeout after {plan.timeout_s:g} s", timeout=True)
                    _close(conn)
                    conn = None
                    continue
                except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
                    self.failed(w, f"{type(exc).__name__}: {exc}")
                    _close(conn)
                    conn = None
                    continue
                done = time.monotonic()
                if not 200 <= status < 300:
                    self.failed(w, f"HTTP {status}: {body[:160].decode(errors='replace')}")
                    continue
                if plan.kind == "ingest":
                    accepted = int(orjson.loads(body)["accepted"])
                    w.events += accepted
                    if accepted != plan.batch_size:
                        self.failed(w, f"accepted {accepted} of {plan.batch_size}: {body[:160]!r}")
                        continue
                elif b'"message":null' not in body:
                    w.served += 1
                w.requests += 1
                if w is not self.warm and done > self.last_done:
                    self.last_done = done
                w.latency.add((done - sent) * 1000)
                w.late.add(max(0.0, sent - scheduled) * 1000)
        finally:
            _close(conn)


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is not None:
        conn[1].close()


class Generator:
    """A load-generator process (``python -m <module> <args>``) driven over stdin/stdout."""

    def __init__(self, plan: dict[str, Any], module: str = "bench.live",
                 args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(plan) + b"\n")
        self.proc.stdin.flush()
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def line(self, timeout: float) -> bytes:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            msg = f"load generator {self.proc.pid}: no answer in {timeout:g} s"
            raise RuntimeError(msg) from None
        if not line:
            raise RuntimeError(f"load generator {self.proc.pid} exited ({self.proc.poll()})")
        return line

    def ready(self, timeout: float = 60.0) -> None:
        if self.line(timeout).strip() != b"ready":
            raise RuntimeError("a load generator failed to start")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        stop_process(self.proc, signal.SIGTERM, 10)


def serve(run: Any) -> None:
    """A generator process's protocol: plan, ``ready``, ``go``, one JSON line of results,
    then stay (for the parent's accounting) until stdin closes."""
    plan = orjson.loads(sys.stdin.readline())
    prepared = run(plan)  # a coroutine factory, built before "ready"
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    out: bytes = uvloop.run(prepared())
    sys.stdout.write(out.decode() + "\n")
    sys.stdout.flush()
    sys.stdin.readline()


def _load(plan: dict[str, Any]) -> Any:
    load = Load(LoadPlan(**plan))

    async def go() -> bytes:
        return (await load.run()).to_json()

    return go


def main() -> None:
    serve(_load)


if __name__ == "__main__":
    main()
