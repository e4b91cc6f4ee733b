"""The HTTP server's own cost per request, server against server, in interleaved rounds.

    python -m bench.servers [--rounds 3] [--seconds 8] [--connections 32] [--output FILE]

Every server serves the same bare ASGI app (a fixed JSON answer, no framework), so the figures are what the
server itself spends on a keep-alive request: parsing, the ASGI messages, the write. The servers:

- `uvicorn-limited`: uvicorn with the gateway's protocol and HTTP limits, as `fastloans-gateway` runs it;
- `uvicorn`: uvicorn's own httptools protocol;
- `granian`: granian's ASGI interface, one worker with one runtime thread, when the `granian` package is
  installed (it is not a dependency of the project).

Each round runs every server once, in turn, each driven closed loop by the benchmark's load generator
(`bench.loadgen`, its own process). The figure to compare is the server's CPU per answered request (its whole
process tree); requests per second are printed too but depend on what else the machine runs. Prints a table per
round and the medians, as JSON too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

from bench.loadgen import Generator, Job
from bench.monitor import Monitor

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
REQUEST = b"GET /answer HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: application/json\r\n\r\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The bare ASGI app every server serves."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def serve(name: str, port: int) -> None:
    """Run one server in this process (the `--serve` mode the measuring process starts)."""
    if name == "granian":
        from granian import Granian  # type: ignore[import-not-found]

        Granian(
            "bench.servers:app",
            address="127.0.0.1",
            port=port,
            interface="asgi",
            workers=1,
            runtime_threads=1,
            websockets=False,
            log_enabled=False,
        ).serve()
        return
    import functools

    from uvicorn import Config, Server

    options: dict[str, Any] = {}
    if name == "uvicorn-limited":
        from fastloans_gateway.main import http_limits
        from fastloans_gateway.server import LimitedHttpToolsProtocol
        from fastloans_gateway.settings import GatewaySettings

        # The gateway's limits with its defaults (the URLs are never used).
        settings = GatewaySettings(
            database_url="postgresql://bench@127.0.0.1/bench", kafka_bootstrap_servers="127.0.0.1:9"
        )
        options["http"] = functools.partial(LimitedHttpToolsProtocol, limits=http_limits(settings))
        options["timeout_keep_alive"] = settings.http_keepalive_seconds
    else:
        options["http"] = "httptools"
    config = Config(
        app, host="127.0.0.1", port=port, loop="uvloop", log_config=None, access_log=False, ws="none", **options
    )
    Server(config).run()


def available() -> list[str]:
    """The servers that can run here."""
    servers = ["uvicorn-limited", "uvicorn"]
    if importlib.util.find_spec("granian") is not None:
        servers.append("granian")
    return servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port} within {timeout:.0f} s")


def measure(name: str, seconds: float, connections: int) -> dict[str, float]:
    """Start server `name`, drive it closed loop for `seconds`, stop it; its CPU per request and throughput."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "bench.servers", "--serve", name, "--port", str(port)], env=env)
    try:
        wait_listening(port, process)
        monitor = Monitor({name: port})
        if name not in monitor.usage:
            monitor.add(name, process.pid)
        generator = Generator(
            Job(
                host="127.0.0.1",
                port=port,
                requests=[REQUEST],
                duration=seconds,
                rate=None,
                connections=connections,
                start_at=time.time() + 1.0,
            )
        )
        generator.start()
        time.sleep(0.8)  # the generator process is up; the load starts at start_at
        start = time.time()
        monitor.sample(start)
        outcome = generator.join()
        end = time.time()
        monitor.sample(end)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    answered = sum(1 for status in outcome.status if status == 200)
    if not answered:
        raise RuntimeError(f"{name} answered nothing")
    return {
        "cpu_ms_per_request": round(1000 * monitor.cpu_seconds(name, start, end + 1) / answered, 4),
        "requests_per_s": round(answered / seconds, 1),
        "errors": len(outcome.status) - answered,
    }


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures (and write them as JSON to --output when given)."""
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every server once, in turn")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each server's run")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--output", type=Path, default=None, help="write the figures to this JSON file")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    servers = available()
    rounds: list[dict[str, dict[str, float]]] = []
    for number in range(1, args.rounds + 1):
        figures = {name: measure(name, args.seconds, args.connections) for name in servers}
        rounds.append(figures)
        print(f"round {number}:", file=sys.stderr)
        for name, row in figures.items():
            print(
                f"  {name:<16} {row['cpu_ms_per_request'] * 1000:6.1f} µs of CPU per request  "
                f"{row['requests_per_s']:>9,.0f} requests/s  {row['errors']} errors",
                file=sys.stderr,
            )
    medians = {
        name: {
            "cpu_ms_per_request": statistics.median(r[name]["cpu_ms_per_request"] for r in rounds),
            "requests_per_s": statistics.median(r[name]["requests_per_s"] for r in rounds),
        }
        for name in servers
    }
    text = json.dumps({"medians": medians, "rounds": rounds, "connections": args.connections}, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
