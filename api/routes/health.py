"""Liveness and readiness (no key needed)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, status
from redis.exceptions import RedisError

from api.deps import StoreDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The API process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"description": "Redis down, or the dataflow has stopped reporting"}},
)
async def readyz(request: Request, store: StoreDep) -> Health:
    """Redis answers, and the dataflow has reported progress on every stream partition
    within `NUDGE_READY_PROGRESS_S` (0: not checked)."""
    try:
        snap = await store.ops_snapshot()
    except (RedisError, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"redis: {exc}") from exc
    limit_s = request.app.state.settings.ready_progress_s
    if limit_s > 0:
        for p, age in snap.silent(time.time_ns() // 1_000_000, limit_s):
            if age is None:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    f"dataflow: never reported progress on {p.stream}",
                )
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"dataflow: no progress reported on {p.stream} for {age / 1000:.0f} s "
                f"(NUDGE_READY_PROGRESS_S={limit_s:g})",
            )
    return Health(status="ok")
