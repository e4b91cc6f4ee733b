"""The image tests: podman with the configuration and storage that scripts/images.sh writes.

Tests marked `images` run only when selected (`make test-images`: pytest -m images tests/images);
the normal suite deselects them, because they need the built images, podman and minutes.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FASTLOANS_CACHE", Path.home() / ".cache" / "fastloans"))
IMAGES_DIR = CACHE / "images"
PODMAN_CONF = IMAGES_DIR / "podman"


def pytest_configure(config: pytest.Config) -> None:
    """Register the images marker."""
    config.addinivalue_line("markers", "images: runs the built images with podman (make test-images)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the images tests unless the marker expression names them."""
    if "images" in (config.option.markexpr or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("images")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("images")]


def images_env() -> dict[str, str]:
    """docker/images.env's assignments."""
    pairs = {}
    for line in (ROOT / "docker" / "images.env").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pairs[key] = value
    return pairs


def kafka_version() -> str:
    """The Kafka version the local stack's pom pins."""
    text = (ROOT / "devtools" / "fastloans_dev" / "devstack" / "kafka-pom.xml").read_text()
    return text.split("<kafka.version>", 1)[1].split("<", 1)[0]


def image_refs() -> dict[str, str]:
    """Each built image's name (its archive's stem) and reference."""
    from fastloans import services

    env = images_env()
    refs = {name: f"docker.io/fastloans/{name}:{env['SERVICE_TAG']}" for name in services.images()}
    refs["postgresql"] = env["POSTGRES_IMAGE"]
    refs["kafka"] = f"{env['KAFKA_IMAGE_REPOSITORY']}:{kafka_version()}{env['KAFKA_IMAGE_SUFFIX']}"
    return refs


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run podman with the images' own configuration and storage."""
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(PODMAN_CONF / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(PODMAN_CONF / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(PODMAN_CONF / "registries.conf"),
    }
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"podman {shlex.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def wait_until(what: str, probe: Callable[[], bool], timeout: float, on_timeout: Callable[[], str]) -> None:
    """Poll probe until it is true; fail with on_timeout()'s text after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} not reached in {timeout:.0f}s:\n{on_timeout()}")


@dataclass
class Containers:
    """Containers started by one test, on no network but their own loopback, removed afterwards."""

    scratch: Path
    names: list[str] = field(default_factory=list)

    def volume(self, name: str, owner: int | None = None) -> Path:
        """A host directory for a mount: world-writable like an emptyDir, or owned by a uid."""
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        if owner is None:
            path.chmod(0o777)
        else:
            os.chown(path, owner, owner)
        return path

    def run(self, ref: str, *args: str, options: tuple[str, ...] = (), network: str = "none") -> str:
        """Start a detached container with a read-only root; returns its name."""
        name = f"fastloans-image-test-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        podman("run", "-d", "--name", name, f"--network={network}", "--read-only", "--pull=never", *options, ref, *args)
        return name

    def exec(self, name: str, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (its loopback is the only network)."""
        flags = [item for key, value in (env or {}).items() for item in ("-e", f"{key}={value}")]
        return podman("exec", *flags, name, *command, check=False)

    def logs(self, name: str) -> str:
        """The container's output."""
        result = podman("logs", name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def state(self, name: str) -> dict:
        """podman inspect's State."""
        return json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)

    def netns(self, name: str) -> str:
        """The path of the container's network namespace (for a client run with nsenter)."""
        return f"/proc/{self.state(name)['Pid']}/ns/net"


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Containers]:
    """Start containers; remove them (and their logs) at the end of the test."""
    if subprocess.run(["which", "podman"], capture_output=True, check=False).returncode != 0:
        pytest.fail("podman is missing: run make images (scripts/images.sh installs it)")
    started = Containers(tmp_path)
    yield started
    # Newest first: a container that joined another's network namespace goes before it.
    left = [name for name in reversed(started.names) if podman("rm", "-f", "-t", "5", name, check=False).returncode]
    if left:
        pytest.fail(f"containers not removed: {left}")


class Built(dict[str, str]):
    """Image name -> reference; looking one up fails the test unless it is built and saved."""

    def __getitem__(self, name: str) -> str:
        ref = super().__getitem__(name)
        if not (IMAGES_DIR / f"{name}.tar").is_file() or podman("image", "exists", ref, check=False).returncode:
            pytest.fail(f"{ref} is not built: run make images")
        return ref

    def all(self) -> list[str]:
        """Every reference (each checked)."""
        return [self[name] for name in self]


@pytest.fixture(scope="session")
def built() -> Built:
    """The images' references, from the registry and docker/images.env."""
    return Built(image_refs())
