"""The dev values (+ the local images) on the local cluster: install --wait, readiness, replication, helm test."""

from __future__ import annotations

import pytest

from . import install
from .conftest import CHART, say

pytestmark = pytest.mark.k8s

VALUES = [CHART / "ci" / "dev-values.yaml", CHART / "ci" / "local-images-values.yaml"]


@pytest.fixture(scope="module")
def ns(namespace_for):
    """The dev install's namespace (Pod Security restricted enforced)."""
    return namespace_for("fastloans-dev")


def test_images_loaded_into_the_node() -> None:
    """Every image archive `make images` wrote is in the node's image store."""
    refs = install.load_images()
    say(f"node holds {', '.join(sorted(refs.values()))}")


@pytest.mark.timeout(1200)
def test_install_waits_until_ready(ns) -> None:
    """helm install --wait --timeout 10m of the dev values succeeds in a restricted namespace."""
    install.install(ns, [*VALUES, install.ingress_values()])


def test_every_workload_is_ready(ns) -> None:
    """Every Deployment Available, every StatefulSet ready."""
    install.check_workloads_ready(ns)


def test_migration_and_topic_jobs_completed(ns) -> None:
    """The install's Jobs (migrations, topics) completed."""
    install.check_jobs_completed(ns)


def test_replica_streams_from_the_primary(ns) -> None:
    """pg_stat_replication on the primary lists the standby, streaming."""
    install.check_replication(ns, standbys=1, synchronous=False)


def test_the_ingress_answers_clients_outside_the_cluster(ns) -> None:
    """Through Traefik's NodePort with the Ingress's host: the page and the API; another host: 404."""
    install.check_ingress_from_the_host(ns)


@pytest.mark.timeout(1200)
def test_helm_test_walks_the_business_path(ns) -> None:
    """helm test: key, submit through the Ingress, decision read from the replica, topics, /metrics."""
    output = install.helm_test(ns)
    assert "business-path: passed" in output and "platform: passed" in output, output[-3000:]
    assert "through the Ingress" in output, output[-3000:]
