"""`fastloans-gateway`: serve the API with uvicorn (WEB_CONCURRENCY worker processes)."""

from __future__ import annotations

import os
import tempfile

import uvicorn
from fastapi import FastAPI

from fastloans.logs import configure_logging
from fastloans.observability import init_error_reporting
from fastloans.settings import load_settings
from fastloans_gateway.app import create_app
from fastloans_gateway.settings import GatewaySettings


def app_factory() -> FastAPI:
    """Build the app in each worker process, with its logging and error reporting."""
    settings = load_settings(GatewaySettings)
    configure_logging(service=settings.service_name, level=settings.log_level,
                      environment=settings.environment, log_file=settings.log_file)
    init_error_reporting(settings)
    return create_app(settings)


def main() -> None:
    """Console entry point."""
    settings = load_settings(GatewaySettings)
    if settings.web_concurrency > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes must share their metrics through files to add up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fastloans-metrics-")
    uvicorn.run(
        "fastloans_gateway.main:app_factory",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.web_concurrency,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
        proxy_headers=True,
        server_header=False,
    )
