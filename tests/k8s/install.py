"""What every install test checks: images, helm install --wait, readiness, Jobs, replication, helm test."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastloans import services

from .conftest import CHART, FULL, IMAGES_DIR, RELEASE, Namespace, cluster_env, kube_json, run, say, wait_for

INSTALL_TIMEOUT = "10m"


def image_refs() -> dict[str, str]:
    """Each image the chart runs here (archive stem -> reference), as tests/images names them."""
    from tests.images.conftest import image_refs as refs

    return refs()


def node_images() -> set[str]:
    """Every image name the node's runtime holds."""
    node = kube_json("nodes")["items"][0]
    return {name for image in node["status"].get("images", []) for name in image.get("names", [])}


def load_images() -> dict[str, str]:
    """Import every image archive into the node (k8s/cluster.sh load-image); the references loaded."""
    refs = image_refs()
    missing = [name for name in refs if not (IMAGES_DIR / f"{name}.tar").is_file()]
    assert not missing, f"image archives missing under {IMAGES_DIR}: {missing} (run make images)"
    # A record per archive beside the kubeconfig: the cluster's state directory, deleted with its image store.
    records = Path(cluster_env()["KUBECONFIG"]).parent / "loaded-images"
    records.mkdir(exist_ok=True)
    held = node_images()
    for name in sorted(refs):
        archive = IMAGES_DIR / f"{name}.tar"
        stamp = f"{archive.stat().st_size} {archive.stat().st_mtime_ns}"
        record = records / name
        if refs[name] in held and record.is_file() and record.read_text() == stamp:
            say(f"{name}.tar already loaded")
            continue
        started = time.monotonic()
        run("k8s/cluster.sh", "load-image", str(archive))
        record.write_text(stamp)
        say(f"loaded {name}.tar in {time.monotonic() - started:.0f} s")
    held = wait_for("the node to list the loaded images", lambda: set(refs.values()) <= node_images() or None, 120)
    assert held
    return refs


def ingress_values() -> Path:
    """A values file routing the release through the cluster's ingress controller (k8s/cluster.sh env):
    its IngressClass, its namespace admitted to the gateway, and where helm test pods reach it."""
    env = cluster_env()
    values = {
        "ingress": {
            "enabled": True,
            "className": env["FASTLOANS_K8S_INGRESS_CLASS"],
            "testUrl": env["FASTLOANS_K8S_INGRESS_URL"],
        },
        "networkPolicy": {
            "ingressNamespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": env["FASTLOANS_K8S_INGRESS_NAMESPACE"]}
            }
        },
    }
    path = Path(env["KUBECONFIG"]).parent / "ingress-values.json"
    path.write_text(json.dumps(values, indent=2) + "\n")
    return path


def ingress_host(ns: Namespace) -> str:
    """The first host of the release's Ingress."""
    return ns.get("ingress", f"{FULL}-gateway")["spec"]["rules"][0]["host"]


def check_ingress_from_the_host(ns: Namespace) -> None:
    """A client outside the cluster reaches the gateway through the Ingress (the controller's NodePort): the web
    page and the API (401 without a key, the gateway's problem+json); a host the Ingress does not name is refused."""
    import httpx

    from fastloans.contracts import APPLICATIONS_PATH
    from fastloans_gateway.problems import PROBLEM_JSON

    base = cluster_env()["FASTLOANS_K8S_INGRESS_NODE_URL"]
    host = ingress_host(ns)

    def page():
        answer = httpx.get(f"{base}/", headers={"Host": host}, timeout=10)
        return answer if answer.status_code == 200 else None

    answer = wait_for(f"the web page through the Ingress at {base} (Host {host})", page, 60, 1)
    assert answer.headers["content-type"].startswith("text/html"), answer.headers
    unknown = f"{base}{APPLICATIONS_PATH}/00000000-0000-0000-0000-000000000000"
    api = httpx.get(unknown, headers={"Host": host}, timeout=10)
    assert api.status_code == 401 and api.headers["content-type"].startswith(PROBLEM_JSON), (api, api.text)
    elsewhere = httpx.get(f"{base}/", headers={"Host": "not-routed.invalid"}, timeout=10)
    assert elsewhere.status_code == 404, (elsewhere, elsewhere.text[:200])
    say(f"the Ingress answers the host at {base} for {host}: page 200, API 401 without a key, other hosts 404")


def install(ns: Namespace, values: list[Path], *extra: str) -> float:
    """helm install --wait; the seconds it took."""
    args = ["install", RELEASE, str(CHART), "--wait", "--timeout", INSTALL_TIMEOUT]
    for path in values:
        args += ["--values", str(path)]
    say(f"helm install {RELEASE} into {ns.name} with {', '.join(p.name for p in values)} (up to {INSTALL_TIMEOUT})")
    started = time.monotonic()
    ns.helm(*args, *extra, timeout=900)
    took = time.monotonic() - started
    say(f"installed in {took:.0f} s")
    return took


def deployments(ns: Namespace) -> dict[str, dict]:
    """The release's Deployments by component."""
    items = ns.get("deployments", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in items}


def check_workloads_ready(ns: Namespace) -> None:
    """Every service of the registry has an Available Deployment; every StatefulSet is ready."""
    found = deployments(ns)
    assert set(found) == {s.short for s in services.SERVICES}, sorted(found)
    for name, deployment in found.items():
        conditions = {c["type"]: c["status"] for c in deployment["status"].get("conditions", [])}
        assert conditions.get("Available") == "True", f"{name}: {conditions}"
        assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"], name
    sets = ns.get("statefulsets")["items"]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in sets} >= {"postgresql-primary", "kafka"}
    for stateful in sets:
        want = stateful["spec"]["replicas"]
        assert stateful["status"].get("readyReplicas") == want, stateful["metadata"]["name"]
    say(f"{len(found)} Deployments Available, {len(sets)} StatefulSets ready")


def check_jobs_completed(ns: Namespace) -> list[str]:
    """The first install's migration and topic Jobs completed."""
    items = ns.get("jobs", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    done = {j["metadata"]["name"]: {c["type"]: c["status"] for c in j["status"].get("conditions", [])} for j in items}
    assert set(done) >= {f"{FULL}-migrations-install", f"{FULL}-topics-install"}, sorted(done)
    for name, conditions in done.items():
        assert conditions.get("Complete") == "True", f"{name}: {conditions}"
    say(f"Jobs completed: {', '.join(sorted(done))}")
    return sorted(done)


def check_hooks_succeeded(ns: Namespace, events: set[str]) -> list[str]:
    """The migration and topic Jobs ran as hooks (of an upgrade) and succeeded; their names."""
    status = json.loads(ns.helm("status", RELEASE, "-o", "json").stdout)
    ran = [h for h in status.get("hooks", []) if set(h["events"]) & events]
    jobs = {h["name"]: h.get("last_run", {}).get("phase") for h in ran if h["kind"] == "Job"}
    assert set(jobs) >= {f"{FULL}-migrations", f"{FULL}-topics"}, jobs
    assert set(jobs.values()) == {"Succeeded"}, jobs
    say(f"hook Jobs succeeded: {', '.join(sorted(jobs))}")
    return sorted(jobs)


def psql(ns: Namespace, pod: str, sql: str) -> list[list[str]]:
    """Rows of a query run with psql inside a PostgreSQL pod (unix socket, as the pod's own user)."""
    done = ns.kubectl(
        "exec",
        pod,
        "-c",
        "postgresql",
        "--",
        "psql",
        "-U",
        "fastloans",
        "-d",
        "fastloans",
        "-XtA",
        "-F",
        "|",
        "-c",
        sql,
    )
    return [line.split("|") for line in done.stdout.splitlines() if line]


def check_replication(ns: Namespace, standbys: int, synchronous: bool) -> list[list[str]]:
    """pg_stat_replication on the primary shows every standby streaming (synchronously when asked)."""
    primary = f"{FULL}-postgresql-primary-0"

    def streaming():
        rows = psql(ns, primary, "SELECT application_name, state, sync_state FROM pg_stat_replication")
        live = [r for r in rows if r[1] == "streaming"]
        return rows if len(live) == standbys else None

    rows = wait_for(f"{standbys} standby(s) streaming from the primary", streaming, 120)
    if synchronous:
        assert {r[2] for r in rows} <= {"sync", "quorum"}, rows
    say(f"pg_stat_replication: {rows}")
    return rows


def helm_test(ns: Namespace) -> str:
    """helm test (the chart's test pods); their logs.

    Not `helm test --logs`: it asks for the logs of every test hook as if each were a pod, and the chart's
    test hooks include a ConfigMap and a NetworkPolicy.
    """
    say("helm test: the business path and the platform checks")
    started = time.monotonic()
    done = ns.helm("test", RELEASE, "--timeout", "10m", check=False, timeout=900)
    logs = []
    for pod in sorted(
        ns.get("pods", "-l", "app.kubernetes.io/component=test")["items"], key=lambda p: p["metadata"]["name"]
    ):
        name = pod["metadata"]["name"]
        text = ns.kubectl("logs", name, check=False).stdout
        logs.append(f"--- {name} ({pod['status'].get('phase')})\n{text}")
        for line in text.splitlines():
            say(f"  {name.removeprefix(FULL + '-')}: {line}")
    output = done.stdout + done.stderr + "\n".join(logs)
    assert done.returncode == 0, output[-6000:]
    say(f"helm test passed in {time.monotonic() - started:.0f} s")
    return output
