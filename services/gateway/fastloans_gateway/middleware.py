"""The gateway's edge: security headers, request metrics and log lines, and the last answer to an exception."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastloans.contracts import APPLICATIONS_PATH
from fastloans.observability import log_request, request_application_id, tag_request
from fastloans_gateway.admission import AdmissionControl, Overloaded
from fastloans_gateway.api.errors import SERVED_METHODS, domain_problem, error_response
from fastloans_gateway.api.routes.ops import OPS_PATHS
from fastloans_gateway.metrics import HTTP_ERRORS, HTTP_LATENCY, HTTP_REQUESTS
from fastloans_gateway.problems import problem_response

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
]


class EdgeMiddleware:
    """Security headers on every response; request metrics, a log line and error tags by route template.

    HEAD is routed as GET wherever GET is served (the ASGI server sends the headers without the body).
    An exception is answered here (503 for an outage, else 500) and not raised on: raised, it would be
    logged a second time by the server, which also drops the connection, and counted with the wrong status.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in SERVED_METHODS else "other"
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        # 499 (client closed request) unless a response starts: the client went away mid-request.
        status_holder = {"status": 499, "started": 0}
        location: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                location.extend(value for name, value in headers if name == b"location")
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if not scope["path"].startswith("/static/") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            shed = _shed_early(scope)
            if shed is not None:
                scope["route"] = _ShedRoute(shed[0])
                await problem_response(domain_problem(shed[1]), scope["path"])(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if status_holder["started"]:  # too late for an answer: the server closes the connection
                raise
            tag_request(request_application_id(scope, None))
            await error_response(error, scope["path"])(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = str(status_holder["status"])
            HTTP_REQUESTS.labels(template, method, status).inc()
            HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - started)
            if status_holder["status"] >= 400:
                HTTP_ERRORS.labels(template, status).inc()
            if template not in OPS_PATHS and not scope["path"].startswith("/static/"):
                application_id = request_application_id(scope, location[0] if location else None)
                tag_request(application_id)
                log_request(
                    method=method,
                    route=template,
                    status=status_holder["status"],
                    seconds=time.perf_counter() - started,
                    application_id=application_id,
                )


class _ShedRoute:
    """Stands for the route a request shed at the edge would have reached, for its metrics."""

    def __init__(self, path: str) -> None:
        self.path = path


def _shed_early(scope: Scope) -> tuple[str, Overloaded] | None:
    """(route template, refusal) when admission control sheds this request before any other work."""
    app = scope.get("app")
    applications = getattr(getattr(app, "state", None), "applications", None)
    admission = getattr(applications, "admission", None)
    if not isinstance(admission, AdmissionControl):
        return None
    refusal = admission.shed_early(scope["method"], scope["path"])
    if refusal is None:
        return None
    template = APPLICATIONS_PATH if scope["method"] == "POST" else f"{APPLICATIONS_PATH}/{{application_id}}"
    return template, refusal
