"""Each built image run with podman, without a cluster: the contract the chart relies on.

Every container has a read-only root and no network but its own loopback; a client from the
project's virtualenv reaches it inside that network namespace (nsenter). Run with
`make test-images` (pytest -m images tests/images): the normal suite deselects these tests.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastloans import services

from ..charts.conftest import CHART, Renderer, require_tool
from .conftest import Built, Containers, podman, wait_until

pytestmark = pytest.mark.images

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PASSWORD = "image-test-password"  # noqa: S105 (a throwaway container's)
REPLICATION_PASSWORD = "image-test-replication"  # noqa: S105
VALUES = (CHART / "ci" / "dev-values.yaml", CHART / "ci" / "local-images-values.yaml")


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    """The chart rendered with the dev and local-images values."""
    return Renderer(require_tool("helm"))(values=VALUES)


def _workload(objects: list[dict], component: str) -> dict:
    matches = [
        obj
        for obj in objects
        if obj["kind"] == "StatefulSet" and obj["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(matches) == 1, component
    return matches[0]


def _config_file(objects: list[dict], key: str) -> str:
    return next(obj["data"][key] for obj in objects if obj["kind"] == "ConfigMap" and key in obj.get("data", {}))


def _in_netns(containers: Containers, name: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code of the project's virtualenv inside the container's network namespace."""
    return subprocess.run(
        ["nsenter", f"--net={containers.netns(name)}", sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _http_status(containers: Containers, name: str, port: int, path: str) -> int | None:
    result = containers.exec(
        name,
        "python",
        "-c",
        "import sys, urllib.error, urllib.request as u\n"
        f"try: print(u.urlopen('http://127.0.0.1:{port}{path}', timeout=2).status)\n"
        "except urllib.error.HTTPError as e: print(e.code)\n"
        "except OSError: print('down')",
    )
    text = result.stdout.strip()
    return int(text) if text.isdigit() else None


@pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)
def test_service_image_runs_as_10001_on_a_read_only_root(
    service: services.Service, built: Built, containers: Containers
) -> None:
    """The console script starts as uid 10001 with a read-only root; /healthz answers with no dependency up."""
    tmp = containers.volume("tmp")
    name = containers.run(
        built[service.image_name],
        service.command,
        options=(
            "-v",
            f"{tmp}:/tmp",
            "-e",
            "DATABASE_URL=postgresql+asyncpg://fastloans:x@127.0.0.1:5432/fastloans",
            "-e",
            "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092",
        ),
    )
    health_port = service.ops_port or service.port
    wait_until(
        f"{service.name} /healthz on {health_port}",
        lambda: _http_status(containers, name, health_port, "/healthz") == 200,
        60,
        lambda: containers.logs(name),
    )
    # Ready needs the database or Kafka, which are not there.
    assert _http_status(containers, name, health_port, "/readyz") == 503
    assert containers.exec(name, "id", "-u").stdout.strip() == "10001"
    assert containers.exec(name, "touch", "/opt/venv/written").returncode != 0, "the root filesystem is writable"
    assert containers.exec(name, "python", "-c", "import sys; print(sys.prefix)").stdout.strip() == "/opt/venv"


def _foreign_certificates() -> list[bytes]:
    """DER of each certificate the host trusts beyond Debian's bundle (a re-signing CA)."""
    debian = Path("/usr/share/ca-certificates")
    known = {
        base64.b64decode("".join(pem.split("-----")[2].split()))
        for path in debian.rglob("*.crt")
        for pem in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", path.read_text(), re.S)
    }
    host = re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", HOST_CA.read_text(), re.S)
    return [der for der in (base64.b64decode("".join(body.split())) for body in host) if der not in known]


def _needles(der: bytes) -> list[bytes]:
    """Byte strings that appear in any copy of the certificate: its DER and a line of its PEM."""
    pem = base64.encodebytes(der).replace(b"\n", b"")
    return [der, pem[64:128]]


def test_the_hosts_ca_is_in_no_image(built: Built) -> None:
    """No file of any image holds a certificate the host trusts beyond Debian's (the build's mounted CA)."""
    foreign = _foreign_certificates()
    if not foreign:
        pytest.skip("the host trusts no certificate beyond Debian's bundle: nothing could leak")
    needles = [needle for der in foreign for needle in _needles(der)]
    for ref in built.all():
        root = Path(podman("image", "mount", ref).stdout.strip())
        try:
            found = []
            for directory, _, files in os.walk(root):
                for file in files:
                    path = Path(directory, file)
                    if path.is_symlink() or not path.is_file() or path.stat().st_size > 256 * 1024 * 1024:
                        continue
                    data = path.read_bytes()
                    if any(needle in data for needle in needles):
                        found.append(str(path.relative_to(root)))
            assert not found, f"{ref} holds the host's CA in {found}"
        finally:
            podman("image", "unmount", ref, check=False)


def _pg_options(containers: Containers, role: str) -> list[str]:
    data = containers.volume(f"{role}-data", owner=10001)
    options = ["-v", f"{data}:/var/lib/postgresql/data"]
    # The chart's emptyDirs, mounted where the image expects them.
    for mount in ("/var/run/postgresql", "/tmp", "/dev/shm"):  # noqa: S108
        options += ["-v", f"{containers.volume(role + mount.replace('/', '-'))}:{mount}"]
    return options


def _pg_ready(containers: Containers, name: str) -> bool:
    return containers.exec(name, "pg_isready", "--host", "127.0.0.1", "--port", "5432").returncode == 0


def test_postgresql_primary_and_streaming_replica(built: Built, containers: Containers, rendered: list[dict]) -> None:
    """The chart's primary (env, args, init script) initialises and takes password logins; its replica clones it."""
    primary_spec = _workload(rendered, "postgresql-primary")["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in primary_spec["env"]}
    env |= {"POSTGRES_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": REPLICATION_PASSWORD}
    scripts = containers.volume("scripts")
    for key in ("10-replication.sh", "bootstrap-replica.sh"):
        (scripts / key).write_text(_config_file(rendered, key))
        (scripts / key).chmod(0o555)
    options = _pg_options(containers, "primary")
    options += ["-v", f"{scripts / '10-replication.sh'}:/docker-entrypoint-initdb.d/10-replication.sh:ro"]
    options += [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
    primary = containers.run(built["postgresql"], *primary_spec["args"], options=tuple(options))
    wait_until("the primary's pg_isready", lambda: _pg_ready(containers, primary), 90, lambda: containers.logs(primary))
    assert containers.exec(primary, "id", "-u").stdout.strip() == "10001"

    login = _in_netns(
        containers,
        primary,
        f"""
        import asyncio, asyncpg
        async def main():
            conn = await asyncpg.connect(host="127.0.0.1", port=5432, user={env["POSTGRES_USER"]!r},
                                         password={PASSWORD!r}, database={env["POSTGRES_DB"]!r})
            print(await conn.fetchval("SELECT current_user || ' ' || current_setting('server_version_num')"))
            await conn.close()
            try:
                await asyncpg.connect(host="127.0.0.1", port=5432, user={env["POSTGRES_USER"]!r},
                                      password="wrong", database={env["POSTGRES_DB"]!r})
            except asyncpg.InvalidPasswordError:
                print("wrong password refused")
        asyncio.run(main())
        """,
    )
    assert login.returncode == 0, login.stderr
    user, version = login.stdout.splitlines()[0].split()
    assert user == env["POSTGRES_USER"] and version.startswith("17")
    assert "wrong password refused" in login.stdout

    # The replica's init container, as the chart runs it, next to the primary (its loopback).
    replica_options = _pg_options(containers, "replica")
    bootstrap = containers.run(
        built["postgresql"],
        "bash",
        "/scripts/bootstrap-replica.sh",
        network=f"container:{primary}",
        options=(
            *replica_options,
            "-v",
            f"{scripts}:/scripts:ro",
            "-e",
            f"PGDATA={env['PGDATA']}",
            "-e",
            "PRIMARY_HOST=127.0.0.1",
            "-e",
            f"REPLICATION_USER={env['REPLICATION_USER']}",
            "-e",
            f"PGPASSWORD={REPLICATION_PASSWORD}",
        ),
    )
    wait_until(
        "pg_basebackup",
        lambda: containers.state(bootstrap)["Status"] == "exited",
        120,
        lambda: containers.logs(bootstrap),
    )
    assert containers.state(bootstrap)["ExitCode"] == 0, containers.logs(bootstrap)

    replica_spec = _workload(rendered, "postgresql-read")["spec"]["template"]["spec"]["containers"][0]
    replica = containers.run(
        built["postgresql"], *replica_spec["args"], options=(*replica_options, "-e", f"PGDATA={env['PGDATA']}")
    )
    wait_until("the replica's pg_isready", lambda: _pg_ready(containers, replica), 90, lambda: containers.logs(replica))
    recovery = containers.exec(
        replica, "psql", "-Atc", "SELECT pg_is_in_recovery()", "-U", env["POSTGRES_USER"], env["POSTGRES_DB"]
    )
    assert recovery.stdout.strip() == "t", recovery.stdout + recovery.stderr


def test_kafka_starts_in_kraft_mode_with_the_charts_script(
    built: Built, containers: Containers, rendered: list[dict]
) -> None:
    """`bash /scripts/start.sh` formats the storage and starts a broker that answers a metadata request."""
    statefulset = _workload(rendered, "kafka")
    spec = statefulset["spec"]["template"]["spec"]["containers"][0]
    pod = f"{statefulset['metadata']['name']}-0"
    advertised = re.search(
        r"advertised\.listeners=PLAINTEXT://\$\{POD_NAME\}\.([^:]+):9092", _config_file(rendered, "start.sh")
    )
    assert advertised, "start.sh advertises no PLAINTEXT listener"
    host = f"{pod}.{advertised.group(1).replace('${POD_NAMESPACE}', 'loans')}"
    scripts = containers.volume("scripts")
    (scripts / "start.sh").write_text(_config_file(rendered, "start.sh"))
    hosts = containers.scratch / "hosts"
    # The pod's DNS name (the voter and the advertised listener) is its own loopback here.
    # and, as the kubelet writes it, the pod's hostname too.
    hosts.write_text(f"127.0.0.1 localhost {host} {pod}\n")
    env = {item["name"]: item.get("value") for item in spec["env"]} | {"POD_NAME": pod, "POD_NAMESPACE": "loans"}
    options = [
        "-v",
        f"{containers.volume('data', owner=10001)}:/var/lib/kafka/data",
        "-v",
        f"{containers.volume('tmp')}:/tmp",
        "-v",
        f"{scripts}:/scripts:ro",
        "-v",
        f"{hosts}:/etc/hosts:ro",
        f"--hostname={pod}",
    ]
    options += [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
    name = containers.run(built["kafka"], *spec["command"], options=tuple(options))
    probe = """
        import asyncio, aiokafka
        async def main():
            client = aiokafka.AIOKafkaClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=5000)
            # bootstrap() sends the metadata request; the answer names the advertised broker,
            # which only the pod's own network resolves.
            await client.bootstrap()
            print(" ".join(f"{b.nodeId}@{b.host}:{b.port}" for b in client.cluster.brokers()))
            await client.close()
        asyncio.run(main())
        """
    answers: list[str] = []

    def metadata() -> bool:
        if containers.state(name)["Status"] != "running":
            pytest.fail(f"the broker exited:\n{containers.logs(name)}")
        result = _in_netns(containers, name, probe)
        answers[:] = [result.stdout.strip(), result.stderr.strip()[-1500:]]
        return result.returncode == 0 and bool(result.stdout.strip())

    wait_until("a metadata answer from the broker", metadata, 120, lambda: f"{containers.logs(name)}\n{answers}")
    assert answers[0] == f"0@{host}:9092"
    assert containers.exec(name, "id", "-u").stdout.strip() == "10001"
    assert "Kafka version: " in containers.logs(name) or "Kafka Server started" in containers.logs(name)
