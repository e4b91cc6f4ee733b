"""Gateway settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from fastloans import services
from fastloans.settings import Settings


class GatewaySettings(Settings):
    """Settings of the HTTP API (name, ports and dependencies from the registry)."""

    service = services.GATEWAY
    web_concurrency: int = Field(1, ge=1, le=64, validation_alias="WEB_CONCURRENCY")
    max_body_bytes: int = Field(16_384, ge=1024, le=10_485_760, validation_alias="MAX_BODY_BYTES")
    # Comma-separated origins; empty keeps CORS closed. NoDecode: the raw string is split below, not parsed as JSON.
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="CORS_ALLOW_ORIGINS"
    )
    # Authentication and rate limits: a tenant's limit holds for all its keys, across every gateway process.
    auth_cache_seconds: float = Field(5.0, ge=0, le=300, validation_alias="AUTH_CACHE_SECONDS")
    auth_cache_size: int = Field(10_000, ge=1, le=10_000_000, validation_alias="AUTH_CACHE_SIZE")
    auth_failure_rate_per_second: float = Field(0.5, ge=0, validation_alias="AUTH_FAILURE_RATE_PER_SECOND")
    auth_failure_burst: int = Field(10, ge=1, validation_alias="AUTH_FAILURE_BURST")
    rate_limit_per_second: float = Field(200.0, ge=0, validation_alias="RATE_LIMIT_PER_SECOND")
    rate_limit_burst: int = Field(400, ge=1, validation_alias="RATE_LIMIT_BURST")
    rate_limit_sync_ms: int = Field(200, ge=10, le=5000, validation_alias="RATE_LIMIT_SYNC_MS")
    # How long the first of a batch of submissions waits for others to share its insert.
    submit_linger_ms: float = Field(0.0, ge=0, le=100, validation_alias="SUBMIT_LINGER_MS")

    # Submit and get-by-id dispatched without the router (fastloans_gateway.hotpath); false: through the router.
    hot_path: bool = Field(True, validation_alias="GATEWAY_HOT_PATH")

    # Admission control (fastloans_gateway.admission): past any bound a submission or revision is answered
    # 503 with Retry-After before anything is stored. Per process; 0 turns a bound off.
    admission_max_in_flight: int = Field(256, ge=0, le=1_000_000, validation_alias="ADMISSION_MAX_IN_FLIGHT")
    admission_max_outbox_backlog: int = Field(
        50_000, ge=0, le=1_000_000_000, validation_alias="ADMISSION_MAX_OUTBOX_BACKLOG"
    )
    admission_max_loop_lag_ms: float = Field(100.0, ge=0, le=60_000, validation_alias="ADMISSION_MAX_LOOP_LAG_MS")
    admission_retry_after_seconds: int = Field(1, ge=1, le=3600, validation_alias="ADMISSION_RETRY_AFTER_SECONDS")
    admission_sample_ms: int = Field(500, ge=50, le=60_000, validation_alias="ADMISSION_SAMPLE_MS")

    # How long a rotated webhook secret keeps signing beside the new one.
    webhook_rotation_overlap_hours: float = Field(
        24.0, ge=0, le=24 * 30, validation_alias="WEBHOOK_ROTATION_OVERLAP_HOURS"
    )

    # A reviewer's claim on a case lapses after this long without an action on it (claiming again renews it).
    review_claim_idle_minutes: float = Field(30.0, gt=0, le=24 * 60, validation_alias="REVIEW_CLAIM_IDLE_MINUTES")

    # The API docs page (/docs) and the OpenAPI document (/openapi.json). Unset: served in development and
    # test only, so a staging or production deployment shows neither unless it asks for them.
    api_docs_enabled: bool | None = Field(None, validation_alias="API_DOCS_ENABLED")

    @property
    def docs_enabled(self) -> bool:
        """Whether /docs and /openapi.json are served."""
        if self.api_docs_enabled is None:
            return self.environment in ("development", "test")
        return self.api_docs_enabled

    # HTTP server limits (enforced by fastloans_gateway.server) and the port of /healthz, /readyz and /metrics.
    ops_port: int = Field(
        services.GATEWAY.ops_port or services.GATEWAY.port, ge=1, le=65535, validation_alias="OPS_PORT"
    )
    http_max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576, validation_alias="HTTP_MAX_HEADER_BYTES")
    http_max_headers: int = Field(100, ge=8, le=1000, validation_alias="HTTP_MAX_HEADERS")
    http_header_timeout_seconds: float = Field(10.0, gt=0, le=300, validation_alias="HTTP_HEADER_TIMEOUT_SECONDS")
    http_body_timeout_seconds: float = Field(15.0, gt=0, le=300, validation_alias="HTTP_BODY_TIMEOUT_SECONDS")
    http_keepalive_seconds: int = Field(75, ge=1, le=3600, validation_alias="HTTP_KEEPALIVE_SECONDS")
    http_max_connections: int = Field(1024, ge=1, le=1_000_000, validation_alias="HTTP_MAX_CONNECTIONS")
    # A body answered before it was read (413) is still read and dropped up to this much, so the client sees the answer.
    http_discard_body_bytes: int = Field(8_388_608, ge=0, le=1_073_741_824, validation_alias="HTTP_DISCARD_BODY_BYTES")

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
