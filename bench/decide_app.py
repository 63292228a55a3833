"""The API as `nudge api` serves it, plus the bench's baseline routes: ``GET /bench/bare``, one
Redis HGETALL of a per-customer hash and a small JSON answer, through the same app, auth,
client and event loop; ``GET /bench/bare-mux``, the same over the multiplexed connection the
decision's scripts use (`api.multiplex`). Served by `bench.decide` with
``uvicorn bench.decide_app:create --factory`` (uvloop, httptools, no access log)."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request, Response

from api.deps import require_api_key
from api.hot import hot_route
from api.main import create_app


def bare_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}:bench:{{{customer_id}}}:h"


def create() -> FastAPI:
    app = create_app()

    # read, checked and answered as `GET /v1/decide` is (the key and the query read in the
    # handler, the JSON by orjson), so the comparison is of what the endpoints do, not of
    # how FastAPI parses and encodes
    @app.get("/bench/bare")
    async def bare(request: Request) -> Response:
        await require_api_key(request)
        customer_id = request.query_params["customer_id"]
        store = request.app.state.store
        fields = await store.client.hgetall(bare_key(store.keys.base, customer_id))
        return _answer(customer_id, len(fields))

    @app.get("/bench/bare-mux")
    async def bare_mux(request: Request) -> Response:
        await require_api_key(request)
        customer_id = request.query_params["customer_id"]
        store = request.app.state.store
        key = bare_key(store.keys.base, customer_id)
        fields = await store.fast.execute(key, "HGETALL", key)
        return _answer(customer_id, len(fields) // 2)

    # served the short way, as `GET /v1/decide` is (`api.hot`)
    hot_route(app, "/bench/bare", bare)
    hot_route(app, "/bench/bare-mux", bare_mux)
    return app


def _answer(customer_id: str, fields: int) -> Response:
    body = orjson.dumps({"customer_id": customer_id, "fields": fields})
    return Response(body, media_type="application/json")
