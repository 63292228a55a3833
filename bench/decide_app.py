"""The API as `nudge api` serves it, plus the bench's baseline routes: ``GET /bench/bare``, one
Redis HGETALL of a per-customer hash and a small JSON answer, through the same app, auth,
client and event loop; ``GET /bench/bare-mux``, the same over the multiplexed connection the
decision's scripts use (`api.multiplex`). Served by `bench.decide` with
``uvicorn bench.decide_app:create --factory`` (uvloop, httptools, no access log)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from api.deps import ApiKey
from api.main import create_app


def bare_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}:bench:{{{customer_id}}}:h"


def create() -> FastAPI:
    app = create_app()

    @app.get("/bench/bare", dependencies=[ApiKey])
    async def bare(request: Request, customer_id: str) -> dict[str, Any]:
        store = request.app.state.store
        fields = await store.client.hgetall(bare_key(store.keys.base, customer_id))
        return {"customer_id": customer_id, "fields": len(fields)}

    @app.get("/bench/bare-mux", dependencies=[ApiKey])
    async def bare_mux(request: Request, customer_id: str) -> dict[str, Any]:
        store = request.app.state.store
        key = bare_key(store.keys.base, customer_id)
        fields = await store.fast.execute(key, "HGETALL", key)
        return {"customer_id": customer_id, "fields": len(fields) // 2}

    return app
