"""helm lint, and every rendered object validated strictly against the Kubernetes and CRD schemas."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fastloans import services

from .conftest import CHART, VALUES_CASES, values_args

pytestmark = pytest.mark.charts

# Kubernetes versions every rendering must be valid for (schemas bundled by kubernetes-validate).
KUBERNETES_VERSIONS = ["1.31.0", "1.33.0"]
# Objects of CRDs, validated against ../shared/schemas/crds/<group>/<kind>_<version>.json.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
ALL_APIS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_helm_lint_strict(helm: str, case: str) -> None:
    """`helm lint --strict` passes with the defaults and each ci values file."""
    cmd = [helm, "lint", "--strict", str(CHART)]
    for path in values_args(case):
        cmd += ["--values", str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _crd_schema(schemas_dir: Path, obj: dict) -> dict:
    group, version = obj["apiVersion"].split("/")
    path = schemas_dir / "crds" / group / f"{obj['kind'].lower()}_{version}.json"
    if not path.is_file():
        pytest.fail(f"no schema for {obj['kind']} {obj['apiVersion']} at {path}")
    return json.loads(path.read_text())


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_rendered_objects_match_kubernetes_schemas(render, case: str, kube_version: str) -> None:
    """Every core object is valid (strict: no unknown fields) for each Kubernetes version."""
    objects = render(values=values_args(case), kube_version=kube_version, api_versions=ALL_APIS)
    assert objects, "nothing rendered"
    problems = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(error.message)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_crd_objects_match_their_schemas(render, schemas_dir: Path, case: str) -> None:
    """ServiceMonitors, PrometheusRules and ScaledObjects are valid for their CRDs."""
    objects = render(values=values_args(case), api_versions=ALL_APIS)
    checked = 0
    for obj in objects:
        if obj["kind"] not in CRD_KINDS or obj["kind"] == "TriggerAuthentication":
            continue
        validator = jsonschema.Draft7Validator(_crd_schema(schemas_dir, obj))
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}:\n" + "\n".join(errors)
        checked += 1
    if case in {"defaults", "production"}:
        assert checked, "expected ServiceMonitors when the monitoring API exists"


def test_prometheus_rule_from_rules_file(render, schemas_dir: Path, tmp_path: Path) -> None:
    """files/prometheus-rules.yaml (a rule file) renders as a valid PrometheusRule."""
    chart = tmp_path / "fast-loans"
    shutil.copytree(CHART, chart)
    rules = chart / "files" / "prometheus-rules.yaml"
    if not rules.exists():
        rules.write_text(
            yaml.safe_dump(
                {
                    "groups": [
                        {
                            "name": "fast-loans.test",
                            "rules": [
                                {
                                    "alert": "FastLoansHighErrorRate",
                                    "expr": 'sum(rate(fastloans_http_requests_total{status=~"5.."}[5m])) > 1',
                                    "for": "5m",
                                    "labels": {"severity": "page"},
                                    "annotations": {"summary": "The API answers 5xx."},
                                }
                            ],
                        }
                    ]
                }
            )
        )
    objects = render(chart=chart, set_values=("observability.prometheusRule.enabled=true",))
    rule_objects = [obj for obj in objects if obj["kind"] == "PrometheusRule"]
    assert len(rule_objects) == 1
    validator = jsonschema.Draft7Validator(_crd_schema(schemas_dir, rule_objects[0]))
    assert not [e.message for e in validator.iter_errors(rule_objects[0])]
    assert rule_objects[0]["spec"]["groups"]


def test_monitoring_objects_follow_the_api_when_auto(render) -> None:
    """With enabled=auto, ServiceMonitors appear only when the cluster has the monitoring API."""
    without = render()
    with_api = render(api_versions=("monitoring.coreos.com/v1",))
    assert not [o for o in without if o["kind"] == "ServiceMonitor"]
    assert len([o for o in with_api if o["kind"] == "ServiceMonitor"]) == len(services.SERVICES)
