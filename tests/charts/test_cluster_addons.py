"""The local cluster's add-on manifests (k8s/manifests), as `k8s/cluster.sh up` applies them: every placeholder
substituted, and the ingress controller consistent with the pins and with the chart it serves."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .conftest import CHART, REPO_ROOT

pytestmark = pytest.mark.charts

K8S = REPO_ROOT / "k8s"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def pins() -> dict[str, str]:
    """The variables of k8s/versions.sh, as bash sees them."""
    done = subprocess.run(
        ["bash", "-c", 'set -a; source "$0"; env -0', str(K8S / "versions.sh")],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)


def substituted() -> set[str]:
    """The placeholders cluster.sh's apply_addons replaces."""
    return set(re.findall(r"s\|@([A-Z_]+)@\|", (K8S / "cluster.sh").read_text()))


def applied(name: str) -> list[dict]:
    """A manifest with its placeholders replaced as cluster.sh does, parsed."""
    values = pins()
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], (K8S / "manifests" / name).read_text())
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_every_placeholder_of_the_manifests_is_substituted() -> None:
    """A placeholder that cluster.sh does not replace would reach the API server as `@NAME@`."""
    values, replaced = pins(), substituted()
    for manifest in sorted((K8S / "manifests").glob("*.yaml")):
        for name in set(PLACEHOLDER.findall(manifest.read_text())):
            assert name in replaced, f"{manifest.name}: @{name}@ is not replaced by cluster.sh apply_addons"
            assert values.get(name), f"{manifest.name}: @{name}@ has no value in k8s/versions.sh"


def test_the_ingress_controller_matches_the_pins_and_the_gateway_keep_alive() -> None:
    """Traefik: the pinned image, the IngressClass and NodePort of versions.sh, a restricted pod, and idle upstream
    connections that expire before the gateway's keep-alive (else it reuses one the gateway is closing: a 502)."""
    values = pins()
    objects = applied("40-traefik.yaml")
    kinds = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert kinds[("IngressClass", values["INGRESS_CLASS"])]["spec"]["controller"] == "traefik.io/ingress-controller"
    namespace = kinds[("Namespace", values["INGRESS_NAMESPACE"])]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    service = kinds[("Service", "traefik")]
    low, high = (int(x) for x in values["NODEPORT_RANGE"].split("-"))
    [web] = service["spec"]["ports"]
    assert web["nodePort"] == int(values["INGRESS_NODEPORT"]) and low <= web["nodePort"] <= high
    pod = kinds[("Deployment", "traefik")]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == values["TRAEFIK_IMAGE"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
    assert args["providers.kubernetesingress.ingressClass"] == values["INGRESS_CLASS"]
    idle = args["serversTransport.forwardingTimeouts.idleConnTimeout"]
    assert idle.endswith("s")
    keep_alive = yaml.safe_load((CHART / "values.yaml").read_text())["components"]["gateway"]["keepAliveSeconds"]
    assert int(idle.removesuffix("s")) < keep_alive
