"""Operating a release under a steady client load: helm upgrade, pods deleted, a consumer scaled, the HPA.

One install (the dev values, the data on persistent volumes: see operations-values.yaml beside this file)
serves every scenario, in order, while tests/k8s/load.py submits applications from the host as a client does:
through the Ingress (the cluster's Traefik, at its NodePort). The last test stops the load and checks in the
primary that every acknowledged application is decided exactly once.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fastloans import services
from fastloans.db.schema import DECIDERS

from . import install
from .conftest import CHART, FULL, OUTPUT, RELEASE, ROOT, Namespace, cluster_env, run, say, wait_for
from .load import Load, get_decided

pytestmark = pytest.mark.k8s

VALUES = [
    CHART / "ci" / "dev-values.yaml",
    CHART / "ci" / "local-images-values.yaml",
    Path(__file__).with_name("operations-values.yaml"),
]
RATE = 20.0  # applications per second
NEW_TAG = "dev2"
PRIMARY = f"{FULL}-postgresql-primary-0"
KAFKA = f"{FULL}-kafka-0"
FLOWING_TIMEOUT = 180.0  # a fault's recovery: a new application acknowledged and decided within this


@dataclass
class Release:
    """The installed release: its namespace, the Ingress's address from the host and its Host, an API key."""

    ns: Namespace
    base_url: str
    headers: dict[str, str]
    api_key: str
    policy_version: str


def policy_version_of(text: str) -> str:
    """The `version` of a credit policy document."""
    return str(yaml.safe_load(text)["version"])


def seed_policy() -> str:
    """The chart's default policy (files/policy.yaml)."""
    return (CHART / "files" / "policy.yaml").read_text()


def create_api_key(ns: Namespace, tenant: str) -> str:
    """A new API key (submit, read) made with `fastloans keys create` inside a gateway pod."""
    done = ns.kubectl(
        "exec",
        f"deploy/{FULL}-gateway",
        "-c",
        "gateway",
        "--",
        "fastloans",
        "keys",
        "create",
        "--tenant",
        tenant,
        "--scopes",
        "submit,read",
        "--label",
        "operations test",
    )
    return done.stdout.strip().splitlines()[0]


@pytest.fixture(scope="module")
def release(namespace_for) -> Release:
    """The operations install, reached through the cluster's ingress controller, and an API key."""
    ns = namespace_for("fastloans-ops")
    install.load_images()
    install.install(ns, [*VALUES, install.ingress_values()])
    base_url = cluster_env()["FASTLOANS_K8S_INGRESS_NODE_URL"]
    host = install.ingress_host(ns)
    key = create_api_key(ns, "operations")
    say(f"gateway through the Ingress at {base_url} (Host {host}), API key created")
    return Release(ns, base_url, {"Host": host}, key, policy_version_of(seed_policy()))


@pytest.fixture(scope="module")
def load(release: Release) -> Iterator[Load]:
    """The steady load for the whole module (stopped by the last test, or at the end)."""
    running = Load(release.base_url, release.api_key, rate=RATE, headers=release.headers).start()
    started = time.monotonic()
    wait_for("the first acknowledged application", lambda: running.acknowledged or running._error, 60, 0.5)
    say(f"load: {RATE:.0f} applications/s, first acknowledged after {time.monotonic() - started:.1f} s")
    yield running
    if not running._stop.is_set():
        running.stop()
    report = OUTPUT / "operations-load.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{phase}: {running.summary(phase)}" for phase in dict.fromkeys(running.sent)]
    lines += [f"{f.at:.1f} {f.phase} {f.kind} {f.detail}" for f in running.failures]
    report.write_text("\n".join(lines) + "\n")
    say(f"load: {running.summary()} (by phase, and every failure: {report})")


@pytest.fixture(autouse=True)
def container_restarts(release: Release) -> Iterator[None]:
    """After each scenario, every container that restarted during it: why it ended (OOMKilled, an exit code, a
    failed liveness probe in the events) and its previous log, kept under test-output/k8s/ before a later
    scenario deletes the pod and the log with it."""
    ns = release.ns

    def counts() -> dict[tuple[str, str], dict]:
        found = {}
        for pod in ns.get("pods")["items"]:
            for status in pod["status"].get("containerStatuses", []):
                found[(pod["metadata"]["name"], status["name"])] = status
        return found

    before = {key: status["restartCount"] for key, status in counts().items()}
    yield
    where = OUTPUT / "operations-restarts"
    for (pod, container), status in counts().items():
        if status["restartCount"] <= before.get((pod, container), 0):
            continue
        ended = status.get("lastState", {}).get("terminated", {})
        where.mkdir(parents=True, exist_ok=True)
        log = where / f"{pod}.{container}.{status['restartCount']}.previous.log"
        log.write_text(ns.kubectl("logs", pod, "-c", container, "--previous", check=False).stdout)
        events = ns.kubectl(
            "get",
            "events",
            "--field-selector",
            f"involvedObject.name={pod}",
            "-o",
            "custom-columns=AT:.lastTimestamp,REASON:.reason,MESSAGE:.message",
            check=False,
        ).stdout
        (where / f"{pod}.events.txt").write_text(events)
        say(
            f"RESTARTED {pod}/{container} (restarts {status['restartCount']}): {ended.get('reason')} exit "
            f"{ended.get('exitCode')} {ended.get('startedAt')} -> {ended.get('finishedAt')}; previous log {log}"
        )
        for line in events.splitlines()[-6:]:
            say(f"  event: {line}")


def pods_of(ns: Namespace, component: str) -> list[dict]:
    """The pods of one component, terminating ones included."""
    return ns.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}")[
        "items"
    ]


def is_ready(pod: dict) -> bool:
    """The pod is Ready and not being deleted."""
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


def wait_flowing(release: Release, load: Load, since: float, what: str) -> float:
    """Wait until an application acknowledged after `since` is decided; the seconds from `since`."""
    ident = wait_for(
        f"an application acknowledged after {what}",
        lambda: next(iter(load.acknowledged_after(since)), None),
        FLOWING_TIMEOUT,
        0.5,
    )
    get_decided(release.base_url, release.api_key, ident, timeout=FLOWING_TIMEOUT, headers=release.headers)
    return time.monotonic() - since


def wait_answering(load: Load, phase: str, quiet: float = 15.0) -> float:
    """Wait until the gateways answer again: `quiet` seconds (longer than the database connect timeout, 10 s) with
    acknowledgements and no failed attempt of `phase`; the seconds it took."""
    started = time.monotonic()

    def settled() -> bool:
        now = time.monotonic()
        failed = any(f.phase == phase and f.at > now - quiet for f in list(load.failures))
        acked = any(p == phase and at > now - quiet for p, at in list(load.acknowledged.values()))
        return now - started >= quiet and acked and not failed

    wait_for(f"the gateways to answer {phase} load with no failure for {quiet:g} s", settled, FLOWING_TIMEOUT, 0.5)
    return time.monotonic() - started - quiet


def delete_pod_and_recover(release: Release, load: Load, component: str, pod: str | None = None) -> tuple[float, float]:
    """Delete a pod of a component; (seconds until its replacement is Ready, seconds until decisions flow again)."""
    ns = release.ns
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(ns, component)}
    victim = pod or sorted(before)[0]
    want = len(before)
    started = time.monotonic()
    ns.kubectl("delete", "pod", victim, "--wait=false")

    def replaced():
        pods = pods_of(ns, component)
        ready = [p for p in pods if is_ready(p)]
        fresh = [p for p in ready if before.get(p["metadata"]["name"]) != p["metadata"]["uid"]]
        gone = before[victim] not in {p["metadata"]["uid"] for p in pods}
        return len(ready) >= want and fresh and gone

    wait_for(f"the {component} pod {victim} to be replaced and Ready", replaced, 300, 1)
    ready_after = time.monotonic() - started
    flowing_after = wait_flowing(release, load, started + ready_after, f"{victim} was replaced")
    return ready_after, ready_after + flowing_after


@contextlib.contextmanager
def kept_logs(ns: Namespace, where: Path, components: tuple[str, ...]) -> Iterator[None]:
    """Follow the logs of the components' pods while the block runs (pods a roll replaces take their logs with
    them), then add those of the pods running at its end: under `where`, one file per component."""
    where.mkdir(parents=True, exist_ok=True)
    followers = []
    for component in components:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        args = ["kubectl", "-n", ns.name, "logs", "-l", selector, "--all-containers", "--prefix", "--timestamps"]
        out = (where / f"{component}.log").open("w")
        process = subprocess.Popen(
            [*args, "-f", "--max-log-requests", "20"], cwd=ROOT, env=cluster_env(), stdout=out, stderr=out
        )
        followers.append((process, out, args))
    try:
        yield
    finally:
        for process, out, args in followers:
            process.terminate()
            process.wait(10)
            out.write("---- the pods running at the end ----\n")
            out.flush()
            subprocess.run(args, cwd=ROOT, env=cluster_env(), stdout=out, stderr=out, timeout=60, check=False)
            out.close()


def outage_lines(where: Path) -> list[str]:
    """The log lines of 503s for an unavailable dependency (with the error's type), and PostgreSQL's errors."""
    found = []
    for path in sorted(where.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if "dependency unavailable" in line or " FATAL: " in line or " ERROR: " in line:
                found.append(f"{path.name}: {line[:400]}")
    return found


def upgrade(release: Release, policy_file: Path) -> float:
    """helm upgrade to the new image tag and policy; the seconds it took."""
    args = ["upgrade", RELEASE, str(CHART), "--wait", "--timeout", install.INSTALL_TIMEOUT]
    for path in [*VALUES, install.ingress_values()]:
        args += ["--values", str(path)]
    args += ["--set", f"image.tag={NEW_TAG}", "--set-file", f"policy.content={policy_file}"]
    started = time.monotonic()
    release.ns.helm(*args, timeout=900)
    return time.monotonic() - started


def template_hashes(ns: Namespace) -> dict[str, set[str]]:
    """Each Deployment's pod-template hashes among its pods (terminating ones included)."""
    hashes: dict[str, set[str]] = {}
    for short in install.deployments(ns):
        hashes[short] = {p["metadata"]["labels"]["pod-template-hash"] for p in pods_of(ns, short)}
    return hashes


@pytest.mark.timeout(2400)
def test_upgrade_rolls_every_deployment_with_no_failed_request(release: Release, load: Load) -> None:
    """helm upgrade to a new image tag and policy version under load: every Deployment rolls, 0 failed requests."""
    ns = release.ns
    for image in services.images():
        run("k8s/cluster.sh", "tag-image", f"docker.io/fastloans/{image}:dev", f"docker.io/fastloans/{image}:{NEW_TAG}")
    old = template_hashes(ns)
    new_version = f"{release.policy_version}-ops"
    policy = seed_policy().replace(f"version: {release.policy_version}\n", f"version: {new_version}\n", 1)
    assert policy_version_of(policy) == new_version
    logs = OUTPUT / "operations-upgrade"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as policy_file:
        policy_file.write(policy)
        policy_file.flush()
        load.phase = "upgrade"
        say(f"helm upgrade under load: image tag {NEW_TAG}, policy version {new_version}")
        with kept_logs(ns, logs, ("gateway", "postgresql-primary")):
            took = upgrade(release, Path(policy_file.name))
    release.policy_version = new_version

    def rolled():
        now = template_hashes(ns)
        done = all(now[short] and not (now[short] & old[short]) for short in old)
        return now if done else None

    now = wait_for("every old pod to be gone", rolled, 180, 1)
    load.phase = "after-upgrade"
    say(f"upgraded in {took:.0f} s; during the upgrade: {load.summary('upgrade')}")
    for short in old:
        pods = pods_of(ns, short)
        images = {c["image"] for p in pods for c in p["spec"]["containers"]}
        assert all(image.endswith(f":{NEW_TAG}") for image in images), (short, images)
        say(f"  {short}: ReplicaSet {sorted(old[short])} -> {sorted(now[short])}, {len(pods)} pod(s) on {images}")
    failed = load.failures_in("upgrade")
    causes = outage_lines(logs)
    for line in causes[:20]:
        say(f"  during the roll: {line}")
    assert not failed, f"{len(failed)} failed requests during the roll, first: {failed[:5]}; logs in {logs}"
    assert load.acknowledged_in("upgrade"), "no application acknowledged during the upgrade"


def test_new_applications_are_decided_by_the_new_policy_version(release: Release, load: Load) -> None:
    """Applications acknowledged after the upgrade are decided by the new policy version (GET shows it)."""
    since = time.monotonic()
    wait_for("10 applications after the upgrade", lambda: len(load.acknowledged_after(since)) >= 10, 60, 0.5)
    versions = {
        get_decided(release.base_url, release.api_key, ident, headers=release.headers)["policy_version"]
        for ident in load.acknowledged_after(since)[:10]
    }
    say(f"decided after the upgrade by policy {sorted(versions)}")
    assert versions == {release.policy_version}, versions


def assert_only_unavailable(load: Load, phase: str) -> None:
    """In a fault's phase the gateway answered only 2xx or 503 with Retry-After: never a 500, and never a refused
    connection or a timeout (the gateways stay in their Service while the primary is away, /readyz `degraded`)."""
    wrong = [f for f in load.failures_in(phase) if f.kind != "503"]
    assert not wrong, f"{len(wrong)} answers other than 2xx or 503 with Retry-After, first: {wrong[:5]}"


@pytest.mark.timeout(900)
def test_postgresql_primary_pod_deleted(release: Release, load: Load) -> None:
    """The primary's pod deleted under load: it comes back on its volume, the gateways answer 503 meanwhile."""
    load.phase = "primary-deleted"
    ready, flowing = delete_pod_and_recover(release, load, "postgresql-primary", PRIMARY)
    # Decisions flow before every gateway does: a request that needed a new connection while the primary was away
    # waits out the connect timeout, and one sent meanwhile queues behind it. The fault lasts until they have.
    answering = flowing + wait_answering(load, "primary-deleted")
    load.phase = "after-primary"
    say(
        f"primary deleted: Ready again after {ready:.0f} s, decisions flowing after {flowing:.0f} s, "
        f"no failed request from {answering:.0f} s on; {load.summary('primary-deleted')}"
    )
    assert_only_unavailable(load, "primary-deleted")


@pytest.mark.timeout(900)
def test_kafka_pod_deleted(release: Release, load: Load) -> None:
    """The Kafka pod deleted under load: every submission is still accepted (the outbox holds it), Kafka comes back
    on its volume and every consumer resumes."""
    load.phase = "kafka-deleted"
    ready, flowing = delete_pod_and_recover(release, load, "kafka", KAFKA)
    load.phase = "after-kafka"
    say(
        f"Kafka deleted: Ready again after {ready:.0f} s, decisions flowing after {flowing:.0f} s; "
        f"{load.summary('kafka-deleted')}"
    )
    failed = load.failures_in("kafka-deleted")
    assert not failed, f"{len(failed)} failed requests while Kafka was down, first: {failed[:5]}"


@pytest.mark.timeout(1200)
def test_a_pod_of_every_service_deleted(release: Release, load: Load) -> None:
    """One pod of every service deleted in turn, each replaced before the next: no failed request at all."""
    for service in services.SERVICES:
        load.phase = f"{service.short}-deleted"
        ready, flowing = delete_pod_and_recover(release, load, service.short)
        say(
            f"{service.short} pod deleted: replaced after {ready:.0f} s, decisions flowing after {flowing:.0f} s; "
            f"{load.summary(load.phase)}"
        )
    load.phase = "after-services"
    phases = [f"{s.short}-deleted" for s in services.SERVICES]
    failed = load.failures_in(*phases)
    assert not failed, f"{len(failed)} failed requests while service pods were replaced, first: {failed[:5]}"


def scale(release: Release, component: str, replicas: int) -> float:
    """kubectl scale a Deployment and wait until that many pods are Ready (and no more); the seconds it took."""
    started = time.monotonic()
    release.ns.kubectl("scale", f"deployment/{FULL}-{component}", f"--replicas={replicas}")

    def settled():
        pods = pods_of(release.ns, component)
        return len(pods) == replicas and all(is_ready(p) for p in pods)

    wait_for(f"{component} at {replicas} Ready replicas", settled, 240, 1)
    return time.monotonic() - started


@pytest.mark.timeout(900)
def test_recorder_scaled_to_its_maximum_and_back(release: Release, load: Load) -> None:
    """kubectl scale the recorder (no HPA in these values) to the topic's partitions and back, under load."""
    ns = release.ns
    assert ns.kubectl("get", "hpa", f"{FULL}-recorder", check=False).returncode != 0, "the recorder has an HPA"
    partitions = topic_partitions()
    load.phase = "scale-up"
    up = scale(release, "recorder", partitions)
    flowing = wait_flowing(release, load, time.monotonic(), f"the recorder scaled to {partitions}")
    say(f"recorder scaled to {partitions} in {up:.0f} s, decisions flowing {flowing:.0f} s later")
    load.phase = "scale-down"
    down = scale(release, "recorder", 1)
    flowing = wait_flowing(release, load, time.monotonic(), "the recorder scaled back to 1")
    load.phase = "after-scaling"
    say(
        f"recorder back to 1 in {down:.0f} s, decisions flowing {flowing:.0f} s later; "
        f"{load.summary('scale-up', 'scale-down')}"
    )
    failed = load.failures_in("scale-up", "scale-down")
    assert not failed, f"{len(failed)} failed requests while scaling, first: {failed[:5]}"


def topic_partitions() -> int:
    """topics.partitions of the values (the most consumers a group can use)."""
    partitions = yaml.safe_load((CHART / "values.yaml").read_text())["topics"]["partitions"]
    for path in VALUES:
        partitions = (yaml.safe_load(path.read_text()).get("topics") or {}).get("partitions", partitions)
    return int(partitions)


@pytest.mark.timeout(300)
def test_gateway_hpa_scales_up_under_load(release: Release, load: Load) -> None:
    """Stretch: with metrics-server, the gateway's HPA (low CPU target) adds a replica under the load."""
    hpa_name = f"{FULL}-gateway"
    seen: list[str] = []

    def scaled_up():
        hpa = release.ns.get("hpa", hpa_name)
        status, spec = hpa["status"], hpa["spec"]
        cpu = [m["resource"]["current"] for m in status.get("currentMetrics") or [] if m.get("type") == "Resource"]
        seen.append(f"{status.get('currentReplicas')}->{status.get('desiredReplicas')} cpu {cpu}")
        return (
            status.get("desiredReplicas", 0) > spec["minReplicas"]
            or status.get("currentReplicas", 0) > spec["minReplicas"]
        )

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if scaled_up():
            say(f"gateway HPA: {seen[-1]}")
            return
        time.sleep(5)
    pytest.skip(f"the gateway HPA did not scale up within 120 s under {RATE:.0f} applications/s: {seen[-3:]}")


@pytest.mark.timeout(600)
def test_every_acknowledged_application_decided_exactly_once(release: Release, load: Load) -> None:
    """The load stopped: every acknowledged application is in the primary, decided, with exactly one decision."""
    load.phase = "drain"
    load.stop()
    say(f"load stopped: {load.summary()}")
    assert not load.given_up, f"{len(load.given_up)} applications never acknowledged: {load.given_up[:5]}"
    wrong = [f for f in load.failures if f.kind != "503"]
    assert not wrong, f"answers other than 2xx or 503 with Retry-After: {wrong[:5]}"
    acked = set(load.acknowledged)
    # The policy's own decisions (a reviewer's decision of a referred application is a second row, `review`).
    query = (
        "SELECT a.id, a.status, a.revision, count(d.id), count(d.id) FILTER (WHERE d.revision = a.revision) "
        "FROM loan_applications a LEFT JOIN loan_decisions d "
        f"ON d.application_id = a.id AND d.decided_by = '{DECIDERS[0]}' GROUP BY a.id"
    )

    def all_decided():
        rows = {r[0]: r for r in install.psql(release.ns, PRIMARY, query)}
        pending = [i for i in acked if i not in rows or rows[i][1] == "pending" or rows[i][4] == "0"]
        return rows if not pending else None

    started = time.monotonic()
    rows = wait_for(f"all {len(acked)} acknowledged applications decided", all_decided, 180, 3)
    lost = [i for i in acked if i not in rows]
    undecided = [i for i in acked if rows[i][1] == "pending"]
    duplicated = [i for i in acked if int(rows[i][3]) != int(rows[i][2]) or int(rows[i][4]) != 1]
    say(
        f"{len(acked)} acknowledged, all decided {time.monotonic() - started:.0f} s after the load stopped; "
        f"lost {len(lost)}, undecided {len(undecided)}, duplicated {len(duplicated)}"
    )
    assert not lost and not undecided and not duplicated, (lost[:5], undecided[:5], duplicated[:5])
