"""What operators see from the API, against a real Redis: /metrics (parsed, named by the
Prometheus conventions, checked by promtool), /readyz and the dataflow's progress, the /ops
page and its data, request ids, and JSON log lines carrying them."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from config.logs import setup_logging
from config.settings import Settings
from models.keys import Keys, progress_field
from tests.conftest import API_KEY, ON_BOTH, WRITE_KEY

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    fast = settings.model_copy(update={"ops_sample_s": 0.05, "ready_progress_s": 5.0})
    with TestClient(create_app(fast)) as c:
        yield c


def report(rclient: redis.Redis, settings: Settings, at_ms: int, read: str = "0-0") -> None:
    """What the dataflow's source reports for every partition (`dataflows.redis_io`)."""
    keys = Keys(settings.key_prefix)
    for stream in keys.all_events(settings.partitions):
        fields = {"read": read, "n": 0, "at": at_ms, "ts": at_ms - 5000, "fresh": 42}
        rclient.hset(
            keys.progress(), mapping={progress_field(stream, k): v for k, v in fields.items()}
        )
        rclient.hincrby(keys.progress(), progress_field(stream, "events"), 100)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def promtool() -> str | None:
    found = shutil.which("promtool")
    if found is None and os.environ.get("CI"):
        pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
    return found


@ON_BOTH
def test_readyz_follows_the_dataflow_reports(client: TestClient, rclient: redis.Redis,
                                             settings: Settings) -> None:  # fmt: skip
    r = client.get("/readyz")
    assert r.status_code == 503 and "never reported" in r.json()["detail"]
    now = time.time_ns() // 1_000_000
    report(rclient, settings, now)
    assert client.get("/readyz").status_code == 200
    report(rclient, settings, now - 60_000)  # the dataflow stopped a minute ago
    r = client.get("/readyz")
    assert r.status_code == 503 and "no progress reported" in r.json()["detail"]
    assert "NUDGE_READY_PROGRESS_S=5" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readyz_without_the_progress_check(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"ready_progress_s": 0}))) as c:
        assert c.get("/readyz").status_code == 200


@ON_BOTH
def test_metrics_parse_and_follow_the_conventions(
    client: TestClient, rclient: redis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.key_prefix)
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Product Viewed"},
                      {"type": "track", "event": "no ids"}]}  # fmt: skip
    assert client.post("/v1/batch", json=body, auth=(WRITE_KEY, "")).status_code == 200
    assert client.get("/v1/decide?customer_id=u1&channel=web", headers=AUTH).status_code == 200
    report(rclient, settings, time.time_ns() // 1_000_000)
    rclient.hincrby(keys.stats(), "triggers:abandoned_cart", 3)
    rclient.hincrby(keys.stats(), "webhooks:delivered", 2)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got["nudge_ingest_events_total", (("outcome", "accepted"), ("type", "track"))] >= 1
    assert got["nudge_ingest_events_total", (("outcome", "rejected"), ("type", "track"))] >= 1
    assert got["nudge_ingest_bytes_total", (("outcome", "accepted"), ("type", "track"))] > 10
    decided = [v for (name, labels), v in got.items() if name == "nudge_decisions_total"
               and ("channel", "web") in labels]  # fmt: skip
    assert sum(decided) >= 1
    assert got["nudge_decision_duration_seconds_count", (("channel", "web"),)] >= 1
    assert got["nudge_http_requests_total",
               (("method", "GET"), ("route", "/v1/decide"), ("status", "200"))] >= 1  # fmt: skip
    # the deployment, from Redis: one entry appended to some partition, none read
    behind = [v for (name, _), v in got.items() if name == "nudge_stream_lag_entries"]
    assert len(behind) == settings.partitions and sum(behind) == 1
    assert got["nudge_freshness_seconds", (("partition", "0"),)] == 0.042
    assert got["nudge_stream_events_read_total", (("partition", "0"),)] == 100
    assert got["nudge_triggers_total", (("type", "abandoned_cart"),)] == 3
    assert got["nudge_webhook_deliveries_total", (("outcome", "delivered"),)] == 2
    assert got["nudge_webhook_deliveries_total", (("outcome", "dead_lettered"),)] == 0
    assert got["nudge_deadletter_entries", (("stream", "ingest"),)] == 1  # the event with no ids
    # naming: every family is nudge_-prefixed, counters end in _total, units in base units
    for family in text_string_to_metric_families(r.text):
        if family.name.startswith(("python_", "process_")):
            continue
        assert family.name.startswith("nudge_"), family.name
        assert not family.name.endswith(("_ms", "_milliseconds", "_count")), family.name
    tool = promtool()
    if tool:
        lint = subprocess.run([tool, "check", "metrics"], input=r.text, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr


@ON_BOTH
def test_ops_page_and_its_data(client: TestClient, rclient: redis.Redis,
                               settings: Settings) -> None:  # fmt: skip
    page = client.get("/ops")
    assert page.status_code == 200 and "/ops/static/uPlot.iife.min.js" in page.text
    js = client.get("/ops/static/uPlot.iife.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/ops/static/nothing.js").status_code == 404
    report(rclient, settings, time.time_ns() // 1_000_000)
    for _ in range(3):
        client.get("/v1/decide?customer_id=u1&channel=web", headers=AUTH)
    report(rclient, settings, time.time_ns() // 1_000_000)  # 100 more events per partition
    deadline = time.monotonic() + 10
    while True:
        data = client.get("/ops/data").json()
        if len(data["t"]) >= 3 and any(v for v in data["events_per_s"]):
            break
        assert time.monotonic() < deadline, data
        time.sleep(0.05)
    assert len(data["partitions"]) == settings.partitions
    assert data["partitions"][0]["freshness_s"] == 0.042
    assert any(v is not None for v in data["p99_ms"])  # the decisions above, timed
    assert set(data) >= {"lag_s", "behind", "triggers_per_s", "decisions_per_s", "p50_ms"}


def test_request_ids_in_answers_and_json_logs(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 24
    out = io.StringIO()
    setup_logging("json", "DEBUG", stream=out)
    try:
        r = client.get("/v1/decide?customer_id=u9&channel=web", headers={
            **AUTH, "X-Request-ID": "req-456"})  # fmt: skip
    finally:
        setup_logging("text", "WARNING")
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    (decided,) = [line for line in lines if line["message"] == "decided"]
    assert decided["request_id"] == "req-456"
    assert decided["decision_id"] == r.json()["decision_id"]
    assert decided["level"] == "DEBUG" and decided["channel"] == "web" and "timestamp" in decided
