"""The hot routes' short way through the app: ``GET /v1/decide`` (and the decide bench's
baseline routes) go from this pure ASGI middleware straight to their handler.

FastAPI's way to a handler — the router matching every route in turn, the exception and
exit-stack middlewares, the request/response wrappers and the solving of dependencies — costs
more per request than a decision's own work on this VM (measured with py-spy: ~38% of an
in-process decision). A hot route's handler already reads its request itself (`Request` in,
`Response` out: `api.routes.decide.decide_get`), so it needs none of that. What the app does
around a handler is done here too: the route's template is put in the scope (`api.metrics` labels
requests by its template), and an exception is answered by the app's own handler for it (an
`HTTPException` as FastAPI answers it, a `RedisError` as 503); anything else goes up the
stack as it would from the router. The route stays registered with FastAPI, which serves
its other methods and documents it in OpenAPI.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotRoute:
    """What the scope's ``route`` says of a request served the short way: its template."""

    path: str


class HotRoutes:
    """``GET`` on the paths of `routes` (path → its `HotRoute` and the handler) answered by
    the handler directly; every other request to `app`."""

    def __init__(self, app: ASGIApp, routes: dict[str, tuple[HotRoute, Handler]]) -> None:
        self.app = app
        self.routes = routes  # filled by `hot_route` (the app's routes exist after this)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = None
        if scope["type"] == "http":
            path, root = scope["path"], scope.get("root_path")
            if root and path.startswith(root):  # served under a prefix (``--root-path``)
                path = path[len(root) :]
            hot = self.routes.get(path)
        if hot is None or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        route, handler = hot
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:
            answer = _handler_for(scope["app"], exc)
            if answer is None:
                raise
            response = answer(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def hot_route(app: FastAPI, path: str, handler: Handler) -> None:
    """Serve ``GET path`` with `handler` the short way (`HotRoutes`). The app's own route
    for it keeps documenting it (and serving it to requests that are not ``GET``)."""
    routes: dict[str, tuple[HotRoute, Handler]] = app.state.hot_routes
    routes[path] = (HotRoute(path), handler)


def _handler_for(app: Any, exc: Exception) -> Callable[[Request, Any], Any] | None:
    """The app's exception handler for `exc` as Starlette's `ExceptionMiddleware` finds it:
    for an HTTP exception, the handler of its status code if there is one; else the handler
    of the nearest class in its MRO."""
    handlers = app.exception_handlers
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        by_status: Callable[[Request, Any], Any] = handlers[exc.status_code]
        return by_status
    for cls in type(exc).__mro__:
        if cls in handlers:
            found: Callable[[Request, Any], Any] = handlers[cls]
            return found
    return None
