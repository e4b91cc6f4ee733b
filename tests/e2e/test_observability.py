"""Metrics, logs, error reports and traces of the running services, checked against what they really emit.

The Sentry and APM tests run a second, instrumented copy of every service on
its own ports and topic prefix (so the shared `services` stay untouched), with
a local HTTP endpoint standing in for the Sentry DSN and the APM server.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import re
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastloans import services as registry
from fastloans.events import Topic
from fastloans.kafka import create_topics, make_producer, send_all
from fastloans.services import by_short
from tests.conftest import extra_instances

ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = ROOT / "charts" / "fast-loans" / "files"
URL = "/api/v1/loan_applications"
PIPELINE = ("gateway", "relay", "risk", "approval", "recorder")

# Distinctive applicant data: none of it may appear in any log line, report or trace.
NAME = "Xanthippe Vorlaender-Quist"
INCOME = "7351.93"
DEBT = "1123.47"
AMOUNT = "2468.13"
APPLICATION = {
    "applicant_name": NAME,
    "credit_score": 742,
    "loan_amount": AMOUNT,
    "loan_purpose": "home_improvement",
    "monthly_income": INCOME,
    "monthly_debt": DEBT,
    "employment_status": "employed",
}
SECRETS = (NAME, INCOME, DEBT, AMOUNT, NAME.split()[1])

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scrape:
    """One /metrics page: every sample by name and labels, and the family names it declares."""

    samples: Samples
    families: set[str]  # declared, with the suffixes of their samples

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def has(self, name: str) -> bool:
        """Whether the page has at least one sample called `name`."""
        return any(n == name for n, _ in self.samples)

    def names(self) -> set[str]:
        """Every sample and family name on the page."""
        return {n for n, _ in self.samples} | self.families


def scrape(port: int) -> Scrape:
    """Fetch and parse one service's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: Samples = {}
    families = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        families.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0.0) + sample.value
    return Scrape(samples, families)


def scrape_all(ports: dict[str, int]) -> dict[str, Scrape]:
    """Scrape every service of the pipeline."""
    return {name: scrape(ports[name]) for name in PIPELINE}


async def wait_decided(http: httpx.AsyncClient, application_id: str) -> dict:
    """The application once it has a decision."""
    for _ in range(20):
        response = await http.get(f"{URL}/{application_id}", params={"wait": 5})
        assert response.status_code == 200, response.text
        if response.json()["status"] != "pending":
            return response.json()
    pytest.fail(f"application {application_id} was not decided")


async def publish_poison(settings, topic: Topic, application_id: uuid.UUID) -> None:
    """A message on `topic` that is JSON but not a valid event, carrying applicant data it must not leak."""
    body = {
        "type": "ApplicationSubmitted" if topic is Topic.SUBMITTED else "ApplicationDecided",
        "version": 1,
        "application_id": str(application_id),
        "tenant_id": str(uuid.uuid4()),
        "revision": 1,
        "submitted_at": datetime.now(UTC).isoformat(),
        "applicant_name": NAME,
        "monthly_income": INCOME,
    }
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_all(producer, [(settings.topic(topic.value), str(application_id).encode(), orjson.dumps(body), [])])
    finally:
        await producer.stop()


def poll(check, what: str, attempts: int = 60, interval: float = 0.5):
    """Call `check` until it returns something truthy; fail naming `what` otherwise."""
    import time

    for _ in range(attempts):
        result = check()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"gave up waiting for {what}")


# -- metrics ----------------------------------------------------------------


@dataclass
class Traffic:
    """Scrapes before and after one application and one poison message went through the shared services."""

    before: dict[str, Scrape]
    after: dict[str, Scrape]
    application: dict
    poison_id: uuid.UUID


@pytest.fixture(scope="module")
async def traffic(services, infra, tenant_key: str) -> Traffic:
    """Scrape, push an application and a poison message through, then scrape again once the gauges report."""
    ports = {name: infra.ports.ops_port(name) for name in infra.ports.services}
    before = scrape_all(ports)
    poison_id = uuid.uuid4()
    await publish_poison(infra.settings(), Topic.SUBMITTED, poison_id)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{infra.ports.services['gateway']}",
        headers={"Authorization": f"Bearer {tenant_key}"},
        timeout=40,
    ) as http:
        created = await http.post(URL, json=APPLICATION)
        assert created.status_code == 202, created.text
        application = await wait_decided(http, created.json()["id"])
        assert (await http.get(f"{URL}/{uuid.uuid4()}")).status_code == 404

    def settled() -> dict[str, Scrape] | None:
        after = scrape_all(ports)
        ready = (
            after["risk"].value("fastloans_dead_letters_total") > before["risk"].value("fastloans_dead_letters_total")
            and all(after[c].has("fastloans_consumer_lag") for c in ("risk", "approval", "recorder"))
            and ("fastloans_outbox_oldest_age_seconds", frozenset()) in after["relay"].samples
            # The pool gauges are sampled every 5 s: wait for a sample taken since the services used their pools.
            and all(
                after[s.short].value("fastloans_db_pool_connections", pool="primary") >= 1
                for s in registry.SERVICES
                if s.database and s.short in after
            )
        )
        return after if ready else None

    after = await asyncio.to_thread(poll, settled, "the dead letter and the lag and outbox gauges", 60, 0.5)
    return Traffic(before, after, application, poison_id)


def moved(traffic: Traffic, service: str, name: str, **labels: str) -> float:
    """How much a counter or histogram count grew during the traffic."""
    return traffic.after[service].value(name, **labels) - traffic.before[service].value(name, **labels)


def test_gateway_metrics_count_requests_by_route_and_status(traffic: Traffic) -> None:
    """The POST, its 202 and its latency are counted under the route template."""
    route = {"route": URL, "method": "POST"}
    assert moved(traffic, "gateway", "fastloans_http_requests_total", status="202", **route) >= 1
    assert moved(traffic, "gateway", "fastloans_http_request_duration_seconds_count", **route) >= 1
    assert (
        moved(traffic, "gateway", "fastloans_http_errors_total", route=f"{URL}/{{application_id}}", status="404") >= 1
    )
    gateway = traffic.after["gateway"]
    assert gateway.value("fastloans_db_pool_connections", pool="primary") >= 1
    assert ("fastloans_db_pool_connections", frozenset({("pool", "replica")})) in gateway.samples
    assert ("fastloans_replica_lag_seconds", frozenset()) in gateway.samples


def test_pipeline_metrics_move_for_every_stage(traffic: Traffic) -> None:
    """Each consumer counts its messages and batch latency; the relay counts what it published."""
    for service, topic in (("risk", Topic.SUBMITTED), ("approval", Topic.SCORED), ("recorder", Topic.DECIDED)):
        consumer = f"fastloans-{service}"
        assert moved(traffic, service, "fastloans_messages_processed_total", consumer=consumer, topic=topic.value) >= 1
        assert moved(traffic, service, "fastloans_message_processing_seconds_count", consumer=consumer) >= 1
        partitions = {
            dict(labels)["partition"]
            for name, labels in traffic.after[service].samples
            if name == "fastloans_consumer_lag" and dict(labels)["topic"] == topic.value
        }
        assert partitions == {"0", "1", "2"}, f"{service} reports lag for partitions {partitions}"
        pools = {
            dict(labels)["pool"]
            for name, labels in traffic.after[service].samples
            if name == "fastloans_db_pool_connections"
        }
        if by_short(service).database:
            assert traffic.after[service].value("fastloans_db_pool_connections", pool="primary") >= 1
        else:  # risk and approval open no database at all
            assert not pools, f"{service} has database pools {pools}"
    assert moved(traffic, "relay", "fastloans_outbox_published_total") >= 1
    assert ("fastloans_outbox_backlog", frozenset()) in traffic.after["relay"].samples


def test_dead_letters_and_failures_are_counted(traffic: Traffic) -> None:
    """The poison message is dead-lettered by risk and counted with its source topic."""
    assert (
        moved(traffic, "risk", "fastloans_dead_letters_total", consumer="fastloans-risk", topic=Topic.SUBMITTED.value)
        >= 1
    )


def test_decision_metrics(traffic: Traffic) -> None:
    """The decision is counted by outcome and policy version, and its submission-to-decision time observed."""
    app = traffic.application
    assert (
        moved(
            traffic,
            "recorder",
            "fastloans_decisions_total",
            outcome=app["status"],
            policy_version=app["policy_version"],
        )
        >= 1
    )
    assert moved(traffic, "recorder", "fastloans_submission_to_decision_seconds_count") >= 1


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"\bfastloans_[a-z0-9_]+", text))


def test_dashboards_and_alerts_use_only_metrics_that_exist(traffic: Traffic, infra) -> None:
    """Every metric in the Grafana dashboards and the alert rules is in a live scrape (of any registered service)."""
    others = [scrape(infra.ports.ops_port(s.short)) for s in registry.SERVICES if s.short not in traffic.after]
    live = set().union(*(s.names() for s in [*traffic.after.values(), *others]))
    dashboards = sorted((CHART_FILES / "dashboards").glob("*.json"))
    assert len(dashboards) >= 4
    used = {}
    for path in [*dashboards, CHART_FILES / "prometheus-rules.yaml"]:
        names = _names_in(path.read_text())
        assert names, f"{path.name} uses no fastloans_ metric"
        used[path.name] = names
    missing = {name: sorted(names - live) for name, names in used.items() if names - live}
    assert not missing, f"metrics used but not exported: {missing}"


def test_alert_rules_each_have_a_runbook() -> None:
    """Every alert names its runbook section, and that section exists in docs/operating.md."""
    import yaml

    rules = [
        r
        for g in yaml.safe_load((CHART_FILES / "prometheus-rules.yaml").read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    guide = (ROOT / "docs" / "operating.md").read_text().lower()
    assert len(rules) >= 6
    for rule in rules:
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operating.md#{rule['alert'].lower()}"
        assert f"### {rule['alert'].lower()}" in guide, f"docs/operating.md has no section for {rule['alert']}"


def test_consumers_are_ready_only_with_partitions_and_database(infra, services) -> None:
    """Each consumer's /readyz checks its partitions, and the primary where it uses one (the recorder)."""
    for name, checks in (
        ("risk", {"kafka_partitions": True}),
        ("approval", {"kafka_partitions": True}),
        ("recorder", {"kafka_partitions": True, "database": True}),
    ):
        body = httpx.get(f"http://127.0.0.1:{infra.ports.services[name]}/readyz", timeout=10).json()
        assert body == {"status": "ready", "checks": checks}, name


def test_gateway_metrics_add_up_across_worker_processes(infra, services, tmp_path: Path) -> None:
    """With WEB_CONCURRENCY=2 the gateway's /metrics counts the requests of both processes."""
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    workers = {"WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with extra_instances(infra, "gateway", ["gateway-multiprocess"], **workers) as (child,):
        port = child.ops_port

        async def burst() -> None:
            # Separate connections, concurrently: the two processes share the listening socket.
            async def one() -> None:
                async with httpx.AsyncClient(timeout=30) as http:
                    assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200

            await asyncio.gather(*(one() for _ in range(40)))

        before = scrape(port).value("fastloans_http_requests_total", route="/readyz")
        asyncio.run(burst())
        after = scrape(port).value("fastloans_http_requests_total", route="/readyz")
        assert after - before == 40
        writers = {p.name.rsplit("_", 1)[-1] for p in multiproc.glob("counter_*.db")}
        assert len(writers) >= 2, f"only {writers} wrote metrics"


# -- logs ---------------------------------------------------------------------


def _service_log_lines(log_dir: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            yield path.name, line


def test_no_log_line_holds_applicant_data(traffic: Traffic, infra) -> None:
    """After a distinctive application went through, no log file of the run mentions its name, income or amounts."""
    leaks = [
        (name, line[:200])
        for name, line in _service_log_lines(infra.log_dir)
        if any(secret in line for secret in SECRETS)
    ]
    assert not leaks


def test_service_logs_are_ecs_json_naming_the_application(traffic: Traffic, infra) -> None:
    """Service logs are ECS JSON; the application appears in the gateway's and every stage's lines."""
    application_id = traffic.application["id"]
    seen = set()
    for name in PIPELINE:
        for line in (infra.log_dir / f"{name}.log").read_text().splitlines():
            assert line.startswith("{"), f"{name}.log: {line[:300]}"
            record = json.loads(line)
            assert {"@timestamp", "log.level", "message", "ecs.version"} <= set(record), line
            assert record["service"]["name"] == f"fastloans-{name}", line
            if record.get("labels", {}).get("application_id") == application_id:
                seen.add(name)
    assert seen == set(PIPELINE)


# -- Sentry and Elastic APM -----------------------------------------------------


@dataclass
class Collector:
    """A local HTTP endpoint that stands in for Sentry's envelope endpoint and the APM server's intake."""

    port: int = 0
    envelopes: list[bytes] = field(default_factory=list)
    apm_events: list[tuple[dict, dict]] = field(default_factory=list)  # (metadata, event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transactions(self) -> list[tuple[str, dict]]:
        """(service name, transaction) for every APM transaction received."""
        with self.lock:
            return [(m["service"]["name"], e["transaction"]) for m, e in self.apm_events if "transaction" in e]

    def sentry_events(self) -> list[dict]:
        """Every error event in the Sentry envelopes received."""
        with self.lock:
            raw = list(self.envelopes)
        events = []
        for envelope in raw:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    events.append(json.loads(payload))
        return events


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding == "br":  # sentry-sdk compresses with brotli when the module is installed (the PDF stack brings it)
        import brotli

        return bytes(brotli.decompress(body))
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    """The fake Sentry + APM endpoint on a free loopback port."""
    store = Collector()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"{}") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/":
                self._reply(200, b'{"version": "8.15.0", "build_date": "2024-08-01T00:00:00Z", "build_sha": "x"}')
            else:
                self._reply(404)

        def do_POST(self) -> None:
            body = _decode(
                self.rfile.read(int(self.headers.get("Content-Length", 0))), self.headers.get("Content-Encoding")
            )
            if self.path.startswith("/intake/v2/events"):
                metadata: dict = {}
                with store.lock:
                    for line in body.splitlines():
                        event = json.loads(line)
                        if "metadata" in event:
                            metadata = event["metadata"]
                        else:
                            store.apm_events.append((metadata, event))
                self._reply(202, b"")
            elif self.path.startswith("/api/1/envelope"):
                with store.lock:
                    store.envelopes.append(body)
                self._reply(200, b'{"id": "0"}')
            else:
                self._reply(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    store.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store
    server.shutdown()
    server.server_close()


PREFIX = "obs-"


@pytest.fixture(scope="module")
def instrumented(services, infra, collector: Collector) -> Iterator[dict[str, int]]:
    """Every service again, with SENTRY_DSN and ELASTIC_APM_SERVER_URL, on its own ports, topics and groups.

    The shared relay is paused meanwhile: relays share the outbox, and this
    test needs the instrumented relay to publish its application.
    """
    from fastloans_dev.devstack.stack import ServiceSet
    from fastloans_dev.devstack.system import free_port

    settings = infra.settings().model_copy(update={"kafka_topic_prefix": PREFIX})
    asyncio.run(create_topics(settings, partitions=3, replication_factor=infra.kafka.replication))
    service_set = ServiceSet(
        infra,
        extra_env={
            "ENVIRONMENT": "test",
            "AUTH_CACHE_SECONDS": "0",
            "RATE_LIMIT_PER_SECOND": "0",
            "KAFKA_TOPIC_PREFIX": PREFIX,
            "SENTRY_DSN": f"http://public@127.0.0.1:{collector.port}/1",
            "SENTRY_RELEASE": "fastloans@test",
            "ELASTIC_APM_SERVER_URL": f"http://127.0.0.1:{collector.port}",
            "ELASTIC_APM_API_REQUEST_TIME": "200ms",
            "ELASTIC_APM_METRICS_INTERVAL": "0s",
            "ELASTIC_APM_CENTRAL_CONFIG": "false",
            "ELASTIC_APM_CLOUD_PROVIDER": "none",
        },
    )
    services.children["relay"].stop(timeout=30)
    ports = {}
    try:
        for name in PIPELINE:
            service_set.extra_env["KAFKA_CONSUMER_GROUP"] = f"{PREFIX}{name}"
            child = service_set.start(name, instance=f"{PREFIX}{name}", port=free_port())
            ports[name] = child.port  # type: ignore[attr-defined]
        for child in service_set.children.values():
            service_set.wait_ready(child)
        yield ports
    finally:
        service_set.stop_all()
        services.start("relay")
        services.wait_ready(services.children["relay"])


async def test_consumer_errors_reach_sentry_tagged_without_applicant_data(
    instrumented: dict[str, int], infra, collector: Collector
) -> None:
    """A poison message in the recorder is reported once, tagged with its application id, with no applicant data."""
    application_id = uuid.uuid4()
    settings = infra.settings().model_copy(update={"kafka_topic_prefix": PREFIX})
    await publish_poison(settings, Topic.DECIDED, application_id)

    def reported() -> list[dict]:
        return [e for e in collector.sentry_events() if e.get("tags", {}).get("application_id") == str(application_id)]

    events = await asyncio.to_thread(poll, reported, "the Sentry event")
    event = events[0]
    assert event["environment"] == "test" and event["release"] == "fastloans@test"
    assert event["tags"]["service"] == "fastloans-recorder"
    assert event["exception"]["values"][-1]["type"] == "EventDecodeError"
    with collector.lock:
        raw = b"".join(collector.envelopes)
    for secret in SECRETS:
        assert secret.encode() not in raw


async def test_one_trace_spans_gateway_relay_and_every_stage(
    instrumented: dict[str, int], infra, tenant_key: str, collector: Collector
) -> None:
    """One application gives one trace: gateway → relay → risk → approval → recorder, each a child of the last."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{instrumented['gateway']}",
        headers={"Authorization": f"Bearer {tenant_key}"},
        timeout=40,
    ) as http:
        created = await http.post(URL, json=APPLICATION)
        assert created.status_code == 202, created.text
        application_id = created.json()["id"]
        await wait_decided(http, application_id)

    def chain() -> dict[str, dict] | None:
        # The gateway's GETs that waited for the decision are labelled too, each in a trace of its own.
        labelled = {
            service: t
            for service, t in collector.transactions()
            if (t.get("context") or {}).get("tags", {}).get("application_id") == application_id
            and t["name"] != f"GET {URL}/{{application_id}}"
        }
        return labelled if len(labelled) == len(PIPELINE) else None

    found = await asyncio.to_thread(poll, chain, "a transaction from every service")
    by_stage = [found[f"fastloans-{name}"] for name in PIPELINE]
    assert len({t["trace_id"] for t in by_stage}) == 1, {
        s: (t["trace_id"], t["id"], t.get("parent_id")) for s, t in found.items()
    }
    assert by_stage[0]["name"] == f"POST {URL}" and by_stage[0]["outcome"] == "success"
    for parent, child in itertools.pairwise(by_stage[1:]):
        assert child["parent_id"] == parent["id"]
    with collector.lock:
        raw = json.dumps([e for _, e in collector.apm_events])
    for secret in SECRETS:
        assert secret not in raw
    risk_lines = [json.loads(line) for line in (infra.log_dir / f"{PREFIX}risk.log").read_text().splitlines()]
    traced = [r for r in risk_lines if r.get("labels", {}).get("application_id") == application_id]
    assert traced and traced[0]["trace"]["id"] == by_stage[0]["trace_id"]
    assert traced[0]["transaction"]["id"] == found["fastloans-risk"]["id"]


def test_kibana_saved_objects_use_fields_the_logs_have(traffic: Traffic, instrumented: dict[str, int], infra) -> None:
    """The Kibana saved searches' columns exist in the log lines of this run (plain and traced services)."""
    objects = [
        json.loads(line)
        for path in sorted((CHART_FILES / "kibana").glob("*.ndjson"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    kinds = {o["type"] for o in objects}
    assert {"index-pattern", "search"} <= kinds
    columns = {c for o in objects if o["type"] == "search" for c in o["attributes"]["columns"]}
    fields: set[str] = set()

    def flatten(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}{key}.", inner)
        else:
            fields.add(prefix[:-1])

    for _, line in _service_log_lines(infra.log_dir):
        if line.startswith("{"):
            flatten("", json.loads(line))
    assert columns and columns <= fields, f"columns not in any log line: {sorted(columns - fields)}"
