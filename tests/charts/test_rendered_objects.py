"""Assertions on the rendered chart: probes, resources, security, scaling, replication, wiring."""

from __future__ import annotations

import json

import pytest
import yaml

from fastloans import services

from .conftest import CHART, RELEASE, REPO_ROOT, VALUES_CASES, by_kind, env_of, named, pod_spec, values_args

pytestmark = pytest.mark.charts

FULL = f"{RELEASE}-fast-loans"
COMPONENTS = sorted(s.short for s in services.SERVICES)
CONSUMERS = {s.short: s.consumes.value.rsplit(".", 1)[-1] for s in services.CONSUMERS if s.consumes}
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
}
STANDARD_LABELS = ["name", "instance", "version", "component", "part-of", "managed-by"]
CASES = list(VALUES_CASES)


def _containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("case", CASES)
def test_every_container_is_restricted_and_bounded(render, case: str) -> None:
    """Each container: restricted security context, requests and limits; each pod: no SA token."""
    for obj in render(values=values_args(case)):
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, where
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] == 10001, where
        assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault", where
        for container in _containers(spec):
            ctx = container["securityContext"]
            for key, expected in RESTRICTED_CONTAINER.items():
                assert ctx[key] == expected, f"{where}/{container['name']}: {key}"
            assert ctx["runAsUser"] == 10001, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where}: {bound}"


@pytest.mark.parametrize("case", CASES)
def test_every_long_running_container_has_probes(render, case: str) -> None:
    """Deployments and StatefulSets: liveness and readiness probes; services probe /healthz and /readyz."""
    for obj in render(values=values_args(case)):
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, obj["metadata"]["name"]
            if obj["kind"] == "Deployment":
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("case", CASES)
def test_every_component_has_scaling_and_disruption_budget(render, case: str) -> None:
    """Each component: a Deployment, a Service, an HPA (or a KEDA ScaledObject) and a PDB."""
    objects = render(values=values_args(case))
    hpas = {o["spec"]["scaleTargetRef"]["name"] for o in by_kind(objects, "HorizontalPodAutoscaler")}
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in by_kind(objects, "ScaledObject")}
    pdbs = {o["metadata"]["name"] for o in by_kind(objects, "PodDisruptionBudget")}
    for component in COMPONENTS:
        name = f"{FULL}-{component}"
        deployment = named(objects, "Deployment", name)
        named(objects, "Service", name)
        assert name in hpas | scaled, f"{name} has neither an HPA nor a ScaledObject"
        assert not (name in hpas and name in scaled), f"{name} has both an HPA and a ScaledObject"
        assert "replicas" not in deployment["spec"], f"{name} sets replicas while autoscaled"
        assert name in pdbs, f"{name} has no PodDisruptionBudget"


def test_replicas_are_set_when_autoscaling_is_off(render) -> None:
    """Without an HPA the Deployment carries its replica count."""
    objects = render(set_values=("components.gateway.autoscaling.enabled=false", "components.gateway.replicas=2"))
    assert named(objects, "Deployment", f"{FULL}-gateway")["spec"]["replicas"] == 2
    assert f"{FULL}-gateway" not in {o["metadata"]["name"] for o in by_kind(objects, "HorizontalPodAutoscaler")}


@pytest.mark.parametrize("case", CASES)
def test_labels_and_config_checksum(render, case: str) -> None:
    """Standard labels on every object; checksum/config on every pod template of a component."""
    for obj in render(values=values_args(case)):
        labels = obj["metadata"]["labels"]
        for key in STANDARD_LABELS:
            assert f"app.kubernetes.io/{key}" in labels, f"{obj['kind']}/{obj['metadata']['name']}: {key}"
        assert labels["helm.sh/chart"].startswith("fast-loans-")
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            assert "checksum/config" in obj["spec"]["template"]["metadata"]["annotations"]


def test_policy_change_rolls_only_the_policy_users(render) -> None:
    """A new policy changes the checksum of risk and approval, not of the gateway."""

    def checksums(objects):
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for o in by_kind(objects, "Deployment")
        }

    before = checksums(render())
    after = checksums(render(set_values=("policy.content=name: other",)))
    assert before[f"{FULL}-risk"] != after[f"{FULL}-risk"]
    assert before[f"{FULL}-approval"] != after[f"{FULL}-approval"]
    assert before[f"{FULL}-gateway"] == after[f"{FULL}-gateway"]


def test_replica_bootstraps_from_the_primary_service(render) -> None:
    """The standby's initContainer runs pg_basebackup -R against the primary's Service."""
    objects = render()
    primary_service = named(objects, "Service", f"{FULL}-postgresql-primary")
    replica = named(objects, "StatefulSet", f"{FULL}-postgresql-read")
    init = replica["spec"]["template"]["spec"]["initContainers"][0]
    assert env_of(init)["PRIMARY_HOST"]["value"] == primary_service["metadata"]["name"]
    script_cm = named(objects, "ConfigMap", f"{FULL}-postgresql")
    script = script_cm["data"]["bootstrap-replica.sh"]
    assert "pg_basebackup" in script and "--write-recovery-conf" in script and '--host "$PRIMARY_HOST"' in script
    assert "PG_VERSION" in script, "must only clone when the data directory is empty"
    # The primary's Service selects the primary pods only; the read Service the standbys only.
    assert primary_service["spec"]["selector"]["app.kubernetes.io/component"] == "postgresql-primary"
    read_service = named(objects, "Service", f"{FULL}-postgresql-read")
    assert read_service["spec"]["selector"]["app.kubernetes.io/component"] == "postgresql-read"
    # Replication user and its pg_hba line are created at initdb.
    assert "REPLICATION" in script_cm["data"]["10-replication.sh"]


def test_synchronous_replication(render) -> None:
    """synchronousReplication sets synchronous_standby_names on the primary."""

    def primary_args(objects):
        return named(objects, "StatefulSet", f"{FULL}-postgresql-primary")["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]

    assert not any("synchronous_standby_names" in a for a in primary_args(render()))
    args = primary_args(render(set_values=("postgresql.synchronousReplication=true",)))
    assert "synchronous_standby_names=ANY 1 (*)" in args


@pytest.mark.parametrize("case", ["defaults", "dev", "production"])
def test_services_read_from_the_replica(render, case: str) -> None:
    """DATABASE_URL points at the primary's Service, DATABASE_READ_URL at the replica's."""
    objects = render(values=values_args(case))
    for component in (c for c in COMPONENTS if services.by_short(c).database):
        container = named(objects, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"]["containers"][0]
        env = env_of(container)
        assert f"@{FULL}-postgresql-primary:5432/" in env["DATABASE_URL"]["value"]
        assert f"@{FULL}-postgresql-read:5432/" in env["DATABASE_READ_URL"]["value"]
        assert env["HTTP_PORT"]["value"] == str(container["ports"][0]["containerPort"])
        assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] == "/tmp/metrics"  # noqa: S108 - an emptyDir in the pod


def test_secrets_only_where_needed(render) -> None:
    """The DB password reaches DB users only; the generated Secret holds no value from values."""
    objects = render()
    for component in COMPONENTS:
        env = env_of(named(objects, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"]["containers"][0])
        uses_db = services.by_short(component).database
        assert ("DATABASE_PASSWORD" in env) == uses_db, component
        if uses_db:
            assert "secretKeyRef" in env["DATABASE_PASSWORD"]["valueFrom"]
    secret = named(objects, "Secret", f"{FULL}-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not by_kind(render(values=values_args("production")), "Secret"), "production uses existingSecret only"


def test_policy_configmap_defaults_to_the_seed(render) -> None:
    """The policy ConfigMap carries files/policy.yaml, a copy of the seed policy, unless policy.content is set."""
    chart_copy = (CHART / "files" / "policy.yaml").read_text()
    seed = REPO_ROOT / "shared" / "fastloans" / "policy" / "seed.yaml"
    if seed.exists():
        assert chart_copy == seed.read_text(), "charts/fast-loans/files/policy.yaml drifted from the seed policy"
    objects = render()
    data = named(objects, "ConfigMap", f"{FULL}-policy")["data"]
    assert yaml.safe_load(data["policy.yaml"]) == yaml.safe_load(chart_copy)
    custom = named(render(set_values=("policy.content=name: custom",)), "ConfigMap", f"{FULL}-policy")
    assert custom["data"]["policy.yaml"] == "name: custom"
    for component in ("risk", "approval"):
        spec = named(objects, "Deployment", f"{FULL}-{component}")["spec"]["template"]["spec"]
        env = env_of(spec["containers"][0])
        assert env["POLICY_FILE"]["value"] == "/etc/fastloans/policy/policy.yaml"
        assert any(v.get("configMap", {}).get("name") == f"{FULL}-policy" for v in spec["volumes"])


def test_grafana_dashboards(render) -> None:
    """One labelled ConfigMap per dashboard file, holding valid JSON."""
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert files
    maps = [o for o in by_kind(render(), "ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(maps) == len(files)
    for cm in maps:
        for content in cm["data"].values():
            dashboard = json.loads(content)
            exprs = json.dumps(dashboard)
            assert "fastloans_http_requests_total" in exprs


def test_kafka_sizes(render) -> None:
    """Dev runs one KRaft node; production three, with RF 3 and min ISR 2 in the broker config."""
    dev = named(render(values=values_args("dev")), "StatefulSet", f"{FULL}-kafka")
    assert dev["spec"]["replicas"] == 1
    production = render(values=values_args("production"))
    assert named(production, "StatefulSet", f"{FULL}-kafka")["spec"]["replicas"] == 3
    script = named(production, "ConfigMap", f"{FULL}-kafka")["data"]["start.sh"]
    assert "default.replication.factor=3" in script and "min.insync.replicas=2" in script
    assert script.count(f"{FULL}-kafka-headless") >= 4  # three voters and the advertised listener
    topics_job = named(production, "Job", f"{FULL}-topics-install")
    args = topics_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["kafka", "create-topics", "--partitions", "12", "--replication-factor", "3"]
    # The topics Job is not admitted to PostgreSQL, so it gets no database settings either.
    topics_env = env_of(topics_job["spec"]["template"]["spec"]["containers"][0])
    assert not [name for name in topics_env if name.startswith("DATABASE_")]
    assert named(production, "Service", f"{FULL}-kafka-headless")["spec"]["clusterIP"] == "None"


def test_kafka_brokers_spread_as_asked(render) -> None:
    """Several brokers require distinct nodes by default; kafka.podAntiAffinity=soft lets them share fewer nodes.

    The hard rule alone left two of three brokers Pending on a one-node cluster, with no value to change it.
    """
    production = named(render(values=values_args("production")), "StatefulSet", f"{FULL}-kafka")
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        in production["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    )
    small = named(render(values=values_args("cluster-production")), "StatefulSet", f"{FULL}-kafka")
    assert small["spec"]["replicas"] == 3
    assert list(small["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]) == [
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]


def test_hooks(render) -> None:
    """Migrations and topics run pre-upgrade, pre-install with an external store, beside a first in-cluster install.

    A post-install hook runs only after `helm install --wait` has seen every Deployment ready, and the
    services are ready only once the schema and the topics exist: the first real install hung there.
    """
    for name in ("migrations", "topics"):
        first = named(render(), "Job", f"{FULL}-{name}-install")
        assert "helm.sh/hook" not in first["metadata"].get("annotations", {}), name
        upgrade = named(render(is_upgrade=True), "Job", f"{FULL}-{name}")
        assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade", name
        assert not [o for o in render(is_upgrade=True) if o["metadata"]["name"] == f"{FULL}-{name}-install"]
    external = named(render(values=values_args("external")), "Job", f"{FULL}-migrations")
    assert external["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert external["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    topics = named(render(values=values_args("external")), "Job", f"{FULL}-topics")
    assert topics["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert topics["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--min-insync-replicas", "2"]


def test_external_services(render) -> None:
    """External values: SASL_SSL Kafka and TLS PostgreSQL, secrets by reference, no in-cluster stores."""
    objects = render(values=values_args("external"))
    assert not by_kind(objects, "StatefulSet")
    env = env_of(named(objects, "Deployment", f"{FULL}-recorder")["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "fast-loans-msk"
    assert env["DATABASE_SSLMODE"]["value"] == "verify-full"
    assert env["DATABASE_SSLROOTCERT"]["value"] == "/etc/fastloans/database-ca/global-bundle.pem"
    assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "fast-loans-rds"
    assert "-ro." in env["DATABASE_READ_URL"]["value"]
    assert env["KAFKA_TOPIC_PREFIX"]["value"] == "staging."


def test_production_extras(render) -> None:
    """Production: TLS ingress, KEDA on the consumers, Sentry and APM from Secrets, PDBs with minAvailable."""
    objects = render(values=values_args("production"))
    ingress = named(objects, "Ingress", f"{FULL}-gateway")
    assert ingress["spec"]["tls"][0]["secretName"] == "fast-loans-tls"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    scaled = {o["metadata"]["name"]: o for o in by_kind(objects, "ScaledObject")}
    assert set(scaled) == {f"{FULL}-{c}" for c in CONSUMERS}
    trigger = scaled[f"{FULL}-risk"]["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "loan-applications.submitted"
    assert trigger["metadata"]["consumerGroup"] == "fastloans-risk"
    env = env_of(named(objects, "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]["containers"][0])
    assert env["SENTRY_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "fast-loans-sentry"
    assert env["ELASTIC_APM_SECRET_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "fast-loans-elastic-apm"
    assert env["ELASTIC_APM_SERVICE_NAME"]["value"] == "fastloans-gateway"
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert "minAvailable" in pdb["spec"] or "maxUnavailable" in pdb["spec"]
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 2


def test_network_policies(render) -> None:
    """The database and Kafka admit only the components that use them; the gateway admits the ingress controller."""
    objects = render(values=values_args("production"))

    def allowed(name):
        policy = named(objects, "NetworkPolicy", name)
        return set(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"])

    assert allowed(f"{FULL}-postgresql-primary") == {
        "gateway",
        "relay",
        "recorder",
        "webhooks",
        "migrations",
        "postgresql-read",
    }
    assert allowed(f"{FULL}-postgresql-read") == {"gateway", "relay", "recorder", "webhooks", "migrations"}
    assert allowed(f"{FULL}-kafka") == {
        "gateway",
        "relay",
        "risk",
        "approval",
        "recorder",
        "webhooks",
        "topics",
        "kafka",
    }
    gateway = named(objects, "NetworkPolicy", f"{FULL}-gateway")
    sources = [rule["from"][0]["namespaceSelector"] for rule in gateway["spec"]["ingress"]]
    assert {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}} in sources
    assert {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}} in sources


def test_egress_admits_the_cluster_dns_on_its_own_port(render) -> None:
    """An egress policy admits the DNS pods on 53 and on their named ports (CoreDNS listening on 1053 or 5353).

    A policy's port is the destination pod's, after the Service's translation: on a cluster whose CoreDNS
    listens unprivileged on 1053, the webhooks dispatcher could resolve nothing and never became ready.
    """
    checked = 0
    for policy in by_kind(render(), "NetworkPolicy"):
        if "Egress" not in policy["spec"]["policyTypes"]:
            continue
        dns = [
            rule
            for rule in policy["spec"]["egress"]
            if any(peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"} for peer in rule["to"])
        ]
        assert len(dns) == 1, policy["metadata"]["name"]
        ports = {(p["port"], p["protocol"]) for p in dns[0]["ports"]}
        assert ports == {(53, "UDP"), (53, "TCP"), ("dns", "UDP"), ("dns-tcp", "TCP")}, policy["metadata"]["name"]
        checked += 1
    assert checked


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ("components.risk.autoscaling.maxReplicas=8", "topics.partitions=6"),
            "components.risk: up to 8 replicas (autoscaling.maxReplicas)"
            " but topic loan-applications.submitted has only 6 partitions",
        ),
        (("keda.enabled=true", "default.keda.maxReplicaCount=20"), "up to 20 replicas (keda.maxReplicaCount)"),
        (
            ("components.recorder.autoscaling.enabled=false", "components.recorder.replicas=4", "topics.partitions=3"),
            "components.recorder: up to 4 replicas (replicas)",
        ),
        (("kafka.replicationFactor=3",), "kafka.replicationFactor (3) cannot exceed kafka.replicas (1)"),
        (("kafka.minInsyncReplicas=2",), "kafka.minInsyncReplicas (2) cannot exceed kafka.replicationFactor (1)"),
        (("postgresql.enabled=false",), "postgresql.enabled=false needs externalDatabase.url"),
        (
            ("kafka.enabled=false", "externalKafka.bootstrapServers=b-1:9096"),
            "needs externalKafka.username and externalKafka.existingSecret",
        ),
        (
            ("postgresql.synchronousReplication=true", "postgresql.replica.enabled=false"),
            "synchronousReplication needs",
        ),
    ],
)
def test_validate_values_fails_readably(render, settings: tuple[str, ...], message: str) -> None:
    """validateValues refuses combinations that would deploy a broken or wasteful system."""
    error = render.error(set_values=settings)
    assert message in error, error


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (("unknownKey=1",), "additional properties 'unknownKey' not allowed"),
        (("components.gateway.replicas=-1",), "at '/components/gateway/replicas': minimum: got -1, want 0"),
        (("default.autoscaling.maxReplicas=0",), "at '/default/autoscaling/maxReplicas': minimum: got 0, want 1"),
        (("environment=prod",), "at '/environment'"),
        (("externalKafka.securityProtocol=SASL_TLS",), "at '/externalKafka/securityProtocol'"),
        (("kafka.replicas=2",), "at '/kafka/replicas'"),
        (("default.securityContext.privileged=true",), "at '/default/securityContext/privileged'"),
        (("externalDatabase.url=postgresql://u:hunter2@db:5432/x",), "at '/externalDatabase/url'"),
        (("components.risk.consumer.topic=unknown",), "at '/components/risk/consumer/topic'"),
        (("components.gateway.typo=1",), "additional properties 'typo' not allowed"),
    ],
)
def test_schema_refuses_bad_values(render, settings: tuple[str, ...], message: str) -> None:
    """values.schema.json refuses unknown keys and out-of-range values, naming the key."""
    error = render.error(set_values=settings)
    assert "values don't meet the specifications of the schema" in error, error
    assert message in error, error


def test_gateway_ops_routes_are_off_the_ingress_path(render) -> None:
    """The gateway's probes and Prometheus use its ops port; the Ingress and the ingress controller only `http`."""
    objects = render(values=values_args("production"))
    gateway = named(objects, "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in gateway["ports"]} == {"http": 8000, "ops": 9180}
    assert env_of(gateway)["OPS_PORT"]["value"] == "9180"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway[probe]["httpGet"]["port"] == "ops", probe
    for rule in named(objects, "Ingress", f"{FULL}-gateway")["spec"]["rules"]:
        assert {path["backend"]["service"]["port"]["name"] for path in rule["http"]["paths"]} == {"http"}
    rules = named(objects, "NetworkPolicy", f"{FULL}-gateway")["spec"]["ingress"]
    ports = {
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]: [
            p["port"] for p in rule["ports"]
        ]
        for rule in rules
    }
    assert ports == {"monitoring": ["ops"], "ingress-nginx": ["http"]}
    service = named(objects, "Service", f"{FULL}-gateway")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"http": "http", "ops": "ops"}
    assert named(objects, "ServiceMonitor", f"{FULL}-gateway")["spec"]["endpoints"][0]["port"] == "ops"
    # The workers keep health and metrics on their only port.
    relay = named(objects, "Deployment", f"{FULL}-relay")["spec"]["template"]["spec"]["containers"][0]
    assert relay["readinessProbe"]["httpGet"]["port"] == "http" and "OPS_PORT" not in env_of(relay)
    assert named(objects, "ServiceMonitor", f"{FULL}-relay")["spec"]["endpoints"][0]["port"] == "http"


def test_gateway_trusts_the_ingress_and_outlives_its_keep_alive(render) -> None:
    """Behind the ingress: client addresses from X-Forwarded-For, keep-alive longer than the controller's,
    and the API docs off unless asked for (the environment decides)."""
    gateway = named(render(), "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(gateway)
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"
    # Longer than the idle upstream connections of ingress-nginx (60 s) and Traefik (90 s, its default).
    assert int(env["HTTP_KEEPALIVE_SECONDS"]["value"]) > 90
    assert "API_DOCS_ENABLED" not in env
    docs_on = named(render(set_values=("components.gateway.apiDocs=true",)), "Deployment", f"{FULL}-gateway")
    assert env_of(docs_on["spec"]["template"]["spec"]["containers"][0])["API_DOCS_ENABLED"]["value"] == "true"
    relay = named(render(), "Deployment", f"{FULL}-relay")["spec"]["template"]["spec"]["containers"][0]
    assert "FORWARDED_ALLOW_IPS" not in env_of(relay) and "HTTP_KEEPALIVE_SECONDS" not in env_of(relay)


def test_the_review_claim_lease_is_the_gateways_default_unless_set(render) -> None:
    """REVIEW_CLAIM_IDLE_MINUTES reaches the gateway only when components.gateway.reviewClaimIdleMinutes is set."""
    gateway = named(render(), "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert "REVIEW_CLAIM_IDLE_MINUTES" not in env_of(gateway)
    lease = ("components.gateway.reviewClaimIdleMinutes=45",)
    gateway = named(render(set_values=lease), "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]
    assert env_of(gateway["containers"][0])["REVIEW_CLAIM_IDLE_MINUTES"]["value"] == "45"


def test_gateway_keeps_serving_until_its_endpoint_is_gone(render) -> None:
    """A preStop sleep on the gateway (it stops listening on SIGTERM): the roll under load of tests/k8s refused
    connections still routed to the old pods without it; sleep plus graceful shutdown fit in the grace period."""
    from fastloans.runtime import SHUTDOWN_GRACE_SECONDS

    objects = render()
    spec = named(objects, "Deployment", f"{FULL}-gateway")["spec"]["template"]["spec"]
    sleep = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 5, sleep
    assert int(sleep[1]) + SHUTDOWN_GRACE_SECONDS <= spec["terminationGracePeriodSeconds"]
    for name in COMPONENTS:
        if name != "gateway":
            container = named(objects, "Deployment", f"{FULL}-{name}")["spec"]["template"]["spec"]["containers"][0]
            assert "lifecycle" not in container, name
    off = named(render(set_values=("components.gateway.preStopSleepSeconds=0",)), "Deployment", f"{FULL}-gateway")
    assert "lifecycle" not in off["spec"]["template"]["spec"]["containers"][0]


def test_helm_test_goes_through_the_ingress_when_told_where_it_is(render) -> None:
    """business-path gets INGRESS_URL and the first ingress host only with the Ingress on and ingress.testUrl set;
    otherwise it submits through the gateway Service (GATEWAY_URL)."""

    def business_env(*set_values: str) -> dict[str, dict]:
        pod = named(render(set_values=set_values), "Pod", f"{FULL}-test-business-path")
        return env_of(pod["spec"]["containers"][0])

    url = "ingress.testUrl=http://traefik.ingress.svc"
    routed = business_env("ingress.enabled=true", "ingress.hosts[0]=loans.test", url)
    assert routed["INGRESS_URL"]["value"] == "http://traefik.ingress.svc"
    assert routed["INGRESS_HOST"]["value"] == "loans.test"
    assert routed["GATEWAY_URL"]["value"] == f"http://{FULL}-gateway:8000"
    for unrouted in (business_env("ingress.enabled=true"), business_env(url)):
        assert "INGRESS_URL" not in unrouted and "INGRESS_HOST" not in unrouted
