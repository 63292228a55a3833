"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from redis.exceptions import RedisError

from api.deps import StoreDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The API process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "Redis down"}})
async def readyz(store: StoreDep) -> Health:
    """The API can reach Redis."""
    try:
        await store.ping()
    except (RedisError, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"redis: {exc}") from exc
    return Health(status="ok")
