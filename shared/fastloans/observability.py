"""Error reporting (Sentry when SENTRY_DSN is set) and the gateway's per-request log line.

Reports carry the application id as the tag `application_id` and never
applicant data: no request bodies, no local variables, no cookies or
credentials, and no input values quoted in validation messages.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from fastloans.settings import Settings

log = logging.getLogger("fastloans.observability")
access = logging.getLogger("fastloans.access")

_SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}
# pydantic quotes the offending input ("input_value=..."): it may be applicant data.
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|\]|$)", re.DOTALL)
_sentry_enabled = False
# A Sentry event: sentry_sdk declares it as a TypedDict, the tests pass plain dicts.
_Event = TypeVar("_Event", bound=Mapping[str, Any])


def scrub_event(event: _Event, _hint: dict[str, Any] | None = None) -> _Event:
    """Drop request bodies, credentials, local variables and quoted inputs from a Sentry event."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in _SECRET_HEADERS:
                    headers[name] = "[Filtered]"
    for holder in (event.get("exception") or {}).get("values") or []:
        if isinstance(holder.get("value"), str):
            holder["value"] = _INPUT_VALUE.sub("input_value=[Filtered]", holder["value"])
        for frame in (holder.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    return event


def init_error_reporting(settings: Settings) -> None:
    """Initialise Sentry if a DSN is configured."""
    global _sentry_enabled
    if settings.sentry_dsn is None or _sentry_enabled:
        return
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.environment,
        release=settings.sentry_release,
        sample_rate=settings.sentry_sample_rate,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        server_name=settings.service_name,
    )
    sentry_sdk.set_tag("service", settings.service_name)
    _sentry_enabled = True
    log.info("Sentry error reporting enabled")


@contextmanager
def error_scope(application_id: str | None) -> Iterator[None]:
    """Errors reported (or logged at ERROR) inside the block carry `application_id` as a tag."""
    if not _sentry_enabled or not application_id:
        yield
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("application_id", application_id)
        yield


def request_application_id(scope: Mapping[str, Any], location: bytes | None) -> str | None:
    """The application a request is about: from its path, or from the Location of one it created."""
    candidate = (scope.get("path_params") or {}).get("application_id")
    if candidate is None and location:
        candidate = location.decode("latin-1").rsplit("/", 1)[-1]
    try:
        return str(uuid.UUID(str(candidate))) if candidate else None
    except ValueError:
        return None  # not an id: whatever a client put in the path is not logged


def tag_request(application_id: str | None) -> None:
    """Tag the current request's error reports and APM transaction with its application id."""
    if not application_id:
        return
    from fastloans.tracing import label_application

    label_application(application_id)
    if _sentry_enabled:
        import sentry_sdk

        sentry_sdk.get_isolation_scope().set_tag("application_id", application_id)


def log_request(*, method: str, route: str, status: int, seconds: float, application_id: str | None) -> None:
    """One ECS log line per API request: route template, status, duration and application id, nothing else."""
    fields: dict[str, Any] = {
        "http.request.method": method,
        "url.path": route,
        "http.response.status_code": status,
        "event.duration": int(seconds * 1e9),
    }
    if application_id:
        fields["labels.application_id"] = application_id
    access.info("%s %s %d", method, route, status, extra=fields)
