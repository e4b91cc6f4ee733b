"""The gateway's HTTP server: uvicorn's httptools protocol with limits on heads, bodies, time and connections.

httptools (llhttp) keeps no bound on a request head and uvicorn only times out idle keep-alive connections,
so the protocol below counts head bytes as they arrive, times the head and the body, caps the connections
of the public port, and reads (and drops) the rest of a body the application answered early, so that a
client still sending sees the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from fastloans_gateway.problems import PROBLEM_JSON, TITLES, Problem, problem_response


@dataclass(frozen=True)
class HttpLimits:
    """The limits of one gateway process (from GatewaySettings; picklable for the worker processes)."""

    max_head_bytes: int
    max_headers: int
    head_timeout: float
    body_timeout: float
    discard_body_bytes: int
    max_connections: int
    ops_port: int  # connections to it are not capped (0: none is the ops port)
    retry_after: int = 1


def problem_bytes(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    phrase = HTTPStatus(status).phrase
    body = orjson.dumps(
        {"type": "about:blank", "title": TITLES.get(status, phrase), "status": status, "detail": detail}
    )
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: {PROBLEM_JSON}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


HEAD_TOO_LARGE = problem_bytes(431, "the request head (request line and headers) is over the size limit")
TOO_MANY_HEADERS = problem_bytes(431, "the request has too many header fields")
HEAD_TIMEOUT = problem_bytes(408, "the request head did not arrive in time")
BODY_TIMEOUT = problem_bytes(408, "the request body did not arrive in time")


class _Answered:
    """Stands in for the request cycle of a request the protocol answered itself: the parser's
    callbacks for the rest of that request then see a finished response and do nothing."""

    response_complete = True
    message_event = asyncio.Event()


_ANSWERED = _Answered()


_base = HttpToolsProtocol  # called directly on the per-request path: cheaper than super() on Python 3.11


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `HttpLimits`; one instance per connection."""

    public_connections = 0  # Connections now open on the public port of this process.

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._public = False
        self._timer: asyncio.TimerHandle | None = None  # the head, body or discard deadline (one at a time)
        # Bytes received since the last head was complete: an upper bound of the next head's size so far;
        # above zero after a read, a head is under way.
        self._head_seen = 0
        self._in_body = False
        self._discarded = 0
        self._draining = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection; over the cap, its request is answered 503; it must send a head in time."""
        super().connection_made(transport)
        self._public = self.server is None or self.server[1] != self.limits.ops_port
        if self._public:
            if LimitedHttpToolsProtocol.public_connections >= self.limits.max_connections:
                self.app = over_capacity
            LimitedHttpToolsProtocol.public_connections += 1
        # A connection that never sends a byte is held to the head deadline too.
        self._timer = self.loop.call_later(self.limits.head_timeout, self._on_head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its deadline."""
        if self._public:
            self._public = False
            LimitedHttpToolsProtocol.public_connections -= 1
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then check the head's size and arm the head or body deadline if it is unfinished."""
        if self._draining:
            self._discard(data)
            return
        if self._in_body:
            if self.cycle.response_complete and self._discard(data):
                return
        else:
            self._head_seen += len(data)
        _base.data_received(self, data)
        if self._head_seen:
            if self._head_seen > self.limits.max_head_bytes:
                self._answer(HEAD_TOO_LARGE)
            elif self._timer is None:
                self._timer = self.loop.call_later(self.limits.head_timeout, self._on_head_timeout)
        elif self._in_body and self._timer is None and not self.transport.is_closing():
            self._timer = self.loop.call_later(self.limits.body_timeout, self._on_body_timeout)
            # Only a request whose body is still coming can be answered before it is read.
            self.cycle.transport = _LingeringTransport(self)  # type: ignore[assignment]

    # Parser callbacks

    def on_headers_complete(self) -> None:
        """Refuse a head over the limits with 431; otherwise start the request as uvicorn does."""
        if self._draining or self.transport.is_closing():
            # Answered already (a pipelined request behind a refused one): nothing more is started.
            self.cycle = _ANSWERED  # type: ignore[assignment]
            return
        self._cancel_timer()
        if self._head_seen > self.limits.max_head_bytes and self._head_size() > self.limits.max_head_bytes:
            self._answer(HEAD_TOO_LARGE)
            self.cycle = _ANSWERED  # type: ignore[assignment]
            return
        if len(self.headers) > self.limits.max_headers:
            self._answer(TOO_MANY_HEADERS)
            self.cycle = _ANSWERED  # type: ignore[assignment]
            return
        self._head_seen = 0
        self._in_body = True
        self._discarded = 0
        _base.on_headers_complete(self)

    def on_message_complete(self) -> None:
        """The request body is complete: its deadline ends."""
        _base.on_message_complete(self)
        self._in_body = False
        if self._timer is not None and not self._draining:
            self._cancel_timer()

    def send_400_response(self, msg: str) -> None:
        """A malformed request: 400, unless the connection was answered already."""
        if not self.transport.is_closing():
            super().send_400_response(msg)

    # Deadlines and answers

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_head_timeout(self) -> None:
        self._timer = None
        if self._head_seen or self.cycle is None:
            # A client this slow is not waited for any longer: answer (if it sent anything) and close.
            self._answer(HEAD_TIMEOUT if self._head_seen else b"", drain=False)

    def _on_body_timeout(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The application sees a disconnect and its answer, if any, is dropped: the 408 is the answer.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer(BODY_TIMEOUT, drain=False)
        else:
            self._close()

    def _answer(self, response: bytes, *, drain: bool = True) -> None:
        """Write a response of the protocol's own (unless one is under way), then drain or close."""
        if self.transport.is_closing() or self._draining:
            return
        cycle = self.cycle
        if response and (
            cycle is None
            or cycle.response_complete  # _ANSWERED is complete too
            or cycle.disconnected
        ):
            self.transport.write(response)
            if drain:
                self.drain()
                return
        self._close()

    def drain(self) -> None:
        """Answered while the client may still be sending: end our side, read and drop what comes, to a bound.

        Closing with unread data would make the kernel reset the connection, and the client, still
        sending, would lose the answer (nginx's lingering close does the same).
        """
        if self._draining or self.transport.is_closing():
            return
        self._draining = True
        self._cancel_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._timer = self.loop.call_later(self.limits.body_timeout, self._close)

    def _discard(self, data: bytes) -> bool:
        """Count dropped bytes; past the bound the connection is closed (returns whether it was)."""
        self._unset_keepalive_if_required()
        self._discarded += len(data)
        if self._discarded > self.limits.discard_body_bytes:
            self._close()
            return True
        return False

    def _close(self) -> None:
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def linger(self) -> None:
        """The response is complete; close now, or drain first if the request body is still arriving."""
        if self._in_body:
            self.drain()
        else:
            self._close()


class _LingeringTransport:
    """The transport as the request cycle sees it: `close()` waits for the rest of the request body."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self.write = self._transport.write
        self.is_closing = self._transport.is_closing

    def close(self) -> None:
        """Close once the request body has been read (or its bound or deadline is reached)."""
        self._protocol.linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request on a connection over the process's connection cap."""
    response = problem_response(
        Problem(
            503,
            "the server is at its connection limit; retry shortly",
            headers={"Retry-After": "1", "Connection": "close"},
        )
    )
    await response(scope, receive, send)


class OpsPortMiddleware:
    """Operational routes only on the ops port, everything else only on the public port (404 otherwise)."""

    def __init__(self, app: ASGIApp, *, ops_port: int, public_port: int, ops_paths: frozenset[str] | set[str]) -> None:
        self.app = app
        self.ops_port = ops_port
        self.split = ops_port != public_port
        self.ops_paths = frozenset(ops_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.split:
            server = scope.get("server")
            on_ops_port = server is not None and server[1] == self.ops_port
            if on_ops_port != (scope["path"] in self.ops_paths):
                await problem_response(Problem(404, "not found"), scope["path"])(scope, receive, send)
                return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            # The client went away (or its body timed out) mid-request: there is no one to answer.
            return


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket that worker processes can inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
