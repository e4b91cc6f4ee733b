"""The chart's components agree with the service registry: names, ports, commands, images, topics, dependencies."""

from __future__ import annotations

import pytest
import yaml

from fastloans import services

from .conftest import CHART, RELEASE, by_kind, env_of, named, values_args

pytestmark = pytest.mark.charts

FULL = f"{RELEASE}-fast-loans"
COMPONENTS = yaml.safe_load((CHART / "values.yaml").read_text())["components"]
EVERY_SERVICE = pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)


def test_one_component_per_service() -> None:
    """values.yaml has exactly one component per registered service."""
    assert set(COMPONENTS) == {s.short for s in services.SERVICES}


@EVERY_SERVICE
def test_component_values_match_the_registry(service: services.Service) -> None:
    """Port, ops port, image, command, consumer topic and group, and what it uses, as the registry declares."""
    c = COMPONENTS[service.short]
    assert c["port"] == service.port
    assert c.get("opsPort") == service.ops_port
    assert c["image"]["repository"] == f"fastloans/{service.image_name}"
    # An empty command runs the image's own service (docker/service.Dockerfile's CMD).
    assert (c["command"] or [services.by_short(service.image_name).command]) == [service.command]
    uses = c["uses"]
    assert (uses["database"], uses["kafka"], uses["policy"]) == (service.database, service.kafka, service.policy)
    if service.consumes is None:
        assert "consumer" not in c
    else:
        assert c["consumer"] == {"topic": service.consumes.value.rsplit(".", 1)[-1], "group": service.group}


@pytest.fixture(scope="module")
def production(render) -> list[dict]:
    """The chart rendered with the production values (network policies, KEDA)."""
    return render(values=values_args("production"))


@EVERY_SERVICE
def test_rendered_deployment_matches_the_registry(production, service: services.Service) -> None:
    """The Deployment listens on the registry's ports, names the service, gets the DB password only if it uses one."""
    container = named(production, "Deployment", f"{FULL}-{service.short}")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": service.port} | ({"ops": service.ops_port} if service.ops_port else {})
    env = env_of(container)
    assert env["SERVICE_NAME"]["value"] == service.name
    assert env["HTTP_PORT"]["value"] == str(service.port)
    assert ("DATABASE_PASSWORD" in env) == service.database
    # A service without a database gets no database settings at all: none to misuse, none to render wrong.
    assert any(name.startswith("DATABASE_") for name in env) == service.database
    assert env.get("KAFKA_CONSUMER_GROUP", {}).get("value") == service.group


def test_network_policies_admit_exactly_the_registered_users(production) -> None:
    """PostgreSQL admits the services that need the database (and replica), Kafka those that need Kafka."""

    def admitted(name: str) -> set[str]:
        policy = named(production, "NetworkPolicy", name)
        return set(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"])

    database = {s.short for s in services.SERVICES if s.database}
    replica = {s.short for s in services.SERVICES if s.replica}
    kafka = {s.short for s in services.SERVICES if s.kafka}
    assert admitted(f"{FULL}-postgresql-primary") - {"migrations", "postgresql-read"} == database
    assert admitted(f"{FULL}-postgresql-read") - {"migrations"} == replica
    assert admitted(f"{FULL}-kafka") - {"topics", "kafka"} == kafka


def test_consumers_scale_on_their_registered_topic_and_group(production) -> None:
    """KEDA scales each consumer on the lag of the registry's topic and group."""
    scaled = {o["metadata"]["name"]: o for o in by_kind(production, "ScaledObject")}
    assert set(scaled) == {f"{FULL}-{s.short}" for s in services.CONSUMERS}
    for service in services.CONSUMERS:
        trigger = scaled[f"{FULL}-{service.short}"]["spec"]["triggers"][0]["metadata"]
        assert trigger["topic"].endswith(service.consumes.value) and trigger["consumerGroup"] == service.group
