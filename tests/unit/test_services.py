"""The service registry, and the places that must agree with it: console scripts, Procfile, stack, workers."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import tomllib
from pathlib import Path

import pytest

from fastloans import services
from fastloans.events import Topic

ROOT = Path(__file__).resolve().parents[2]
EVERY_SERVICE = pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)


def test_entries_are_frozen_and_unique() -> None:
    """Names, ports and consumer groups are unique; an entry cannot be changed at run time."""
    names = [s.short for s in services.SERVICES]
    ports = [p for s in services.SERVICES for p in (s.port, s.ops_port) if p is not None]
    groups = [s.group for s in services.CONSUMERS]
    assert len(set(names)) == len(names) and len(set(ports)) == len(ports) and len(set(groups)) == len(groups)
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.RISK.port = 1  # type: ignore[misc]
    assert services.by_short("relay") is services.RELAY
    with pytest.raises(KeyError):
        services.by_short("nope")


def test_the_pipeline_is_connected() -> None:
    """Every topic a consumer reads is produced by another service, and each consumer reads one topic."""
    produced = {t for s in services.SERVICES for t in s.produces}
    for consumer in services.CONSUMERS:
        assert consumer.consumes in produced, consumer.short
    assert {s.consumes for s in services.CONSUMERS} == set(Topic) - {Topic.DLQ}


@EVERY_SERVICE
def test_console_scripts_match_the_registry(service: services.Service) -> None:
    """The project's pyproject.toml declares the service's command with its entry point, and its package."""
    project = tomllib.loads((ROOT / service.project / "pyproject.toml").read_text())
    assert project["project"]["scripts"][service.command] == service.entry_point
    assert service.package in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert importlib.util.find_spec(service.module) is not None, service.module


def test_no_console_script_outside_the_registry() -> None:
    """Every fastloans-* command of the services' projects is a registered service."""
    declared = set()
    for path in (ROOT / "services").glob("*/pyproject.toml"):
        declared |= set(tomllib.loads(path.read_text())["project"].get("scripts", {}))
    assert declared == {s.command for s in services.SERVICES}


def test_procfile_is_the_registry() -> None:
    """The Procfile lists exactly the registered processes (the gateway as `web`)."""
    assert (ROOT / "Procfile").read_text() == services.procfile()


def test_local_stack_derives_from_the_registry() -> None:
    """`make up` starts every registered service on its port; the gateway's ops port too."""
    from fastloans_dev.devstack.stack import OPS_PORTS, SERVICES

    assert {s.short: (s.command, s.port) for s in services.SERVICES} == SERVICES
    assert {"gateway": services.GATEWAY.ops_port} == OPS_PORTS


@pytest.mark.parametrize("service", services.CONSUMERS, ids=lambda s: s.short)
def test_workers_read_and_write_the_registered_topics(service: services.Service) -> None:
    """Each consumer's worker class reads the topic the registry names and produces one it declares."""
    module = importlib.import_module(service.module)
    workers = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and v.__module__ == module.__name__ and hasattr(v, "input_topic")
    ]
    assert len(workers) == 1, workers
    worker = workers[0]
    assert worker.input_topic is service.consumes
    if hasattr(worker, "output_topic"):
        assert worker.output_topic in service.produces


def test_bench_and_chaos_derive_from_the_registry() -> None:
    """The consumer groups the benchmark and the chaos runs watch are the registered ones."""
    from bench.probes import GROUPS as BENCH_GROUPS
    from tests.chaos.fleet import CONSUMERS, GROUPS

    expected = {s.group: s.consumes.value for s in services.CONSUMERS if s.consumes}
    assert BENCH_GROUPS == GROUPS == expected
    assert set(CONSUMERS) == {"risk", "approval", "recorder", "webhooks"}


def test_images_and_their_ports() -> None:
    """One image per project; the relay runs the gateway's, which exposes the API, ops and relay ports."""
    assert set(services.images()) == {"gateway", "risk", "approval", "recorder", "webhooks"}
    assert services.images()["gateway"] == (services.GATEWAY, services.RELAY)
    assert services.image_ports("gateway") == [8000, 9180, 8004]
    assert services.image_ports("risk") == [8001]
    assert services.image_ports("webhooks") == [8005]
    for image in services.images():
        assert (ROOT / "services" / image / "pyproject.toml").is_file()
