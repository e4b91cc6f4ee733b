"""Typed settings for every Fast Loans process (twelve-factor, pydantic-settings).

Settings come from environment variables and an optional `.env` file. The
original project's variable names (`DB_URL`, `KAFKA_BROKER_URL`, ...) are
accepted as aliases so an existing deployment's `.env` keeps working.
"""

from __future__ import annotations

import ssl
import sys
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fastloans.services import Service

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_PLACEHOLDERS = {"changeme", "change-me", "secret", "password"}


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Settings shared by every service; each service's subclass names its entry in the registry.

    A subclass sets `service` and declares no `service_name` or `http_port` of its own: their
    defaults come from the registry, and both keep the variables declared here (`PORT` too).
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # The registry entry of the process these settings are for (None: a tool such as the `fastloans` command).
    service: ClassVar[Service | None] = None

    service_name: str = Field("fastloans", validation_alias=_alias("SERVICE_NAME"))
    environment: Literal["development", "test", "staging", "production"] = Field(
        "development", validation_alias=_alias("ENVIRONMENT")
    )

    # PostgreSQL: the primary takes every write; the replica serves reads. Required unless the registry
    # says the service uses no database.
    database_url: str | None = Field(None, validation_alias=_alias("DATABASE_URL", "DB_URL"))
    database_read_url: str | None = Field(None, validation_alias=_alias("DATABASE_READ_URL"))
    database_password: SecretStr | None = Field(None, validation_alias=_alias("DATABASE_PASSWORD"))
    database_sslmode: SslMode = Field("prefer", validation_alias=_alias("DATABASE_SSLMODE"))
    database_sslrootcert: Path | None = Field(None, validation_alias=_alias("DATABASE_SSLROOTCERT"))
    database_pool_size: int = Field(10, ge=1, le=200, validation_alias=_alias("DATABASE_POOL_SIZE"))

    # Kafka: plaintext locally; SASL/SCRAM and TLS for managed clusters (MSK, Confluent Cloud).
    kafka_bootstrap_servers: str = Field(validation_alias=_alias("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKER_URL"))
    kafka_security_protocol: KafkaProtocol = Field(
        "PLAINTEXT", validation_alias=_alias("KAFKA_SECURITY_PROTOCOL", "KAFKA_SEC_PROTOCOL")
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, validation_alias=_alias("KAFKA_SASL_MECHANISM", "KAFKA_SASL_MECH")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_alias("KAFKA_SASL_USERNAME", "KAFKA_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_alias("KAFKA_SASL_PASSWORD", "KAFKA_PASSWORD")
    )
    kafka_ssl_cafile: Path | None = Field(None, validation_alias=_alias("KAFKA_SSL_CAFILE"))
    kafka_topic_prefix: str = Field("", validation_alias=_alias("KAFKA_TOPIC_PREFIX"))
    # The original project's single topic; here it names the submitted-applications topic.
    kafka_submitted_topic: str | None = Field(None, validation_alias=_alias("KAFKA_TOPIC"))
    kafka_consumer_group: str | None = Field(None, validation_alias=_alias("KAFKA_CONSUMER_GROUP"))
    # Static group membership (KIP-345): an instance restarted within the session timeout gets its
    # partitions back without a rebalance. Must be unique per consumer group and stable across restarts
    # (a StatefulSet pod name, or the local stack's instance name); empty turns it off.
    kafka_group_instance_id: str | None = Field(
        None, validation_alias=_alias("KAFKA_GROUP_INSTANCE_ID", "FASTLOANS_INSTANCE")
    )

    # Batching: how long a producer waits to fill a batch, how long a fetch waits for data, how long a
    # consumer pauses after a partial batch so the next one gathers more, and how often a consumer
    # commits its offsets (0: after every batch). Longer means fewer, larger Kafka requests
    # and more latency per hop; see docs/performance.md. Every stage hands its producer a whole
    # batch at once, which goes out in one request without a linger: a linger of 2 ms cost about 9 ms
    # of decision latency over the three producing hops and saved no CPU.
    kafka_linger_ms: int = Field(0, ge=0, le=1000, validation_alias=_alias("KAFKA_LINGER_MS"))
    kafka_fetch_max_wait_ms: int = Field(500, ge=0, le=10_000, validation_alias=_alias("KAFKA_FETCH_MAX_WAIT_MS"))
    kafka_fetch_min_bytes: int = Field(1, ge=1, le=10 * 1024 * 1024, validation_alias=_alias("KAFKA_FETCH_MIN_BYTES"))
    kafka_consumer_linger_ms: int = Field(0, ge=0, le=1000, validation_alias=_alias("KAFKA_CONSUMER_LINGER_MS"))
    kafka_commit_interval_ms: int = Field(100, ge=0, le=60_000, validation_alias=_alias("KAFKA_COMMIT_INTERVAL_MS"))
    # The largest message a producer sends (its max_request_size). The default is aiokafka's, just under
    # the broker's default message.max.bytes; a larger message is refused before it is sent (dead-lettered).
    kafka_max_message_bytes: int = Field(
        1_048_576, ge=64 * 1024, le=64 * 1024 * 1024, validation_alias=_alias("KAFKA_MAX_MESSAGE_BYTES")
    )

    # The outbox relay waits this long after a partial batch before taking the next, so rows arriving
    # meanwhile share one transaction and one produce request; the gateway wakes it at most this often.
    outbox_linger_ms: int = Field(5, ge=0, le=1000, validation_alias=_alias("OUTBOX_LINGER_MS"))

    # This process's HTTP port (the API for the gateway; health and metrics for the others).
    http_host: str = Field("127.0.0.1", validation_alias=_alias("HTTP_HOST"))
    http_port: int = Field(8000, ge=1, le=65535, validation_alias=_alias("HTTP_PORT", "PORT"))

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", validation_alias=_alias("LOG_LEVEL"))
    log_file: Path | None = Field(None, validation_alias=_alias("LOG_FILE"))

    policy_file: Path | None = Field(None, validation_alias=_alias("POLICY_FILE"))
    challenger_policy_file: Path | None = Field(None, validation_alias=_alias("CHALLENGER_POLICY_FILE"))

    # The key that seals webhook signing secrets at rest (base64 of 32 bytes). Required in production by the
    # webhooks dispatcher; elsewhere, when unset, a key derived from a fixed seed is used.
    webhook_secret_key: SecretStr | None = Field(None, validation_alias=_alias("WEBHOOK_SECRET_KEY"))

    sentry_dsn: SecretStr | None = Field(None, validation_alias=_alias("SENTRY_DSN"))
    sentry_environment: str | None = Field(None, validation_alias=_alias("SENTRY_ENVIRONMENT"))
    sentry_release: str | None = Field(None, validation_alias=_alias("SENTRY_RELEASE"))
    sentry_sample_rate: float = Field(1.0, ge=0.0, le=1.0, validation_alias=_alias("SENTRY_SAMPLE_RATE"))
    sentry_traces_sample_rate: float = Field(0.0, ge=0.0, le=1.0, validation_alias=_alias("SENTRY_TRACES_SAMPLE_RATE"))
    elastic_apm_server_url: str | None = Field(None, validation_alias=_alias("ELASTIC_APM_SERVER_URL"))

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.replace("kafka://", "").split(",") if s.strip()]
        if not servers or any(":" not in s for s in servers):
            raise ValueError("must be a comma-separated list of host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _service_defaults(self) -> Settings:
        spec = self.service
        if spec is not None:
            if "service_name" not in self.model_fields_set:
                self.service_name = spec.name
            if "http_port" not in self.model_fields_set:
                self.http_port = spec.port
        if self.database_url is None and spec is not None and spec.database:
            raise ValueError("DATABASE_URL is required but not set")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required "
                f"when KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        if self.environment == "production":
            for name, secret in (
                ("DATABASE_PASSWORD", self.database_password),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            ):
                if secret is not None and secret.get_secret_value().lower() in _PLACEHOLDERS:
                    raise ValueError(f"{name} is a placeholder; set a real secret in production")
        return self

    # -- derived values -------------------------------------------------

    @property
    def uses_database(self) -> bool:
        """Whether this process opens the database (a service if the registry says so; a tool when it needs it)."""
        return self.service is None or self.service.database

    def _database_url(self) -> str:
        if self.database_url is None:
            raise RuntimeError(f"{self.service_name} has no DATABASE_URL: set it to the primary's address")
        return self.database_url

    def primary_dsn(self) -> str:
        """The primary's URL in plain `postgresql://` form, password injected."""
        return _plain_dsn(self._database_url(), self.database_password)

    def replica_dsn(self) -> str:
        """The replica's URL (the primary's when no replica is configured)."""
        return _plain_dsn(self.database_read_url or self._database_url(), self.database_password)

    def database_ssl(self) -> ssl.SSLContext | str | bool:
        """The `ssl` argument asyncpg takes for the configured `sslmode`."""
        mode = self.database_sslmode
        if mode in {"verify-ca", "verify-full"}:
            context = ssl.create_default_context(
                cafile=str(self.database_sslrootcert) if self.database_sslrootcert else None
            )
            context.check_hostname = mode == "verify-full"
            return context
        return {"disable": False}.get(mode, mode)

    def topic(self, name: str) -> str:
        """The full name of one of the pipeline's topics (see `fastloans.events.Topic`)."""
        if name == "loan-applications.submitted" and self.kafka_submitted_topic:
            return self.kafka_submitted_topic
        return f"{self.kafka_topic_prefix}{name}"


def _plain_dsn(url: str, password: SecretStr | None) -> str:
    parts = urlsplit(url)
    scheme = "postgresql"
    netloc = parts.netloc
    if password is not None and "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{quote(password.get_secret_value(), safe='')}@{host}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


S = TypeVar("S", bound=Settings)


class ConfigurationError(SystemExit):
    """Raised with one readable line when a setting is missing or invalid."""


def describe_error(error: ValidationError) -> str:
    """Turn a pydantic validation error into one line naming the variables."""
    problems = []
    for item in error.errors():
        loc = item.get("loc") or ()
        name = str(loc[0]).upper() if loc else "settings"
        message = item.get("msg", "invalid").removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required but not set"
        problems.append(f"{name} {message}" if loc else message)
    return "configuration error: " + "; ".join(problems)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build settings of `cls`, exiting with one clear line if they are invalid."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
        raise ConfigurationError(2) from None


@lru_cache
def get_settings() -> Settings:
    """The process-wide base settings, read once on first use."""
    return load_settings(Settings)
