"""Running a background worker process: health and metrics port, signals, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from fastloans.background import cancel_all
from fastloans.logs import configure_logging
from fastloans.looplag import freeze_startup_heap, measure_lag
from fastloans.metrics import render_metrics_off_loop
from fastloans.settings import Settings

log = logging.getLogger("fastloans.runtime")

SHUTDOWN_GRACE_SECONDS = 20.0


class Worker(Protocol):
    """What a background service implements."""

    async def start(self) -> None:
        """Connect to Kafka and the database."""

    async def run(self) -> None:
        """Work until `request_stop` is called."""

    def request_stop(self) -> None:
        """Finish the work in hand, then return from `run`."""

    async def stop(self) -> None:
        """Commit, flush and disconnect."""

    async def readiness(self) -> dict[str, bool]:
        """Each dependency and whether it is usable; ready when all are True."""


Responder = Callable[[str], Awaitable[tuple[int, str, bytes]]]


class HealthServer:
    """A minimal HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`."""

    def __init__(self, host: str, port: int, readiness: Callable[[], Awaitable[dict[str, bool]]]) -> None:
        self.host, self.port, self.readiness = host, port, readiness
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen on host:port."""
        self.server = await asyncio.start_server(self._serve, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def respond(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            checks = await self.readiness()
            ok = all(checks.values())
            body = orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks})
            return (200 if ok else 503), "application/json", body
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await render_metrics_off_loop()
        return 404, "application/json", b'{"status":"not found"}'

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in {"GET", "HEAD"}:
                status, ctype, body = 405, "application/json", b'{"status":"method not allowed"}'
            else:
                status, ctype, body = await self.respond(parts[1])
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def start_observing(settings: Settings) -> None:
    """Logging and error reporting of a service process, as its settings say (first thing a process does)."""
    from fastloans.observability import init_error_reporting

    configure_logging(
        service=settings.service_name,
        level=settings.log_level,
        environment=settings.environment,
        log_file=settings.log_file,
    )
    init_error_reporting(settings)


def run_worker(settings: Settings, factory: Callable[[Settings], Worker]) -> None:
    """Run a worker until SIGTERM/SIGINT, then shut it down within a bounded time."""
    from fastloans.tracing import init_tracing

    start_observing(settings)
    init_tracing(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    sys.exit(asyncio.run(_serve(settings, factory)))


async def _serve(settings: Settings, factory: Callable[[Settings], Worker]) -> int:
    worker = factory(settings)
    health = HealthServer(settings.http_host, settings.http_port, worker.readiness)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await health.start()
    lag = asyncio.create_task(measure_lag())
    log.info("starting", extra={"service.name": settings.service_name, "url.port": settings.http_port})
    while True:
        try:
            await worker.start()
            break
        except Exception as error:
            log.warning(
                "could not start yet; retrying",
                extra={"error.type": type(error).__name__, "error.message": str(error)[:200]},
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=2)
                await cancel_all([lag])
                await health.stop()
                return 0
            except TimeoutError:
                continue
    freeze_startup_heap()
    run = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if run in done and run.exception() is not None:
        log.error("worker crashed", exc_info=run.exception())
        code = 1
    log.info("stopping: finishing the batch in hand")
    worker.request_stop()
    try:
        await asyncio.wait_for(asyncio.shield(run), timeout=SHUTDOWN_GRACE_SECONDS)
    except (TimeoutError, Exception):
        run.cancel()
    stopper.cancel()
    try:
        await asyncio.wait_for(worker.stop(), timeout=SHUTDOWN_GRACE_SECONDS)
    except TimeoutError:
        log.error("shutdown timed out")
        code = code or 1
    await cancel_all([lag])
    await health.stop()
    log.info("stopped")
    return code
