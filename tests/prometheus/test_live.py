"""The session stack's /metrics against what the rules and dashboards read, scraped directly and by a real Prometheus.

The Prometheus server runs on loopback on a free port with its own data directory, scrapes every
service of the registry each second (each target labelled with a namespace and a pod, as the
Prometheus Operator labels them), and loads the rules the chart renders.
"""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fastloans import services as registry
from fastloans.contracts import REVIEWS_PATH
from fastloans.events import ApplicationDecided
from fastloans.metrics import DEAD_LETTERS, MESSAGES_PROCESSED
from fastloans.policy import load_default_policy, reason_catalogue
from tests.prometheus.conftest import (
    DASHBOARDS,
    LABEL_VALUES,
    metric_names,
    panel_queries,
    rules_of,
    variables,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "fastloans-e2e"
SCRAPE_SECONDS = 1
# Grafana's $__rate_interval is at least four scrape intervals; a little more, so that a missed scrape is no gap.
RATE_INTERVAL = f"{10 * SCRAPE_SECONDS}s"


def scraped_names(port: int) -> set[str]:
    """The names of the samples (not merely the declared families) one /metrics page has."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def used_names(rules: Path) -> dict[str, set[str]]:
    """Per dashboard and for the rules: the fastloans_ names their expressions and variable queries read."""
    used = {
        path.name: set().union(*(metric_names(q.expr) for q in panel_queries() if q.dashboard == path.name))
        for path in DASHBOARDS
    }
    for path in DASHBOARDS:
        for variable in variables(path):
            if variable["type"] == "query":
                used[path.name] |= metric_names(variable["definition"])
    used["rules"] = set().union(*(metric_names(rule["expr"]) for rule in rules_of(rules)))
    return used


@pytest.fixture(scope="module")
def a_reviewer(infra, services) -> str:
    """A reviewer whose key has made one request: their override series exist (at zero) from then on.

    The one metric whose series need more than a running stack: it is labelled with the reviewer, so its series
    exist once a reviewer does (the gateway creates them at zero when it first authenticates a `review` key).
    """
    from fastloans.tenants import issue_key

    async def issue() -> str:
        conn = await asyncpg.connect(infra.postgres.primary_url)
        try:
            return (await issue_key(conn, "prometheus-reviews", scopes=("review",), actor="reviewer-prom")).key
        finally:
            await conn.close()

    key = asyncio.run(issue())
    answer = httpx.get(
        f"http://127.0.0.1:{infra.ports.services['gateway']}{REVIEWS_PATH}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return "reviewer-prom"


def test_every_metric_the_rules_and_dashboards_read_has_samples(
    infra, services, a_reviewer: str, rendered_rules: Path
) -> None:
    """A scrape of every service has samples of every name used, with no traffic needed (series created at zero)
    beyond a reviewer's key having been used once (`a_reviewer`)."""
    live = set().union(*(scraped_names(infra.ports.ops_port(s.short)) for s in registry.SERVICES))
    used = used_names(rendered_rules)
    assert all(used.values())
    missing = {where: sorted(names - live) for where, names in used.items() if names - live}
    assert not missing, f"read by the rules or dashboards, but no service exports a sample: {missing}"


def test_consumer_series_exist_at_zero_for_their_own_topic(infra, services) -> None:
    """Each consumer exports its processed and dead-letter counters for the topic the registry says it consumes."""
    for service in registry.CONSUMERS:
        assert service.consumes is not None
        text = httpx.get(f"http://127.0.0.1:{infra.ports.ops_port(service.short)}/metrics", timeout=10).text
        labels = {
            (s.name, s.labels.get("consumer"), s.labels.get("topic"))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        for counter in (MESSAGES_PROCESSED, DEAD_LETTERS):
            name = counter.describe()[0].name + "_total"
            assert (name, service.name, service.consumes.value) in labels, f"{service.name}: {name}"


def test_decision_series_exist_at_zero_for_every_outcome_and_reason(infra, services) -> None:
    """The recorder exports every outcome under the policy the deciders run and every catalogued reason code."""
    text = httpx.get(f"http://127.0.0.1:{infra.ports.ops_port(registry.RECORDER.short)}/metrics", timeout=10).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    version = load_default_policy().version  # the test stack sets no POLICY_FILE
    decided = {
        s.labels["outcome"]
        for s in samples
        if s.name == "fastloans_decisions_total" and s.labels["policy_version"] == version
    }
    reasons = {s.labels["code"] for s in samples if s.name == "fastloans_decision_reasons_total"}
    assert decided >= set(get_args(ApplicationDecided.model_fields["outcome"].annotation))
    assert reasons >= set(reason_catalogue())


def test_http_series_exist_at_zero_for_every_documented_answer(infra, services) -> None:
    """The gateway exports each operation and status its OpenAPI document lists (the test environment serves it)."""
    schema = httpx.get(f"http://127.0.0.1:{infra.ports.services['gateway']}/openapi.json", timeout=10).json()
    text = httpx.get(f"http://127.0.0.1:{infra.ports.ops_port('gateway')}/metrics", timeout=10).text
    requests = {
        (s.labels["route"], s.labels["method"], s.labels["status"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fastloans_http_requests_total"
    }
    documented = {
        (route, method.upper(), status)
        for route, operations in schema["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }
    assert len(documented) > 50
    assert not sorted(documented - requests)


# -- a real Prometheus ----------------------------------------------------------


class PrometheusServer:
    """A Prometheus process of this test and its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the `data` of a success, else the test fails with Prometheus's error."""
        response = self.http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector (an error, such as a parse error, fails the test)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return data["result"]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last result otherwise."""
    deadline = time.monotonic() + timeout
    result = check()
    while not result and time.monotonic() < deadline:
        time.sleep(0.5)
        result = check()
    if not result:
        pytest.fail(f"gave up after {timeout:.0f}s waiting for {what}")
    return result


@pytest.fixture(scope="module")
def prometheus(
    infra,
    services,
    a_reviewer: str,
    prometheus_binary: str,
    rendered_rules: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    """Prometheus scraping every service of the session stack each second and evaluating the chart's rules."""
    from fastloans_dev.devstack.system import free_port

    home = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(rendered_rules)],
        "scrape_configs": [
            {
                "job_name": service.name,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{infra.ports.ops_port(service.short)}"],
                        "labels": {"namespace": NAMESPACE, "pod": f"{service.name}-0"},
                    }
                ],
            }
            for service in registry.SERVICES
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited ({process.returncode}): {(home / 'prometheus.log').read_text()[-2000:]}")
        try:
            return server.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "Prometheus to be ready")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def substitute(expr: str, dashboard: str) -> str:
    """A dashboard expression with Grafana's variables filled in: our namespace, the "All" value of the others."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$namespace", NAMESPACE)
    (path,) = [p for p in DASHBOARDS if p.name == dashboard]
    for variable in variables(path):
        if variable["type"] == "query" and variable["name"] != "namespace":
            assert variable.get("includeAll"), f"{dashboard}: fill in variable {variable['name']} here"
            expr = expr.replace(f"${variable['name']}", variable.get("allValue") or ".*")
    assert "$" not in expr, f"{dashboard}: a variable is left in {expr}"
    return expr


def test_prometheus_scrapes_every_service(prometheus: PrometheusServer) -> None:
    """Every service of the registry is a healthy target."""

    def up() -> dict[str, str]:
        targets = prometheus.api("targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health if all(h == "up" for h in health.values()) and len(health) == len(registry.SERVICES) else {}

    health = wait_for(up, "every service to be scraped")
    assert set(health) == {s.name for s in registry.SERVICES}


def test_every_dashboard_query_returns_data(prometheus: PrometheusServer) -> None:
    """Each panel query (variables filled in) parses and returns at least one sample; each variable has values."""
    queries = panel_queries()
    assert queries

    def empty() -> list[str]:
        return [
            f"{q.dashboard}: {q.title}: {q.expr}"
            for q in queries
            if not prometheus.query(substitute(q.expr, q.dashboard))
        ]

    # Rates need two scrapes inside the window, consumer lag is sampled every 5 seconds: wait for them.
    wait_for(lambda: not empty(), "every dashboard query to return data", timeout=90)
    for path in DASHBOARDS:
        for variable in variables(path):
            if variable["type"] != "query":
                continue
            match = LABEL_VALUES.match(variable["definition"])
            assert match, f"{path.name}: variable {variable['name']} is not a label_values() query"
            params: dict[str, Any] = {}
            if match["selector"]:
                params["match[]"] = substitute(match["selector"], path.name)
            values = prometheus.api(f"label/{match['label']}/values", **params)
            assert values, f"{path.name}: variable {variable['name']} has no values"
            if match["label"] == "namespace":
                assert NAMESPACE in values


def test_every_rule_parses_evaluates_and_reads_existing_series(
    prometheus: PrometheusServer, rendered_rules: Path
) -> None:
    """Each rule's expression is accepted by the query API, each name in it has series, each evaluates without error."""
    # An alert's expression is rightly empty while the stack is healthy: its data is checked name by name.
    rules = rules_of(rendered_rules)
    for rule in rules:
        prometheus.query(rule["expr"])  # a parse or evaluation error fails here
        for name in metric_names(rule["expr"]):
            assert prometheus.query(f"count({name})"), f"{rule.get('alert', rule.get('record'))}: no series of {name}"

    def evaluated() -> list[dict]:
        loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        done = [r for r in loaded if not r["lastEvaluation"].startswith("0001-")]
        return loaded if len(done) == len(rules) else []

    loaded = wait_for(evaluated, "every rule to be evaluated once")
    assert len(loaded) == len(rules)
    assert not [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]


def test_a_process_that_never_sampled_the_review_queue_exports_no_deadline(
    prometheus: PrometheusServer, rendered_rules: Path
) -> None:
    """Only the relay samples the review queue. Every gateway process exports +Inf as the least time left (one
    exporting 0 would page), so the deadline alert's condition holds only for a case that is close to its
    deadline, and the suite's cases are due weeks ahead. (Other tests' cases share this database: the relay's
    own reading is whatever they left, never 0 by default.)"""
    left = wait_for(lambda: prometheus.query("fastloans_review_least_seconds_left"), "the review gauges")
    assert {s["metric"]["job"] for s in left} >= {"fastloans-gateway", "fastloans-relay"}
    assert {float(s["value"][1]) for s in left if s["metric"]["job"] == "fastloans-gateway"} == {math.inf}
    assert all(float(s["value"][1]) > 3 * 86400 for s in left), left
    alerts = {rule["alert"]: rule["expr"] for rule in rules_of(rendered_rules) if "alert" in rule}
    assert prometheus.query(alerts["FastLoansReviewDeadlineNear"]) == []  # not even pending


BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def label_names(expr: str) -> set[str]:
    """The label names an expression groups by or matches on."""
    names = {m.strip() for group in BY.findall(expr) for m in group.split(",") if m.strip()}
    return names | set(MATCHER.findall(expr))


def test_labels_the_queries_use_exist_on_their_series(prometheus: PrometheusServer, rendered_rules: Path) -> None:
    """Every label a panel or rule groups by or matches on is on some series of the metrics it reads."""
    expressions = [(f"{q.dashboard}: {q.title}", q.expr) for q in panel_queries()]
    expressions += [(rule.get("alert", rule.get("record", "")), rule["expr"]) for rule in rules_of(rendered_rules)]
    wrong = []
    for where, expr in expressions:
        labels: set[str] = set()
        for name in metric_names(expr):
            for series in prometheus.api("series", **{"match[]": name}):
                labels |= set(series)
        wrong += [f"{where}: {label}" for label in label_names(expr) - labels]
    assert not wrong, f"labels no series of the metric has: {wrong}"
