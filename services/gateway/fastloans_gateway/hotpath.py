"""The two hot routes (submit, and get by id) dispatched without the router and FastAPI's parameter resolution.

Submitting and reading an application are most of the gateway's traffic, and their endpoints already take the
bare `Request` and read what they need themselves (`api/deps.py`). For them, matching the path against every
route, solving an empty set of dependencies and validating a `str` path parameter cost more CPU than the
endpoint's own work (`docs/performance.md`, "GET by id"). `HotRoutes` sits inside the edge, the ops-port split
and CORS, so every answer still gets its security headers, metrics, log line and port check; it calls the very
endpoint functions the routes declare, and answers their errors with the app's own exception handlers. The
routes stay declared for the OpenAPI document, and every other request (and every method or path it does not
claim) goes through the router as before. `GATEWAY_HOT_PATH=false` turns it off.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fastloans.contracts import APPLICATIONS_PATH
from fastloans_gateway.api.routes import applications as application_routes

ITEM_PREFIX = APPLICATIONS_PATH + "/"
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def hot_route(method: str, path: str) -> tuple[str, str | None] | None:
    """("submit", None) or ("get", application_id) when the request is one of the hot routes, else None.

    The same rule as the router's: the collection path exactly, or one non-empty path segment after it.
    """
    if method == "POST":
        return ("submit", None) if path == APPLICATIONS_PATH else None
    if method == "GET" and path.startswith(ITEM_PREFIX):
        segment = path[len(ITEM_PREFIX) :]
        if segment and "/" not in segment:
            return "get", segment
    return None


def _declared(endpoint: Callable[..., Any]) -> APIRoute:
    """The declared route of an endpoint, for what the edge reads from the scope (its path template)."""
    routes = [r for r in application_routes.router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint]
    if len(routes) != 1:
        raise RuntimeError(f"expected one route for {endpoint.__name__}, found {len(routes)}")
    return routes[0]


class HotRoutes:
    """Serves POST and GET-by-id of loan applications directly; passes every other request on."""

    def __init__(self, app: ASGIApp, *, exception_handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        self.submit = _declared(application_routes.submit_application)
        self.get = _declared(application_routes.get_application)
        # The handlers the router's exception middleware would use. `Exception` is left out as it is there:
        # anything else reaches the edge, which answers it (503 for an outage, else 500) and logs it once.
        self.handlers = {kind: h for kind, h in exception_handlers.items() if kind is not Exception}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = hot_route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        name, application_id = hot
        route = self.submit if name == "submit" else self.get
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {} if application_id is None else {"application_id": application_id}
        request = Request(scope, receive)
        try:
            if application_id is None:
                response = await application_routes.submit_application(request)
            else:
                response = await application_routes.get_application(request, application_id)
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Handler | None:
        for kind in type(error).__mro__:
            handler = self.handlers.get(kind)
            if handler is not None:
                return handler
        return None
