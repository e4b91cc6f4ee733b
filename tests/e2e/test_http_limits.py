"""The gateway's HTTP limits, against a real gateway process with short timeouts: heads, bodies, idle
connections, the connection cap, a readable 413 for a blocking client, and the ops port."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests.conftest import extra_instances
from tests.e2e.test_pipeline import APPROVED, URL

HEAD_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
KEEPALIVE = 1
MAX_CONNECTIONS = 8
MAX_HEADER_BYTES = 16_384  # the defaults of the head limits
MAX_HEADERS = 100


@dataclass
class Gateway:
    """A gateway process of its own, with the limits above."""

    port: int
    ops_port: int
    pid: int

    def connect(self, port: int | None = None) -> socket.socket:
        """A raw connection to the public port (or `port`)."""
        sock = socket.create_connection(("127.0.0.1", port or self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def rss_mb(self) -> float:
        """Resident memory of the gateway process."""
        return psutil.Process(self.pid).memory_info().rss / 2**20


@pytest.fixture(scope="module")
def gateway(infra: object) -> Iterator[Gateway]:
    """One gateway process with short head, body and keep-alive timeouts and a small connection cap."""
    limits = {
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "HTTP_KEEPALIVE_SECONDS": str(KEEPALIVE),
        "HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with extra_instances(infra, "gateway", ["gateway-limits"], **limits) as (child,):
        assert child.process is not None
        yield Gateway(port=child.port, ops_port=child.ops_port, pid=child.process.pid)


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes (a reset ends it too); and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP/1.1 response."""
    return int(response.split(b" ", 2)[1])


def problem_of(response: bytes) -> dict:
    """The problem+json body of a raw response."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower()
    return json.loads(body)


def send_until_answered(socks: list[socket.socket], firsts: list[bytes], filler: bytes, total: int) -> list[int]:
    """Send each socket its `first`, then `filler` to each in turn up to `total` bytes, until each has an answer."""
    sent = [0] * len(socks)
    for i, (sock, first) in enumerate(zip(socks, firsts, strict=True)):
        sock.sendall(first)
        sent[i] = len(first)
    waiting = set(range(len(socks)))
    while waiting:
        for i in sorted(waiting):
            if select.select([socks[i]], [], [], 0)[0] or sent[i] >= total:
                waiting.discard(i)
                continue
            try:
                socks[i].sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                waiting.discard(i)
            sent[i] += len(filler)
    return sent


def test_an_oversized_head_gets_431_at_once_and_memory_stays_bounded(gateway: Gateway) -> None:
    before = gateway.rss_mb()
    filler = b"a" * 65536
    with gateway.connect() as sock:  # a 64 MB header, without a key
        sent = send_until_answered([sock], [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "], filler, 64 << 20)
        response, _ = read_response(sock)
    assert status_of(response) == 431, response[:200]
    assert problem_of(response)["status"] == 431
    # Four connections holding unfinished 16 MB headers at the same time.
    socks = [gateway.connect() for _ in range(4)]
    sent += send_until_answered(
        socks, [b"GET /api/v1/loan_applications HTTP/1.1\r\nHost: x\r\nX-Held: "] * 4, filler, 16 << 20
    )
    for sock in socks:
        response, _ = read_response(sock)
        assert status_of(response) == 431, response[:200]
        sock.close()
    assert max(sent) < 4 << 20, f"the server read {max(sent)} bytes of a head before refusing it"
    assert gateway.rss_mb() - before < 40, f"{before:.0f} MB -> {gateway.rss_mb():.0f} MB"


def test_a_head_just_over_the_size_limit_in_one_piece_gets_431(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        value = b"v" * MAX_HEADER_BYTES
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\nX-Large: " + value + b"\r\n\r\n")
        response, _ = read_response(sock)
    assert status_of(response) == 431
    with gateway.connect() as sock:  # a head within the limit passes
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Large: " + b"v" * 8000 + b"\r\n\r\n")
        assert status_of(read_response(sock)[0]) == 200


def test_too_many_header_fields_get_431(gateway: Gateway) -> None:
    def request(count: int) -> bytes:
        fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(count - 2))
        with gateway.connect() as sock:
            sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n")
            return read_response(sock)[0]

    assert status_of(request(MAX_HEADERS)) == 200
    refused = request(MAX_HEADERS + 1)
    assert status_of(refused) == 431 and "too many header fields" in problem_of(refused)["detail"]


def noop_requests(gateway: Gateway) -> float:
    """How many requests the gateway has counted on /noop (from its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.ops_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fastloans_http_requests_total{") and 'route="/noop"' in line
    )


def test_nothing_pipelined_behind_a_refused_head_is_served(gateway: Gateway) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    before = noop_requests(gateway)
    with gateway.connect() as sock:
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\nGET /noop HTTP/1.1\r\nHost: x\r\n\r\n")
        response, _ = read_response(sock)
    assert status_of(response) == 431 and response.count(b"HTTP/1.1 ") == 1, response
    with gateway.connect() as sock:  # a request after it, on a connection of its own, is counted
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(read_response(sock)[0]) == 200
    assert noop_requests(gateway) - before == 1


def test_a_slow_head_is_cut_off_after_the_head_timeout(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        while time.monotonic() - started < HEAD_TIMEOUT + 5:
            if select.select([sock], [], [], 0.2)[0]:
                answer, _ = read_response(sock)
                break
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # one header line every 0.2 s: the head never ends
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - started
    assert HEAD_TIMEOUT - 0.2 < elapsed < HEAD_TIMEOUT + 2, f"closed after {elapsed:.1f}s"
    assert not answer or status_of(answer) == 408


def test_idle_connections_are_closed(gateway: Gateway) -> None:
    with gateway.connect() as sock:  # connected, never sends a byte
        data, elapsed = read_response(sock)
    assert data == b"" and HEAD_TIMEOUT - 0.2 < elapsed < HEAD_TIMEOUT + 2, f"closed after {elapsed:.1f}s"
    with gateway.connect() as sock:  # one request, then idle on keep-alive
        sock.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\n\r\n")
        data, elapsed = read_response(sock)
    assert status_of(data) == 200 and elapsed < KEEPALIVE + 1.5, f"closed after {elapsed:.1f}s"


def test_a_slow_body_gets_408_after_the_body_timeout(gateway: Gateway, tenant_key: str) -> None:
    with gateway.connect() as sock:
        sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{".encode()
        )
        started = time.monotonic()
        while time.monotonic() - started < BODY_TIMEOUT + 5:
            if select.select([sock], [], [], 0.2)[0]:
                break
            sock.sendall(b" ")  # a byte every 0.2 s: the body would take minutes
        response, _ = read_response(sock)
        elapsed = time.monotonic() - started
    assert status_of(response) == 408, response[:200]
    assert problem_of(response)["status"] == 408
    assert elapsed < BODY_TIMEOUT + 2


def post_statuses(gateway: Gateway) -> dict[str, float]:
    """The gateway's request counts of the applications route's POSTs, by status, from its metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.ops_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("fastloans_http_requests_total{") and f'route="{URL}"' in line and 'method="POST"' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_a_client_that_leaves_mid_body_is_counted_as_499_not_500(gateway: Gateway, tenant_key: str) -> None:
    before = post_statuses(gateway)
    with gateway.connect() as sock:
        sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n{".encode()
        )
        time.sleep(0.3)  # the request is under way: the app is reading its body
    deadline = time.monotonic() + 10
    while (after := post_statuses(gateway)).get("499", 0) <= before.get("499", 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after.get("499", 0) == before.get("499", 0) + 1, after
    assert after.get("500", 0) == before.get("500", 0), after


def test_connections_over_the_cap_get_503_with_retry_after(gateway: Gateway) -> None:
    held = [gateway.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        with gateway.connect() as extra:
            extra.sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\n\r\n")
            refused, _ = read_response(extra)
        assert status_of(refused) == 503, refused[:200]
        assert b"\r\nretry-after: 1\r\n" in refused.lower() and problem_of(refused)["status"] == 503
        # The ops port is not capped: probes keep answering while the public port is full.
        with gateway.connect(gateway.ops_port) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert status_of(read_response(probe)[0]) == 200
        held[0].sendall(b"GET /noop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(read_response(held[0])[0]) == 200
    finally:
        for sock in held:
            sock.close()


def test_a_blocking_client_sending_5_mb_reads_the_413(gateway: Gateway, tenant_key: str) -> None:
    body = b'{"applicant_name": "' + b"x" * (5 << 20) + b'"}'
    headers = {"Authorization": f"Bearer {tenant_key}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}{URL}", data=body, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["status"] == 413
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request("POST", URL, body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["status"] == 413
    finally:
        connection.close()
    # A body within the limit still goes through on the same server.
    small = urllib.request.Request(
        f"http://127.0.0.1:{gateway.port}{URL}", data=json.dumps(APPROVED).encode(), headers=headers
    )
    with urllib.request.urlopen(small, timeout=30) as accepted:  # noqa: S310 - loopback
        assert accepted.status == 202


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/healthz"])
def test_ops_routes_answer_only_on_the_ops_port(gateway: Gateway, path: str) -> None:
    public = f"http://127.0.0.1:{gateway.port}"
    ops = f"http://127.0.0.1:{gateway.ops_port}"
    with pytest.raises(urllib.error.HTTPError) as hidden:
        urllib.request.urlopen(public + path, timeout=10)  # noqa: S310 - loopback
    assert hidden.value.code == 404
    with urllib.request.urlopen(ops + path, timeout=10) as response:  # noqa: S310 - loopback
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as no_api:
        urllib.request.urlopen(ops + URL, timeout=10)  # noqa: S310 - loopback
    assert no_api.value.code == 404


def test_several_worker_processes_keep_the_limits_and_the_ops_port(infra: object, tmp_path) -> None:
    """With WEB_CONCURRENCY=2 each worker listens on both ports and applies the limits."""
    workers = {"WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with extra_instances(infra, "gateway", ["gateway-limits-workers"], **workers) as (child,):
        gateway = Gateway(port=child.port, ops_port=child.ops_port, pid=child.process.pid)  # type: ignore[union-attr]
        assert len(psutil.Process(gateway.pid).children()) >= 2
        oversized = b"GET /noop HTTP/1.1\r\nHost: x\r\nX-Large: " + b"v" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n"
        for _ in range(20):  # separate connections, accepted by either worker
            with gateway.connect() as sock:
                sock.sendall(oversized)
                assert status_of(read_response(sock)[0]) == 431
            with gateway.connect(gateway.ops_port) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert status_of(read_response(sock)[0]) == 200
            with gateway.connect() as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert status_of(read_response(sock)[0]) == 404
