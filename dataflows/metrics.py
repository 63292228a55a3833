"""The dataflow process's Prometheus metrics (served on `NUDGE_METRICS_PORT` by
`nudge dataflow`).

Hot paths never touch a labelled metric per event: the source counts once per read, the sink
once per batch, and snapshot counts are plain integers read at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

EVENTS: Final = Counter(
    "nudge_dataflow_events",
    "Events read from the event streams, by stream partition",
    ["partition"],
)
ENTRIES: Final = Counter(
    "nudge_dataflow_entries", "Stream entries read (one per ingest request and partition)",
    ["partition"],
)  # fmt: skip
READ_EVENTS: Final = Histogram(
    "nudge_dataflow_read_batch_events",
    "Events brought by one read of a stream partition",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
EVENT_TIME: Final = Gauge(
    "nudge_dataflow_event_time_seconds",
    "Event time of the newest event read, by stream partition (Unix seconds)",
    ["partition"],
)
SINK_SECONDS: Final = Histogram(
    "nudge_dataflow_sink_duration_seconds",
    "Time to write one batch to Redis (profiles, links, models, triggers)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SINK_BATCH: Final = Histogram(
    "nudge_dataflow_sink_batch_items",
    "Items written by one sink batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
WRITES: Final = Counter(
    "nudge_dataflow_writes", "Keys written or deleted by the sink, by kind", ["kind"]
)
TRIGGERS: Final = Counter(
    "nudge_dataflow_triggers",
    "Triggers appended to the triggers stream, by type and whether a message was chosen",
    ["type", "outcome"],
)
FRESHNESS: Final = Histogram(
    "nudge_dataflow_freshness_seconds",
    "Freshness probes: stream entry appended → the batch it came out in written to Redis",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
MODEL: Final = Gauge(
    "nudge_model_metric",
    "Progressive validation of each (message, channel) response model "
    "(metric: roc_auc, log_loss, response_rate, trust)",
    ["message", "channel", "metric"],
)
MODEL_EXAMPLES: Final = Gauge(
    "nudge_model_examples", "Labelled decisions each response model has learnt from",
    ["message", "channel"],
)  # fmt: skip

# Snapshots Bytewax asked each stateful step for (recovery), and the bytes encoded for them:
# plain integers bumped on the hot path, read at scrape time.
SNAPSHOTS: dict[str, int] = {}
SNAPSHOT_BYTES: dict[str, int] = {}


class _Snapshots(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        taken = CounterMetricFamily(
            "nudge_dataflow_snapshots",
            "State snapshots taken for recovery, by step",
            labels=["step"],
        )
        size = CounterMetricFamily(
            "nudge_dataflow_snapshot_bytes",
            "Bytes of state encoded for recovery snapshots, by step",
            labels=["step"],
        )
        for step, n in sorted(SNAPSHOTS.items()):
            taken.add_metric([step], n)
        for step, n in sorted(SNAPSHOT_BYTES.items()):
            size.add_metric([step], n)
        yield taken
        yield size


REGISTRY.register(_Snapshots())


def snapshot_taken(step: str, size: int) -> None:
    SNAPSHOTS[step] = SNAPSHOTS.get(step, 0) + 1
    SNAPSHOT_BYTES[step] = SNAPSHOT_BYTES.get(step, 0) + size


def serve(port: int, host: str = "0.0.0.0") -> int:
    """Serve `/metrics` on `port` (0: a free one) in a daemon thread; the port used."""
    server, _ = start_http_server(port, addr=host)
    return int(server.server_port)
