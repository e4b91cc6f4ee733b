"""Settings: aliases of the original project, derived values, and one clear line per bad setting."""

from __future__ import annotations

import importlib
import ssl

import pytest
from pydantic import SecretStr

from fastloans import services
from fastloans.settings import ConfigurationError, Settings, load_settings

BASE = {"DATABASE_URL": "postgresql://app@db:5432/loans", "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No ambient settings or .env file leak into these tests."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "DATABASE_URL",
        "DB_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_BROKER_URL",
        "DATABASE_READ_URL",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SEC_PROTOCOL",
        "KAFKA_TOPIC",
        "ENVIRONMENT",
        "HTTP_PORT",
        "PORT",
        "SERVICE_NAME",
        "OPS_PORT",
    ):
        monkeypatch.delenv(name, raising=False)


def make(**env: str) -> Settings:
    return Settings(_env_file=None, **{k: v for k, v in env.items()})  # type: ignore[call-arg]


def test_original_project_names_are_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DB_URL": "postgres://old@db/loans",
        "KAFKA_BROKER_URL": "broker:9092",
        "KAFKA_TOPIC": "loan_applications",
        "KAFKA_SEC_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECH": "SCRAM-SHA-512",
        "KAFKA_USERNAME": "svc",
        "KAFKA_PASSWORD": "s3cr3t-value",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.primary_dsn() == "postgresql://old@db/loans"
    assert settings.kafka_bootstrap_servers == "broker:9092"
    assert settings.topic("loan-applications.submitted") == "loan_applications"
    assert settings.topic("loan-applications.decided") == "loan-applications.decided"
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password == SecretStr("s3cr3t-value")


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DB_URL=postgresql://x@h/db\nKAFKA_BROKER_URL=h:9092\nLOG_LEVEL=DEBUG\n")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.log_level == "DEBUG"
    assert settings.kafka_bootstrap_servers == "h:9092"


def test_replica_url_defaults_to_primary_and_password_is_injected() -> None:
    settings = make(**BASE, DATABASE_PASSWORD="p@ss/word")  # noqa: S106 - a test value
    assert settings.replica_dsn() == settings.primary_dsn() == "postgresql://app:p%40ss%2Fword@db:5432/loans"
    replica = make(**BASE, DATABASE_READ_URL="postgresql+asyncpg://app@replica:5432/loans")
    assert replica.replica_dsn() == "postgresql://app@replica:5432/loans"


def test_database_tls_modes(tmp_path) -> None:
    assert make(**BASE, DATABASE_SSLMODE="disable").database_ssl() is False
    assert make(**BASE, DATABASE_SSLMODE="require").database_ssl() == "require"
    context = make(**BASE, DATABASE_SSLMODE="verify-full").database_ssl()
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "postgresql://a@b/c"}, "KAFKA_BOOTSTRAP_SERVERS is required but not set"),
        ({**BASE, "DATABASE_URL": "mysql://a@b/c"}, "DATABASE_URL must be a postgresql:// URL"),
        ({**BASE, "KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS must be a comma-separated"),
        ({**BASE, "HTTP_PORT": "99999"}, "HTTP_PORT"),
        ({**BASE, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME"),
        ({**BASE, "ENVIRONMENT": "production", "DATABASE_PASSWORD": "changeme"}, "DATABASE_PASSWORD is a placeholder"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(Settings, _env_file=None)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("configuration error: ")
    assert expected in err
    assert "changeme" not in err  # a rejected secret is never echoed


def settings_class(service: services.Service) -> type[Settings]:
    """The settings class the registry names for a service."""
    module, name = service.settings.split(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Settings) and cls.service is service
    return cls


EVERY_SERVICE = pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)


@EVERY_SERVICE
@pytest.mark.parametrize(
    ("env", "port"),
    [
        ({}, None),
        ({"PORT": "9123"}, 9123),
        ({"HTTP_PORT": "9124"}, 9124),
        ({"PORT": "9123", "HTTP_PORT": "9124"}, 9124),
    ],
    ids=["default", "PORT", "HTTP_PORT", "both"],
)
def test_every_service_takes_its_port_from_port_or_http_port(
    service: services.Service, env: dict[str, str], port: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PORT (Heroku-style platforms) and HTTP_PORT both set the port; HTTP_PORT wins; unset, the registry's."""
    for name, value in {**BASE, **env}.items():
        monkeypatch.setenv(name, value)
    settings = settings_class(service)(_env_file=None)  # type: ignore[call-arg]
    assert settings.http_port == (port or service.port)
    assert settings.service_name == service.name


@EVERY_SERVICE
def test_an_explicit_port_or_name_beats_the_registry(service: services.Service) -> None:
    """Values given to the class (or SERVICE_NAME) override the registry's defaults."""
    settings = settings_class(service)(_env_file=None, http_port=1234, service_name="other", **BASE)  # type: ignore[call-arg]
    assert (settings.http_port, settings.service_name) == (1234, "other")


@EVERY_SERVICE
def test_database_url_is_required_only_where_the_registry_says_so(
    service: services.Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service declared without a database starts without DATABASE_URL; the others stop with one clear line."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    cls = settings_class(service)
    if service.database:
        with pytest.raises(ConfigurationError):
            load_settings(cls, _env_file=None)
        assert "DATABASE_URL is required but not set" in capsys.readouterr().err
    else:
        settings = load_settings(cls, _env_file=None)
        assert settings.database_url is None and not settings.uses_database
        with pytest.raises(RuntimeError, match="no DATABASE_URL"):
            settings.primary_dsn()


def test_the_gateway_ops_port_comes_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPS_PORT defaults to the registry's ops port."""
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    assert settings_class(services.GATEWAY)(_env_file=None).ops_port == services.GATEWAY.ops_port  # type: ignore[attr-defined,call-arg]
