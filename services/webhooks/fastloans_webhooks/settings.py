"""Settings of the webhooks dispatcher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from fastloans import services
from fastloans.settings import Settings

# Seconds before each attempt: immediately, then backing off over about three and a half days.
DEFAULT_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000, 50400, 72000, 86400)


class WebhooksSettings(Settings):
    """Dispatcher settings (name, port and dependencies from the registry)."""

    service = services.WEBHOOKS
    # Comma-separated seconds before each attempt; after the last one fails, the delivery is given up.
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_SCHEDULE, validation_alias="WEBHOOK_RETRY_SCHEDULE"
    )
    # Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    webhook_retry_jitter: float = Field(0.2, ge=0, le=0.9, validation_alias="WEBHOOK_RETRY_JITTER")
    # A Retry-After longer than this is cut to it.
    webhook_max_retry_after_seconds: float = Field(
        86_400.0, ge=0, le=7 * 86_400, validation_alias="WEBHOOK_MAX_RETRY_AFTER_SECONDS"
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, validation_alias="WEBHOOK_TIMEOUT_SECONDS")
    # Deliveries in flight in this process, and per endpoint across every dispatcher process.
    webhook_concurrency: int = Field(64, ge=1, le=1000, validation_alias="WEBHOOK_CONCURRENCY")
    webhook_endpoint_concurrency: int = Field(16, ge=1, le=100, validation_alias="WEBHOOK_ENDPOINT_CONCURRENCY")
    # Certificates (PEM) that endpoints' TLS certificates are verified against instead of the system's; for
    # receivers behind a private CA (staging, an internal gateway). Host names are checked either way.
    webhook_ca_file: Path | None = Field(None, validation_alias="WEBHOOK_CA_FILE")
    # How often the queue is polled for due deliveries.
    webhook_poll_ms: int = Field(200, ge=10, le=60_000, validation_alias="WEBHOOK_POLL_MS")
    # An endpoint that has failed without a success for this long is disabled.
    webhook_disable_after_hours: float = Field(120.0, gt=0, validation_alias="WEBHOOK_DISABLE_AFTER_HOURS")
    # Delivered and given-up deliveries are deleted after this many days (pending ones never are).
    webhook_retention_days: float = Field(30.0, gt=0, validation_alias="WEBHOOK_RETENTION_DAYS")

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("must be one or more non-negative numbers of seconds, comma-separated")
        return value

    @model_validator(mode="after")
    def _key_in_production(self) -> WebhooksSettings:
        if self.environment == "production" and self.webhook_secret_key is None:
            raise ValueError("WEBHOOK_SECRET_KEY is required in production")
        return self

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery is held before another process may take it (an attempt and a margin)."""
        return self.webhook_timeout_seconds + 10.0
