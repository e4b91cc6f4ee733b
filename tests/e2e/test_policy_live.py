"""Live policy management on a pipeline of its own: hot reload from a ConfigMap-style mount, a refused
invalid file, and the shadow challenger recorded beside the champion and reported by the API and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastloans.policy import seed_policy_text
from fastloans_dev.devstack.system import Child
from tests.conftest import issue_test_key
from tests.e2e.pipelines import pipeline_of_its_own
from tests.e2e.test_pipeline import APPROVED, REJECTED, decided, submit

SEED = seed_policy_text()
LIVE_1 = SEED.replace("version: seed-1", "version: live-1")
# The threshold change of the worked example: moderate risk is approved below 50 instead of 60.
LIVE_2 = LIVE_1.replace("version: live-1", "version: live-2").replace(
    "when: {score_below: 60, loan_purpose_not_in", "when: {score_below: 50, loan_purpose_not_in"
)
# A gap in the credit-score bands: refused by validation.
BROKEN = LIVE_1.replace("version: live-1", "version: live-3").replace('"[600, 700)"', '"[650, 700)"')
# The challenger refers what the champion approves with moderate risk.
STRICT = SEED.replace("version: seed-1", "version: strict-1").replace(
    "  - id: approve-moderate-risk\n    outcome: approve\n", "  - id: refer-moderate-risk\n    outcome: refer\n"
)

SCORE_50 = {**APPROVED, "employment_status": "self-employed", "loan_purpose": "business", "loan_amount": "3000"}
SCORE_40 = {**APPROVED, "credit_score": 650, "monthly_debt": "1800.00"}  # approved by live-1 and live-2
POLICY_SERVICES = ("risk", "approval")


class ConfigMapMount:
    """A folder laid out as the kubelet mounts a ConfigMap: `policy.yaml -> ..data/policy.yaml`, `..data -> ..<n>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    def publish(self, files: dict[str, str]) -> None:
        """Write a new generation and swap the `..data` symlink to it atomically, as the kubelet does."""
        self.generation += 1
        folder = self.root / f"..generation_{self.generation}"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        os.symlink(folder.name, self.root / "..data_tmp")
        os.replace(self.root / "..data_tmp", self.root / "..data")
        for name in files:
            if not (self.root / name).is_symlink():
                os.symlink(f"..data/{name}", self.root / name)


@dataclass
class Pipeline:
    """Gateway, relay, risk, approval and recorder on topics of their own."""

    api_url: str
    children: dict[str, Child]
    mount: ConfigMapMount
    log_dir: Path

    def metrics_url(self, name: str) -> str:
        """The /metrics URL of one of this pipeline's services."""
        return f"http://127.0.0.1:{self.children[name].ops_port}/metrics"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
async def pipeline(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    """A whole pipeline with its own topic prefix and consumer groups, so the shared services see none of it."""
    prefix = f"policy-live-{uuid.uuid4().hex[:8]}."
    mount = ConfigMapMount(tmp_path_factory.mktemp("policy-configmap"))
    mount.publish({"policy.yaml": LIVE_1, "challenger.yaml": STRICT})
    env = {
        "ENVIRONMENT": "test",
        "AUTH_CACHE_SECONDS": "0",
        "RATE_LIMIT_PER_SECOND": "0",
        "LOG_LEVEL": "INFO",
        "POLICY_FILE": str(mount.root / "policy.yaml"),
        "CHALLENGER_POLICY_FILE": str(mount.root / "challenger.yaml"),
    }
    services = ("gateway", "relay", "risk", "approval", "recorder")
    async with pipeline_of_its_own(infra, prefix, services, env) as children:
        yield Pipeline(
            api_url=f"http://127.0.0.1:{children['gateway'].port}",  # type: ignore[attr-defined]
            children=children,
            mount=mount,
            log_dir=infra.log_dir,
        )


async def _metric(http: httpx.AsyncClient, url: str, sample: str, **labels: str) -> float | None:
    response = await http.get(url)
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for item in family.samples:
            if item.name == sample and labels.items() <= item.labels.items():
                return float(item.value)
    return None


async def _until_every_policy_service(
    pipeline: Pipeline, sample: str, expected: dict[str, float], **labels: str
) -> None:
    """Wait until the risk and the approval service report `sample` as expected (they poll every second)."""
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(120):
            seen = {name: await _metric(http, pipeline.metrics_url(name), sample, **labels) for name in expected}
            if seen == expected:
                return
            await asyncio.sleep(0.5)
    pytest.fail(f"{sample}{labels} is {seen}, expected {expected}")


async def _failures(pipeline: Pipeline) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        return {
            name: await _metric(http, pipeline.metrics_url(name), "fastloans_policy_reload_failures_total") or 0.0
            for name in POLICY_SERVICES
        }


@pytest.fixture
def live_tenant() -> str:
    """The name of a new tenant."""
    return f"policy-live-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def live_client(pipeline: Pipeline, migrated_db: Any, live_tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of this pipeline's gateway for the new tenant (submit + read)."""
    key = await issue_test_key(migrated_db.primary_url, live_tenant)
    async with httpx.AsyncClient(
        base_url=pipeline.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=40
    ) as http:
        yield http


async def test_a_changed_policy_is_used_without_restart_and_an_invalid_one_is_refused(
    pipeline: Pipeline, live_client: httpx.AsyncClient
) -> None:
    pids = {name: child.process.pid for name, child in pipeline.children.items()}  # type: ignore[union-attr]
    first = await decided(live_client, (await submit(live_client, SCORE_50))["id"])
    assert (first["status"], first["risk_score"], first["policy_version"]) == ("approved", 50, "live-1")

    pipeline.mount.publish({"policy.yaml": LIVE_2, "challenger.yaml": STRICT})  # a ConfigMap update
    await _until_every_policy_service(
        pipeline, "fastloans_policy_info", dict.fromkeys(POLICY_SERVICES, 1.0), version="live-2"
    )
    second = await decided(live_client, (await submit(live_client, SCORE_50))["id"])
    assert (second["status"], second["risk_score"], second["policy_version"]) == ("rejected", 50, "live-2")

    before = await _failures(pipeline)
    current = (pipeline.mount.root / "..data").resolve() / "policy.yaml"
    staged = current.with_name("policy.yaml.new")
    staged.write_text(BROKEN)  # an in-place edit of the mounted file, replaced atomically
    staged.replace(current)
    await _until_every_policy_service(
        pipeline, "fastloans_policy_reload_failures_total", {name: count + 1 for name, count in before.items()}
    )
    third = await decided(live_client, (await submit(live_client, SCORE_50))["id"])
    assert (third["status"], third["policy_version"]) == ("rejected", "live-2")
    async with httpx.AsyncClient(timeout=10) as http:
        for name in POLICY_SERVICES:
            url = pipeline.metrics_url(name)
            assert await _metric(http, url, "fastloans_policy_info", version="live-2") == 1.0
            assert await _metric(http, url, "fastloans_policy_info", version="live-3") is None

    for name in POLICY_SERVICES:
        records = [
            json.loads(line)
            for line in (pipeline.log_dir / f"{pipeline.children[name].name}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        refused = [r for r in records if "keeping the previous policy" in r.get("message", "")]
        assert refused and all(r["log.level"] == "error" for r in refused), name
        assert any("no band covers [600, 650)" in r["message"] for r in refused)
    assert {name: child.process.pid for name, child in pipeline.children.items()} == pids  # type: ignore[union-attr]
    assert all(child.running for child in pipeline.children.values())


async def test_the_challenger_is_recorded_in_shadow_and_reported(
    pipeline: Pipeline, live_client: httpx.AsyncClient, live_tenant: str, migrated_db: Any, pg: Any
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    bodies = {"approved/approved": APPROVED, "approved/referred": SCORE_40, "rejected/rejected": REJECTED}
    results = {}
    for expected, body in bodies.items():
        result = await decided(live_client, (await submit(live_client, body))["id"])
        assert "challenger" not in result  # shadow outcomes stay out of the client API
        results[expected] = result
    for expected, result in results.items():
        assert result["status"] == expected.split("/")[0]  # the champion decides; the challenger does not act
        stored = await pg.fetchrow(
            "SELECT outcome, challenger FROM loan_decisions WHERE application_id = $1", uuid.UUID(result["id"])
        )
        shadow = json.loads(stored["challenger"])
        assert f"{stored['outcome']}/{shadow['outcome']}" == expected
        assert shadow["policy"]["version"] == "strict-1" and shadow["risk_score"] == result["risk_score"]
    tenant = live_tenant
    window = {"since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}
    assert (await live_client.get("/api/v1/policy/challenger", params=window)).status_code == 403
    admin_key = await issue_test_key(migrated_db.primary_url, tenant, ("admin",))
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=pipeline.api_url, headers=headers, timeout=40) as admin:
        for _ in range(100):  # the report reads the replica
            response = await admin.get("/api/v1/policy/challenger", params=window)
            assert response.status_code == 200, response.text
            if response.json()["decisions"] == 3:
                break
            await asyncio.sleep(0.2)
        report = response.json()
        assert (await admin.get("/api/v1/policy/challenger")).json()["decisions"] == 3  # the last 7 days
        for bad_window in (
            {"since": window["until"], "until": window["since"]},
            {"until": "0001-01-01T00:00:00Z"},
            {"since": "2020-01-01T00:00:00Z", "until": window["until"]},
        ):
            bad = await admin.get("/api/v1/policy/challenger", params=bad_window)
            assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json", bad_window
    assert (report["decisions"], report["agreed"], report["agreement_rate"]) == (3, 2, "0.6667")
    assert report["confusion"] == {
        "approved": {"approved": 1, "rejected": 0, "referred": 1},
        "rejected": {"approved": 0, "rejected": 1, "referred": 0},
        "referred": {"approved": 0, "rejected": 0, "referred": 0},
    }
    assert {item["challenger_version"] for item in report["policies"]} == {"strict-1"}
    assert {item["champion_version"] for item in report["policies"]} <= {"live-1", "live-2"}
    assert sum(item["decisions"] for item in report["policies"]) == 3

    common = ["--tenant", tenant, "--since", window["since"], "--database-url", migrated_db.replica_url]
    stored = json.loads(await _fastloans("policy", "agreement", *common, "--until", window["until"], "--json"))
    assert {k: v for k, v in stored.items() if k not in {"since", "until"}} == {
        k: v for k, v in report.items() if k not in {"since", "until"}
    }
    table = await _fastloans("policy", "agreement", *common)
    assert "decisions with a challenger outcome: 3" in table and "agreed: 2 (66.67%)" in table


async def _fastloans(*args: str) -> str:
    """Run the `fastloans` command; return its standard output."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fastloans")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()
