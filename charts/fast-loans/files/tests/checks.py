"""The chart's `helm test` checks, run in the gateway image: python checks.py business-path|platform.

business-path: create an API key, submit an application through the gateway Service, wait for its
decision and read it back from the replica. platform: the topics' partitions and replication, and every
service's /metrics. Everything it needs comes from the environment the chart renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

DEADLINE = float(os.environ.get("CHECK_DEADLINE_SECONDS", "240"))


def say(message: str) -> None:
    """One line of progress on the test pod's log."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fail(message: str) -> None:
    """Stop the check with a failure."""
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def retrying(what: str, attempt, deadline: float = DEADLINE):
    """attempt() until it returns a value other than None, or fail after the deadline."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            result = attempt()
        except (OSError, urllib.error.URLError, subprocess.SubprocessError, RuntimeError) as error:
            last = error
            result = None
        if result is not None:
            return result
        time.sleep(1)
    fail(f"{what}: no success within {deadline:.0f} s (last error: {last})")


def http(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON or text) of one request; HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, raw = error.code, error.headers, error.read()
    text = raw.decode(errors="replace")
    try:
        return status, got, json.loads(text)
    except ValueError:
        return status, got, text


def create_key(tenant: str) -> str:
    """A new API key of the tenant (submit, read), made with the image's `fastloans keys create`."""

    def attempt():
        done = subprocess.run(
            ["fastloans", "keys", "create", "--tenant", tenant, "--scopes", "submit,read", "--label", "helm test"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-300:])
        return done.stdout.strip().splitlines()[0]

    return retrying("fastloans keys create", attempt)


def entry_point() -> tuple[str, dict[str, str]]:
    """Base URL and headers of the way in: the Ingress (INGRESS_URL, Host INGRESS_HOST) or the gateway Service."""
    ingress = os.environ.get("INGRESS_URL", "").rstrip("/")
    if ingress:
        host = os.environ["INGRESS_HOST"]
        say(f"through the Ingress: {ingress} with Host {host}")
        return ingress, {"Host": host}
    say("through the gateway Service (no ingress.testUrl)")
    return os.environ["GATEWAY_URL"].rstrip("/"), {}


def business_path() -> None:
    """Key, submit through the Ingress (or the gateway Service), decision, read back from the replica."""
    from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENCY_KEY_HEADER
    from fastloans_gateway.schemas import EXAMPLE

    base, via = entry_point()
    key = create_key(os.environ.get("TEST_TENANT", "helm-test"))
    say("API key created")
    auth = {**via, "Authorization": f"Bearer {key}", IDEMPOTENCY_KEY_HEADER: str(uuid.uuid4())}

    def submit():
        status, headers, body = http("POST", base + APPLICATIONS_PATH, dict(EXAMPLE), auth)
        if status == 503:
            time.sleep(float(headers.get("Retry-After") or 1))
            return None
        if via and status in (404, 502) and not isinstance(body, dict):
            # The controller's own answer (not the gateway's JSON): it has no route or backend yet.
            say(f"the ingress controller answered {status} ({str(body)[:80]!r}): not routed yet")
            return None
        if status not in (201, 202):
            fail(f"POST {APPLICATIONS_PATH} answered {status}: {body}")
        return body

    submitted = retrying("submit an application", submit)
    ident = submitted["id"]
    say(f"application {ident} accepted ({submitted['status']})")
    read = {**via, "Authorization": f"Bearer {key}"}
    expect_source = os.environ.get("EXPECT_READ_SOURCE", "replica")

    def decided():
        status, headers, body = http("GET", f"{base}{APPLICATIONS_PATH}/{ident}?wait=5", None, read)
        if status == 503:
            return None
        if status != 200:
            fail(f"GET the application answered {status}: {body}")
        if body["status"] == "pending" or body["decided_at"] is None:
            return None
        if headers.get("X-Read-Source") != expect_source:
            say(f"decided, read from {headers.get('X-Read-Source')}; waiting for the {expect_source}")
            return None
        return body

    body = retrying("the decision, read from the " + expect_source, decided)
    decision = f"{body['status']} (score {body['risk_score']}, policy {body['policy_version']})"
    say(f"decided {decision}, read from the {expect_source}")
    if body["applicant_name"] != EXAMPLE["applicant_name"]:
        fail(f"read back {body['applicant_name']!r}, submitted {EXAMPLE['applicant_name']!r}")
    expected_policy = os.environ.get("EXPECT_POLICY_VERSION")
    if expected_policy and body["policy_version"] != expected_policy:
        fail(f"decided by policy {body['policy_version']}, expected {expected_policy}")
    asyncio.run(check_replica_row(ident))


async def check_replica_row(ident: str) -> None:
    """The replica Service is a server in recovery, and it holds the decided row."""
    import asyncpg

    from fastloans.settings import Settings, load_settings

    settings = load_settings(Settings, service_name="fastloans-test")
    conn = await asyncpg.connect(settings.replica_dsn(), ssl=settings.database_ssl(), timeout=10)
    try:
        in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()")
        status = await conn.fetchval("SELECT status FROM loan_applications WHERE id = $1", uuid.UUID(ident))
    finally:
        await conn.close()
    expect_standby = os.environ.get("EXPECT_READ_SOURCE", "replica") == "replica"
    if in_recovery != expect_standby:
        fail(f"the read Service's server: pg_is_in_recovery() = {in_recovery}")
    if status in (None, "pending"):
        fail(f"the read Service's server has the application as {status!r}")
    say(f"read Service: standby={in_recovery}, application {status}")


async def check_topics() -> None:
    """Every pipeline topic exists with the partitions, replication factor and ISR setting from values."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from aiokafka.errors import KafkaError

    from fastloans.events import Topic
    from fastloans.kafka import connection_options
    from fastloans.settings import Settings, load_settings

    settings = load_settings(Settings, service_name="fastloans-test")
    partitions = int(os.environ["EXPECT_PARTITIONS"])
    replication = int(os.environ["EXPECT_REPLICATION_FACTOR"])
    min_isr = os.environ.get("EXPECT_MIN_INSYNC_REPLICAS", "")
    names = [settings.topic(t.value) for t in Topic]
    end = time.monotonic() + DEADLINE
    while True:
        admin = AIOKafkaAdminClient(**connection_options(settings))
        try:
            await admin.start()
            described = await admin.describe_topics(names)
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
            break
        except KafkaError as error:
            if time.monotonic() > end:
                fail(f"Kafka did not answer within {DEADLINE:.0f} s: {error!r}")
            say(f"Kafka not answering yet ({error!r}); retrying")
            await asyncio.sleep(2)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    found = {d["topic"]: d for d in described if not d["error_code"]}
    missing = sorted(set(names) - set(found))
    if missing:
        fail(f"topics missing: {missing}")
    for name, topic in sorted(found.items()):
        counts = sorted({len(p["replicas"]) for p in topic["partitions"]})
        in_sync = min(len(p["isr"]) for p in topic["partitions"])
        if len(topic["partitions"]) != partitions or counts != [replication]:
            got = f"{len(topic['partitions'])} partitions with {counts} replicas"
            fail(f"{name}: {got}, expected {partitions} x {replication}")
        if in_sync < replication:
            fail(f"{name}: a partition has only {in_sync} of {replication} replicas in sync")
        say(f"topic {name}: {partitions} partitions, replication {replication}, all in sync")
    if min_isr:
        for response in configs:
            for resource in response.resources:
                entries = {entry[0]: entry[1] for entry in resource[4]}
                if entries.get("min.insync.replicas") != min_isr:
                    fail(f"{resource[3]}: min.insync.replicas={entries.get('min.insync.replicas')}, expected {min_isr}")
        say(f"min.insync.replicas={min_isr} on every topic")


def check_metrics() -> None:
    """Every service's /metrics answers 200 in the Prometheus text format."""
    targets = json.loads(os.environ["METRICS_TARGETS"])
    for name, url in sorted(targets.items()):

        def scrape(url=url):
            status, _, body = http("GET", url)
            return body if status == 200 and isinstance(body, str) else None

        body = retrying(f"{name} {url}", scrape, deadline=60)
        if "# TYPE " not in body:
            fail(f"{name}: {url} is not Prometheus text")
        say(f"{name}: {url} serves {body.count('# TYPE ')} metric families")


def main() -> None:
    """Run the named check."""
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which == "business-path":
        business_path()
    elif which == "platform":
        asyncio.run(check_topics())
        check_metrics()
    else:
        fail(f"unknown check {which!r}: business-path or platform")
    say(f"{which}: passed")


if __name__ == "__main__":
    main()
