"""The API process's Prometheus metrics (`GET /metrics`), and the request context middleware.

Two kinds: what this process did (ingest, requests, decisions: counters and histograms of
prometheus-client, labelled children cached so that a decision costs two dict lookups), and
what the whole deployment looks like in Redis at scrape time (lag per stream partition,
freshness, triggers, webhook outcomes, dead letters: `RedisView`, from one
`models.progress.OpsSnapshot` read per scrape).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Final

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.ids import RandomIds
from config.logs import REQUEST_ID
from models.progress import OpsSnapshot, PartitionLag, seconds

log = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

INGEST_EVENTS: Final = Counter(
    "nudge_ingest_events",
    "Events received by the ingest API, by Segment call type and outcome (accepted, rejected)",
    ["type", "outcome"],
)
INGEST_BYTES: Final = Counter(
    "nudge_ingest_bytes",
    "JSON bytes of the events received by the ingest API, by call type and outcome",
    ["type", "outcome"],
)
HTTP_REQUESTS: Final = Counter(
    "nudge_http_requests", "HTTP requests answered, by route, method and status code",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_SECONDS: Final = Histogram(
    "nudge_http_request_duration_seconds",
    "Time from request received to response sent, by route",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
DECISION_SECONDS: Final = Histogram(
    "nudge_decision_duration_seconds",
    "Time to decide (Redis reads, arbitration, the atomic contact write), by channel",
    ["channel"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS: Final = Counter(
    "nudge_decisions",
    "Decisions answered, by message (none: suppressed), channel and suppression rule",
    ["message", "channel", "suppressed_by"],
)

_decision_children: dict[tuple[str, str, str], Any] = {}
_latency_children: dict[str, Any] = {}


def count_decision(message: str | None, channel: str, suppressed_by: str | None, s: float) -> None:
    key = (message or "none", channel, suppressed_by or "none")
    child = _decision_children.get(key)
    if child is None:
        child = _decision_children[key] = DECISIONS.labels(*key)
    child.inc()
    timer = _latency_children.get(channel)
    if timer is None:
        timer = _latency_children[channel] = DECISION_SECONDS.labels(channel)
    timer.observe(s)


def count_ingest(counts: dict[tuple[str, str], list[int]]) -> None:
    """`counts`: (type, outcome) → [events, bytes] of one request."""
    for (kind, outcome), (n, size) in counts.items():
        INGEST_EVENTS.labels(kind, outcome).inc(n)
        INGEST_BYTES.labels(kind, outcome).inc(size)


# (family, name, help, value of a partition at now_ms): deployment-wide, from `OpsSnapshot`
_PER_PARTITION: Final[tuple[tuple[Any, str, str, Callable[[PartitionLag, int], Any]], ...]] = (
    (GaugeMetricFamily, "nudge_stream_lag_seconds",
     "Age gap between the newest entry of a stream partition and the last one read",
     lambda p, now: p.lag_ms / 1000),
    (GaugeMetricFamily, "nudge_stream_lag_entries", "Entries of a stream partition not read yet",
     lambda p, now: p.behind),
    (GaugeMetricFamily, "nudge_event_time_lag_seconds",
     "Now minus the event time of the newest event read from a stream partition",
     lambda p, now: seconds(p.event_lag_ms(now))),
    (GaugeMetricFamily, "nudge_dataflow_report_age_seconds",
     "Since the dataflow last reported its progress on a stream partition",
     lambda p, now: seconds(p.report_age_ms(now))),
    (GaugeMetricFamily, "nudge_freshness_seconds",
     "Latest freshness probe of a stream partition: ingest to profile written",
     lambda p, now: seconds(p.fresh_ms)),
    (CounterMetricFamily, "nudge_stream_events_read",
     "Events the dataflow has read from a stream partition", lambda p, now: p.events),
    (CounterMetricFamily, "nudge_stream_entries_added",
     "Entries ever appended to a stream partition", lambda p, now: p.added),
)  # fmt: skip


class RedisView(Collector):
    """Deployment-wide figures from the latest `OpsSnapshot` (set by the /metrics route just
    before it renders; several API replicas report the same values: aggregate with max)."""

    def __init__(self) -> None:
        self.snapshot: OpsSnapshot | None = None
        self.now_ms = 0

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        now = self.now_ms
        for kind, name, doc, of in _PER_PARTITION:
            family = kind(name, doc, labels=["partition"])
            for p in snap.partitions:
                v = of(p, now)
                if v is not None:  # unknown (never reported): no sample
                    family.add_metric([str(p.partition)], v)
            yield family
        stats = snap.stats
        triggers = CounterMetricFamily(
            "nudge_triggers", "Triggers fired (appended to the triggers stream), by type",
            labels=["type"],
        )  # fmt: skip
        hooks = CounterMetricFamily(
            "nudge_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, dead_lettered)",
            labels=["outcome"],
        )
        for key, value in sorted(stats.items()):
            kind, _, name = key.partition(":")
            if kind == "triggers":
                triggers.add_metric([name], value)
            elif kind == "webhooks":
                hooks.add_metric([name], value)
        for outcome in ("delivered", "failed", "dead_lettered"):
            if f"webhooks:{outcome}" not in stats:
                hooks.add_metric([outcome], 0)
        yield triggers
        yield hooks
        served = CounterMetricFamily(
            "nudge_served_decisions",
            "Decisions that chose a message, all API replicas together, by whether "
            "exploration chose it",
            labels=["explore"],
        )
        explored = stats.get("decisions_explored", 0)
        served.add_metric(["false"], stats.get("decisions_served", 0) - explored)
        served.add_metric(["true"], explored)
        yield served
        refused = CounterMetricFamily(
            "nudge_identity_merges_refused", "Identity merges refused (too many ids)"
        )
        refused.add_metric([], stats.get("identity_merges_refused", 0))
        yield refused
        dead = GaugeMetricFamily(
            "nudge_deadletter_entries",
            "Entries in a dead-letter stream (ingest: rejected events; webhooks: triggers "
            "no URL accepted)",
            labels=["stream"],
        )
        dead.add_metric(["ingest"], snap.deadletter)
        dead.add_metric(["webhooks"], snap.webhook_deadletter)
        yield dead


_IDS: Final = RandomIds()  # request ids
REDIS_VIEW: Final = RedisView()
REGISTRY.register(REDIS_VIEW)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestContext:
    """Pure ASGI middleware: a request id for every request (the caller's ``X-Request-ID``,
    else a new one; sent back in the answer and carried by every log line meanwhile), and
    the HTTP request metrics, labelled by route template (never by raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        if not rid:
            rid = _IDS.hex(12)
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            raise
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            key = (path, scope["method"], status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    HTTP_REQUESTS.labels(path, scope["method"], str(status)),
                    HTTP_SECONDS.labels(path),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)
            REQUEST_ID.reset(token)
