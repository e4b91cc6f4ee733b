"""`fastloans-gateway`: the API under uvicorn (WEB_CONCURRENCY processes); health and metrics on OPS_PORT."""

from __future__ import annotations

import functools
import os
import sys
import tempfile

from fastapi import FastAPI
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from fastloans.runtime import start_observing
from fastloans.settings import load_settings
from fastloans_gateway.app import create_app
from fastloans_gateway.server import HttpLimits, LimitedHttpToolsProtocol, bind
from fastloans_gateway.settings import GatewaySettings


def app_factory() -> FastAPI:
    """Build the app in each worker process, with its logging and error reporting."""
    settings = load_settings(GatewaySettings)
    start_observing(settings)
    return create_app(settings)


def http_limits(settings: GatewaySettings) -> HttpLimits:
    """The HTTP limits of `settings`."""
    return HttpLimits(
        max_head_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
        head_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        discard_body_bytes=settings.http_discard_body_bytes,
        max_connections=settings.http_max_connections,
        # On one shared port every connection is a public one (capped).
        ops_port=settings.ops_port if settings.ops_port != settings.http_port else 0,
    )


def server_config(settings: GatewaySettings) -> Config:
    """uvicorn's configuration: the limited httptools protocol, keep-alive timeout, no WebSockets."""
    return Config(
        "fastloans_gateway.main:app_factory",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        workers=settings.web_concurrency,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http=functools.partial(LimitedHttpToolsProtocol, limits=http_limits(settings)),  # type: ignore[arg-type]
        ws="none",
        timeout_keep_alive=settings.http_keepalive_seconds,
        timeout_graceful_shutdown=20,
        proxy_headers=True,
        server_header=False,
    )


def main() -> None:
    """Console entry point."""
    settings = load_settings(GatewaySettings)
    if settings.web_concurrency > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes must share their metrics through files to add up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fastloans-metrics-")
    config = server_config(settings)
    # Every worker serves both listening sockets; the app tells them apart by the local port.
    sockets = [bind(settings.http_host, settings.http_port)]
    if settings.ops_port != settings.http_port:
        sockets.append(bind(settings.http_host, settings.ops_port))
    if settings.web_concurrency > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        server = Server(config)
        server.run(sockets=sockets)
        if not server.started:
            sys.exit(STARTUP_FAILURE)
