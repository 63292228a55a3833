"""`api.hot`: a hot route's ``GET`` goes straight to its handler, and is answered as the app
would answer it — its errors by the app's exception handlers, its metrics under the route's
template — while its other methods, and every other path, stay FastAPI's."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from api.hot import HotRoutes, hot_route
from api.metrics import RequestContext


def make_app() -> tuple[FastAPI, list[str]]:
    seen: list[str] = []
    app = FastAPI()

    @app.get("/thing")
    async def by_fastapi(request: Request) -> Response:
        seen.append("fastapi")
        return Response(b"slow")

    @app.post("/thing")
    async def posted() -> dict[str, str]:
        return {"via": "post"}

    async def hot(request: Request) -> Response:
        seen.append(f"route={request.scope['route'].path}")
        what = request.query_params.get("fail")
        if what == "http":
            raise HTTPException(401, "no key", headers={"WWW-Authenticate": "Bearer"})
        if what == "redis":
            raise RedisConnectionError("gone")
        if what == "bug":
            raise RuntimeError("a bug")
        return Response(b"fast")

    @app.exception_handler(RedisConnectionError)
    async def down(request: Request, exc: RedisConnectionError) -> JSONResponse:
        return JSONResponse({"detail": "storage unavailable"}, status_code=503)

    app.state.hot_routes = {}
    app.add_middleware(HotRoutes, routes=app.state.hot_routes)
    app.add_middleware(RequestContext)
    hot_route(app, "/thing", hot)
    return app, seen


def test_get_takes_the_short_way_and_other_methods_do_not() -> None:
    app, seen = make_app()
    client = TestClient(app)
    r = client.get("/thing")
    assert r.status_code == 200 and r.content == b"fast" and seen == ["route=/thing"]
    assert r.headers["x-request-id"]  # RequestContext still wraps it
    assert client.post("/thing").json() == {"via": "post"}
    assert client.get("/openapi.json").json()["paths"]["/thing"].keys() == {"get", "post"}
    assert seen == ["route=/thing"]  # FastAPI's GET handler never ran


def test_errors_are_answered_by_the_apps_handlers() -> None:
    app, _ = make_app()
    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/thing", params={"fail": "http"})
    assert r.status_code == 401 and r.json() == {"detail": "no key"}
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/thing", params={"fail": "redis"})
    assert r.status_code == 503 and r.json() == {"detail": "storage unavailable"}
    assert client.get("/thing", params={"fail": "bug"}).status_code == 500


def test_under_a_root_path_too() -> None:
    """Behind a proxy that mounts the API under a prefix (uvicorn's ``--root-path``), the
    path the app sees carries the prefix."""
    app, seen = make_app()
    client = TestClient(app, root_path="/api")
    r = client.get("/api/thing")
    assert r.status_code == 200 and r.content == b"fast" and seen == ["route=/thing"]


def test_a_handler_by_status_code_comes_first() -> None:
    app, _ = make_app()

    @app.exception_handler(401)
    async def unauthorized(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": "who are you?"}, status_code=401)

    r = TestClient(app).get("/thing", params={"fail": "http"})
    assert r.status_code == 401 and r.json() == {"detail": "who are you?"}
