"""The benchmark's load generator as a careful client, against a real server on loopback.

The server answers the first request of every connection and keeps it open, then resets the connection when a
second request arrives on it, without answering: what a client sees when it writes as the server closes an idle
keep-alive connection.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from bench.loadgen import IDLE_EXPIRY, Job, _Run, cause, retry_safe

pytestmark = pytest.mark.integration

ANSWER = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
REQUEST = b"POST /x HTTP/1.1\r\nHost: t\r\nIdempotency-Key: k\r\nContent-Length: 2\r\n\r\n{}"
WITHOUT_KEY = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"


class _ResetsReusedConnections(asyncio.Protocol):
    seen: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.requests = 0

    def data_received(self, data: bytes) -> None:
        self.requests += data.count(b"\r\n\r\n")
        if self.requests == 1:
            self.transport.write(ANSWER)
            return
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        self.transport.abort()


async def _run(requests: int, request: bytes = REQUEST) -> _Run:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_ResetsReusedConnections, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    job = Job(host="127.0.0.1", port=port, requests=[REQUEST], duration=0, rate=None, connections=1, start_at=0)
    run = _Run(job, None)
    async with server:
        for index in range(requests):
            slot = run._slot(0.0, 0.0)
            await run._one(slot, request, loop.time())
            assert slot == index
    run.pool.close()
    return run


async def test_a_request_reset_on_a_reused_connection_is_sent_again_on_a_new_one_and_counted() -> None:
    run = await _run(3)
    out = run.outcome
    assert list(out.status) == [202, 202, 202], "every request got its answer"
    assert out.causes == {}, "nothing was left without an answer"
    # The second and third requests each met a reset on the connection the one before had used.
    assert sum(out.retried.values()) == 2
    assert all(name.startswith("ConnectionResetError (reused, idle") for name in out.retried), out.retried


async def test_a_post_without_an_idempotency_key_is_never_sent_twice() -> None:
    run = await _run(2, WITHOUT_KEY)
    out = run.outcome
    assert list(out.status) == [202, 0], "the reset request is counted as unanswered, not sent again"
    assert out.retried == {}
    assert list(out.causes) == ["ConnectionResetError (reused, idle < 0.1 s)"], out.causes


def test_only_gets_and_requests_with_an_idempotency_key_are_retry_safe() -> None:
    assert retry_safe(REQUEST) and retry_safe(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    assert retry_safe(REQUEST.replace(b"Idempotency-Key", b"idempotency-key"))
    assert not retry_safe(WITHOUT_KEY)
    assert not retry_safe(WITHOUT_KEY.replace(b"{}", b'{"x": "\r\nIdempotency-Key: in the body"}'))


async def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.loadgen.IDLE_EXPIRY", 0.0)
    run = await _run(3)
    assert list(run.outcome.status) == [202, 202, 202]
    assert run.outcome.retried == {} and run.outcome.causes == {}, "no request was written to an expired connection"


def test_causes_name_the_exception_and_the_idle_time_of_a_reused_connection() -> None:
    assert cause(ConnectionResetError(), None) == "ConnectionResetError"
    assert cause(ConnectionResetError(), 4.9) == "ConnectionResetError (reused, idle < 6 s)"
    assert cause(ConnectionResetError(), IDLE_EXPIRY) == "ConnectionResetError (reused, idle < 60 s)"
    assert cause(BrokenPipeError(), 0.05) == "BrokenPipeError (reused, idle < 0.1 s)"
