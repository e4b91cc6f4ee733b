"""The install tests on a real cluster: `make test-k8s` (pytest -m k8s tests/k8s).

They install the chart with helm into the local single-node cluster (k8s/cluster.sh) with the images
`make images` built, and wait for real pods. Tests marked `k8s` run only when selected; the normal suite
deselects them, because they need the cluster, the images and many minutes.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fast-loans"
CACHE = Path(os.environ.get("FASTLOANS_CACHE", Path.home() / ".cache" / "fastloans"))
IMAGES_DIR = CACHE / "images"
OUTPUT = ROOT / "test-output" / "k8s"
RELEASE = "fl"
FULL = f"{RELEASE}-fast-loans"
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


_CONFIG: list = []


def pytest_configure(config: pytest.Config) -> None:
    """Register the k8s marker; keep the configuration for the progress lines."""
    config.addinivalue_line("markers", "k8s: installs the chart on the local cluster (make test-k8s)")
    _CONFIG.append(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the k8s tests unless the marker expression names them."""
    if "k8s" in (config.option.markexpr or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("k8s")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("k8s")]


def say(message: str) -> None:
    """Progress on the terminal, whatever pytest captures."""
    line = f"[k8s {time.strftime('%H:%M:%S')}] {message}"
    plugins = _CONFIG[0].pluginmanager if _CONFIG else None
    reporter = plugins and plugins.get_plugin("terminalreporter")
    capture = plugins and plugins.get_plugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write(line + "\n", flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


@functools.cache
def cluster_env() -> dict[str, str]:
    """The environment of `k8s/cluster.sh env` (KUBECONFIG, PATH with kubectl and helm)."""
    done = subprocess.run(
        ["bash", "-c", 'eval "$(k8s/cluster.sh env)" && env -0'], cwd=ROOT, capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"k8s/cluster.sh env failed: {done.stderr.decode()}")
    pairs = [item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item]
    return dict(pairs)


def run(*args: str, check: bool = True, timeout: float = 900, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a command with the cluster's environment; fails the test with its output when it fails."""
    done = subprocess.run(
        list(args),
        cwd=ROOT,
        env=cluster_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def kubectl(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """kubectl against the local cluster."""
    return run("kubectl", *args, **kwargs)


def kube_json(*args: str) -> dict:
    """kubectl get ... -o json, parsed."""
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def helm(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """helm against the local cluster."""
    return run("helm", *args, **kwargs)


def wait_for(what: str, probe, timeout: float, interval: float = 2.0):
    """probe() until it returns something truthy; fails with `what` after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Namespace:
    """A namespace of the test cluster enforcing Pod Security `restricted`."""

    name: str

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """kubectl in this namespace."""
        return kubectl("-n", self.name, *args, **kwargs)

    def get(self, *args: str) -> dict:
        """kubectl get in this namespace, parsed."""
        return kube_json("-n", self.name, *args)

    def helm(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """helm in this namespace."""
        return helm("--namespace", self.name, *args, **kwargs)

    def dump(self) -> Path:
        """Objects, events and every container's log under test-output/k8s/<namespace>/."""
        where = OUTPUT / self.name
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        for name, args in {
            "objects.txt": ("get", "all,pvc,networkpolicy,configmap,job,hpa,pdb", "-o", "wide"),
            "events.txt": ("get", "events", "--sort-by=.lastTimestamp"),
            "pods.yaml": ("get", "pods", "-o", "yaml"),
        }.items():
            result = self.kubectl(*args, check=False)
            (where / name).write_text(result.stdout + result.stderr)
        pods = json.loads(self.kubectl("get", "pods", "-o", "json", check=False).stdout or '{"items": []}')
        for pod in pods["items"]:
            spec = pod["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                name = f"{pod['metadata']['name']}.{container['name']}"
                for previous in (False, True):
                    args = ["logs", pod["metadata"]["name"], "-c", container["name"]]
                    result = self.kubectl(*args, *(["--previous"] if previous else []), check=False)
                    if result.stdout:
                        (where / f"{name}{'.previous' if previous else ''}.log").write_text(result.stdout)
        return where


def create_namespace(name: str) -> Namespace:
    """A fresh namespace (an old one of that name deleted first) labelled to enforce `restricted`."""
    if kubectl("get", "namespace", name, check=False).returncode == 0:
        say(f"deleting the namespace {name} left by an earlier run")
        kubectl("delete", "namespace", name, "--wait=true", "--timeout=300s")
    kubectl("create", "namespace", name)
    kubectl(
        "label",
        "namespace",
        name,
        RESTRICTED,
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=restricted",
    )
    return Namespace(name)


@pytest.fixture(scope="module")
def namespace_for(request: pytest.FixtureRequest) -> Iterator:
    """namespace_for(name) -> a fresh restricted namespace, dumped when a test failed and deleted at the end."""
    made: list[Namespace] = []
    failed_before = request.session.testsfailed

    def make(name: str) -> Namespace:
        made.append(create_namespace(name))
        return made[-1]

    yield make
    for namespace in made:
        if request.session.testsfailed > failed_before:
            say(f"a test failed: objects, events and logs in {namespace.dump()}")
        if os.environ.get("FASTLOANS_K8S_KEEP"):
            say(f"keeping the namespace {namespace.name} (FASTLOANS_K8S_KEEP)")
            continue
        say(f"deleting the namespace {namespace.name}")
        kubectl("delete", "namespace", namespace.name, "--wait=true", "--timeout=300s", check=False)
