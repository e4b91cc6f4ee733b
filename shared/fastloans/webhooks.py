"""Webhooks as the Standard Webhooks specification defines them: secrets, signatures, payloads, address checks.

The gateway (the endpoints API) and the dispatcher (`fastloans-webhooks`) both use this module: secrets are
made and encrypted here, signed here, and a delivery's body is built here once, when it is queued, so every
retry sends the same bytes under the same `webhook-id`. Only those two import it, so `cryptography` is a
dependency of their packages, not of the shared library (tests/integration/test_runtime_imports.py checks it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fastloans.events import ApplicationDecided

SECRET_PREFIX = "whsec_"  # noqa: S105  (the prefix the specification gives secrets)
SECRET_BYTES = 24
SIGNATURE_VERSION = "v1"
# The event types a tenant may subscribe to; `ping` is sent only by the test and verify calls.
EVENT_TYPES = ("application.decided", "application.withdrawn")
PING = "ping"
# Delivery ids are derived from what the event is about, so a redelivered decision keeps its id.
MESSAGE_NAMESPACE = uuid.UUID("6f1c2b0e-7d0a-4a7e-9a55-3c1f0d6b8e21")
# Used only outside production when WEBHOOK_SECRET_KEY is unset: secrets are then encrypted, but with a key
# anyone reading this file knows. Production refuses to start the dispatcher without a key of its own.
DEVELOPMENT_KEY_SEED = b"fastloans development webhook secret key"

# Addresses never called in production, whatever a name resolves to: the cloud metadata services are
# link-local (169.254.169.254) or unique-local (fd00:ec2::254) and covered by the checks below.
BLOCKED_NETWORKS = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("198.18.0.0/15"))


class WebhookKeyMissing(RuntimeError):
    """WEBHOOK_SECRET_KEY is required (production) but not set."""


def new_secret() -> str:
    """A new signing secret: `whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` signature over `id.timestamp.body`."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per secret in use, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


class SecretBox:
    """Encrypts signing secrets for storage (AES-256-GCM, a random nonce per secret)."""

    NONCE = 12

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str | None, *, environment: str) -> SecretBox:
        """The box for WEBHOOK_SECRET_KEY (base64 of 32 bytes); outside production a derived key when unset."""
        if value:
            key = base64.b64decode(value)
            if len(key) != 32:
                raise ValueError("WEBHOOK_SECRET_KEY must be the base64 of 32 bytes")
            return cls(key)
        if environment == "production":
            raise WebhookKeyMissing("WEBHOOK_SECRET_KEY is required in production")
        return cls(hashlib.sha256(DEVELOPMENT_KEY_SEED).digest())

    def seal(self, secret: str) -> bytes:
        """The stored form of a secret."""
        nonce = os.urandom(self.NONCE)
        return nonce + self._aead.encrypt(nonce, secret.encode(), b"whsec")

    def open(self, sealed: bytes) -> str:
        """The secret a stored form holds."""
        return self._aead.decrypt(sealed[: self.NONCE], sealed[self.NONCE :], b"whsec").decode()


def message_id(key: str) -> str:
    """The `webhook-id` of the event a delivery key names (the same for every retry and redelivery)."""
    return "msg_" + uuid.uuid5(MESSAGE_NAMESPACE, key).hex


def body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON body `{type, timestamp, data}`."""
    return orjson.dumps({"type": event_type, "timestamp": occurred_at, "data": data}, option=orjson.OPT_UTC_Z)


def decided_key(event: ApplicationDecided) -> str:
    """The delivery key of a decision: one per application revision, and one more for a reviewer's decision."""
    key = f"application.decided:{event.application_id}:{event.revision}"
    return key if event.decided_by == "policy" else f"{key}:{event.decided_by}"


def decided_data(event: ApplicationDecided) -> dict[str, Any]:
    """The `data` of `application.decided`: ids and decision facts, never the applicant's name or income."""
    return {
        "application_id": str(event.application_id),
        "revision": event.revision,
        "outcome": event.outcome,
        "score": event.risk_score,
        "reason_codes": [str(r.get("reason_code")) for r in event.principal_reasons if r.get("reason_code")],
        "policy_version": event.policy.version,
        "decided_by": event.decided_by,
        "occurred_at": event.decided_at.isoformat().replace("+00:00", "Z"),
    }


def withdrawn_event(application_id: uuid.UUID, revision: int, withdrawn_at: datetime) -> dict[str, Any]:
    """What `application.withdrawn` is queued with: its type, key, body, application and revision."""
    key = f"application.withdrawn:{application_id}:{revision}"
    occurred = withdrawn_at.isoformat().replace("+00:00", "Z")
    data = {"application_id": str(application_id), "revision": revision, "occurred_at": occurred}
    return {
        "event_type": "application.withdrawn",
        "key": key,
        "body": body("application.withdrawn", withdrawn_at, data),
        "application_id": application_id,
        "revision": revision,
    }


def address_allowed(address: str, *, environment: str) -> bool:
    """Whether a resolved address may be called: public ones always, loopback only in development and test."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return environment in ("development", "test")
    if any(ip in network for network in BLOCKED_NETWORKS):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_private)


def url_problem(url: str, *, environment: str) -> str | None:
    """Why an endpoint URL is refused (None when it is acceptable before resolution)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        return "must be an absolute http(s) URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http(s) URL"
    if parts.username or parts.password:
        return "must not carry credentials"
    if environment == "production" and parts.scheme != "https":
        return "must be https"
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None
    if not address_allowed(str(literal), environment=environment):
        return "must not be a loopback, private, link-local or metadata address"
    return None


def secret_box(key: str | None, environment: str) -> SecretBox:
    """The box of a process's settings (WEBHOOK_SECRET_KEY's value and ENVIRONMENT)."""
    return SecretBox.from_setting(key, environment=environment)
