"""Production-like values on the local cluster: replicas, 3 Kafka brokers, synchronous replication, Secrets first."""

from __future__ import annotations

import base64
import secrets

import pytest

from . import install
from .conftest import CHART, say

pytestmark = pytest.mark.k8s

VALUES = [CHART / "ci" / "cluster-production-values.yaml", CHART / "ci" / "local-images-values.yaml"]


@pytest.fixture(scope="module")
def ns(namespace_for):
    """The production-like install's namespace, with the Secrets a platform team would create first."""
    namespace = namespace_for("fastloans-prod")
    namespace.kubectl(
        "create",
        "secret",
        "generic",
        "fast-loans-postgresql",
        f"--from-literal=password={secrets.token_urlsafe(24)}",
        f"--from-literal=replication-password={secrets.token_urlsafe(24)}",
    )
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    namespace.kubectl("create", "secret", "generic", "fast-loans-webhooks", f"--from-literal=webhook-secret-key={key}")
    say("Secrets fast-loans-postgresql and fast-loans-webhooks created before the install")
    return namespace


@pytest.mark.timeout(1200)
def test_install_waits_until_ready(ns) -> None:
    """helm install --wait --timeout 10m of the production-like values succeeds in a restricted namespace."""
    install.install(ns, [*VALUES, install.ingress_values()])


def test_every_workload_is_ready_with_several_replicas(ns) -> None:
    """Every Deployment Available with at least two ready replicas; Kafka's three brokers and both standbys ready."""
    install.check_workloads_ready(ns)
    for name, deployment in install.deployments(ns).items():
        assert deployment["status"]["readyReplicas"] >= 2, name
    ready = {s["metadata"]["name"]: s["status"].get("readyReplicas") for s in ns.get("statefulsets")["items"]}
    assert sorted(ready.values()) == [1, 2, 3], ready


def test_migration_and_topic_jobs_completed(ns) -> None:
    """The install's Jobs (migrations, topics) completed."""
    install.check_jobs_completed(ns)


def test_both_standbys_replicate_synchronously(ns) -> None:
    """pg_stat_replication on the primary lists both standbys, streaming, as synchronous (quorum) standbys."""
    install.check_replication(ns, standbys=2, synchronous=True)


@pytest.mark.timeout(1200)
def test_helm_test_walks_the_business_path(ns) -> None:
    """helm test: key, submit through the Ingress, decision read from a standby, topics (RF 3, min ISR 2), /metrics."""
    output = install.helm_test(ns)
    assert "business-path: passed" in output and "platform: passed" in output, output[-3000:]
    assert "through the Ingress" in output, output[-3000:]
    assert "min.insync.replicas=2 on every topic" in output, output[-3000:]
