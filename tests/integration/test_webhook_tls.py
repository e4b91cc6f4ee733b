"""The dispatcher's HTTPS: it connects to the address it checked, yet verifies the certificate against the URL's
host name, so pinning the address never weakens TLS. A real TLS server on loopback, certificates made here."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from fastloans import webhooks
from fastloans_webhooks.sender import Dispatcher
from fastloans_webhooks.settings import WebhooksSettings
from tests.integration.test_tls_postgres import make_pki

SECRET = webhooks.new_secret()


class Pinned(Dispatcher):
    """`localhost` is 127.0.0.1 here whatever the resolver says (the TLS server listens only there)."""

    async def resolve(self, host: str, port: int) -> str:
        assert host == "localhost"
        return "127.0.0.1"


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[int, list[dict[str, str]], Path]]:
    """An HTTPS server for `localhost`, signed by a CA of its own; answers 204 to what verifies, 400 otherwise."""
    pki = make_pki(tmp_path / "pki", ["localhost"])
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append(headers)
            try:
                Webhook(SECRET).verify(body, headers)
                status = 204
            except Exception:
                status = 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen, pki.ca
    finally:
        server.shutdown()
        server.server_close()


def _dispatcher(ca_file: Path | None) -> Dispatcher:
    settings = WebhooksSettings(
        _env_file=None,  # type: ignore[call-arg]
        ENVIRONMENT="test",
        DATABASE_URL="postgresql://fastloans@127.0.0.1:9/fastloans",
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        WEBHOOK_TIMEOUT_SECONDS="5",
        WEBHOOK_CA_FILE=str(ca_file) if ca_file else None,
    )
    return Pinned(None, settings)  # type: ignore[arg-type]  # send() needs no database


async def _ping(dispatcher: Dispatcher, url: str) -> tuple[int | None, str | None]:
    body = webhooks.body(webhooks.PING, datetime.now(UTC), {"ping": True})
    try:
        outcome = await dispatcher.send(url, webhooks.message_id("tls-test"), body, [SECRET])
    finally:
        await dispatcher.stop()
    return outcome.status, outcome.error


async def test_https_to_the_checked_address_verifies_the_host_name(https_receiver) -> None:  # type: ignore[no-untyped-def]
    port, seen, ca = https_receiver
    assert await _ping(_dispatcher(ca), f"https://localhost:{port}/hooks") == (204, None)
    assert seen[-1]["host"] == f"localhost:{port}"


async def test_a_certificate_for_another_name_is_refused(https_receiver) -> None:  # type: ignore[no-untyped-def]
    port, seen, ca = https_receiver

    class Elsewhere(Pinned):
        async def resolve(self, host: str, port: int) -> str:
            return "127.0.0.1"

    dispatcher = Elsewhere(None, _dispatcher(ca).settings)  # type: ignore[arg-type]
    status, error = await _ping(dispatcher, f"https://hooks.example.com:{port}/hooks")
    assert status is None and error is not None and "certificate" in error.lower(), error
    assert not seen


async def test_a_certificate_from_an_unknown_ca_is_refused(https_receiver) -> None:  # type: ignore[no-untyped-def]
    port, seen, _ = https_receiver
    status, error = await _ping(_dispatcher(None), f"https://localhost:{port}/hooks")
    assert status is None and error is not None and "certificate" in error.lower(), error
    assert not seen
