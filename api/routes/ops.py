"""What operators look at: ``/metrics`` (Prometheus), ``/ops`` (a page of live charts, no
build step: uPlot, vendored) and ``/ops/data`` (its series as JSON). No key: they show no
customer data; expose them on the internal network only."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.exceptions import RedisError

from api.deps import StoreDep
from api.metrics import REDIS_VIEW
from api.ops import OpsSampler

router = APIRouter(tags=["operations"])

_STATIC = resources.files("api") / "static"
_FILES = {
    "ops.html": ("text/html; charset=utf-8", (_STATIC / "ops.html").read_bytes()),
    "uPlot.iife.min.js": ("text/javascript", (_STATIC / "uPlot.iife.min.js").read_bytes()),
    "uPlot.min.css": ("text/css", (_STATIC / "uPlot.min.css").read_bytes()),
}


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(store: StoreDep) -> Response:
    """Prometheus text format: this process's counters and histograms, and the deployment's
    lag, freshness, triggers, webhook outcomes and dead letters as Redis has them now."""
    try:
        REDIS_VIEW.snapshot = await store.ops_snapshot()
    except RedisError:
        REDIS_VIEW.snapshot = None  # this process's own figures still answer
    REDIS_VIEW.now_ms = time.time_ns() // 1_000_000
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/ops", response_class=HTMLResponse, include_in_schema=False)
async def ops_page() -> HTMLResponse:
    """Lag, throughput, decision latency and triggers over the last minutes, live."""
    return HTMLResponse(_FILES["ops.html"][1])


@router.get("/ops/static/{name}", include_in_schema=False)
async def ops_static(name: str) -> Response:
    media, body = _FILES.get(name, ("", b""))
    if not body or name == "ops.html":
        return Response("not found", status_code=404)
    return Response(body, media_type=media, headers={"Cache-Control": "max-age=3600"})


@router.get("/ops/data")
async def ops_data(request: Request) -> Any:
    """The /ops page's series (one sample every `NUDGE_OPS_SAMPLE_S`) and the latest figures
    per stream partition."""
    sampler: OpsSampler = request.app.state.ops
    return Response(orjson.dumps(sampler.data()), media_type="application/json")
