"""Gateway settings from the environment."""

from __future__ import annotations

import pytest

from fastloans_gateway.settings import GatewaySettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", []),
        ("https://a.example", ["https://a.example"]),
        (" https://a.example , https://b.example ", ["https://a.example", "https://b.example"]),
    ],
)
def test_cors_origins_are_comma_separated(
    raw: str, expected: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/loans")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", raw)
    settings = GatewaySettings()  # type: ignore[call-arg]
    assert settings.cors_allow_origins == expected
    assert settings.http_port == 8000 and settings.max_body_bytes == 16_384


@pytest.mark.parametrize(
    ("environment", "flag", "served"),
    [
        ("development", None, True),
        ("test", None, True),
        ("staging", None, False),
        ("production", None, False),
        ("production", "true", True),
        ("development", "false", False),
    ],
)
def test_api_docs_are_off_by_default_outside_development_and_test(
    environment: str, flag: str | None, served: bool, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/loans")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.setenv("ENVIRONMENT", environment)
    if flag is None:
        monkeypatch.delenv("API_DOCS_ENABLED", raising=False)
    else:
        monkeypatch.setenv("API_DOCS_ENABLED", flag)
    assert GatewaySettings().docs_enabled is served  # type: ignore[call-arg]
