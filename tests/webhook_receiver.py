"""A real webhook receiver on loopback, shared by the webhook tests, the chaos run and the benchmark."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PATH = "/hooks/fastloans"


@dataclass
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    # Wall-clock time of receipt (`at` is monotonic), to compare with timestamps of the stack.
    wall: float = 0.0

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A real HTTP server on loopback recording every request; `answer` decides each status and delay."""

    answer: Callable[[Receiver], tuple[int, float]] = lambda _: (204, 0.0)
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    # The request `answer` is deciding about (requests are answered one at a time).
    pending: Received = field(default_factory=lambda: Received({}, b"", 0.0, 0))
    answering: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where the endpoint points."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    def accepted(self, event_type: str = "application.decided") -> list[Received]:
        """The requests answered 2xx, of one event type."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300 and r.event["type"] == event_type]

    def all(self) -> list[Received]:
        """Every request so far."""
        with self.lock:
            return list(self.requests)

    def start(self, port: int = 0, *, keep_alive: bool = False) -> Receiver:
        """Listen on 127.0.0.1 (`port`, or a free one) in a thread of its own."""
        self.server = serve(self, port, keep_alive=keep_alive)
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def serve(receiver: Receiver, port: int = 0, *, keep_alive: bool = False) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering POSTs as `receiver.answer` says and recording them."""

    class Handler(BaseHTTPRequestHandler):
        # Without keep-alive (HTTP/1.0) each request has a connection of its own: a stopped receiver gets nothing.
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            wall = time.time()
            with receiver.answering:
                receiver.pending = Received(headers, body, time.monotonic(), 0, wall)
                status, delay = receiver.answer(receiver)
            if delay:
                time.sleep(delay)
            with receiver.lock:
                receiver.requests.append(Received(headers, body, time.monotonic(), status, wall))
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the dispatcher gave up waiting
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def verifying(secret: str) -> Callable[[Receiver], tuple[int, float]]:
    """An `answer` that checks each request with standardwebhooks: 204 when it verifies, 400 when not."""

    def answer(receiver: Receiver) -> tuple[int, float]:
        request = receiver.pending
        try:
            Webhook(secret).verify(request.body, request.headers)
        except WebhookVerificationError:
            return 400, 0.0
        return 204, 0.0

    return answer


def serve_verified(port: int, secret: str, control: Connection) -> None:
    """A process's whole work: verify and record deliveries; on "report", send (id, status, receipt, decided_at)."""
    receiver = Receiver(answer=verifying(secret)).start(port, keep_alive=True)
    control.send("ready")
    while control.recv() == "report":
        rows = []
        for request in receiver.all():
            data = request.event.get("data", {})
            rows.append((request.headers.get("webhook-id", ""), request.status, request.wall, data.get("occurred_at")))
        control.send(rows)
    receiver.stop()
