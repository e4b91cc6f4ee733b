"""What the Prometheus tests share: promtool and prometheus, the rules the chart renders, the dashboards' queries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.charts.conftest import CHART, Renderer, require_tool

HERE = Path(__file__).resolve().parent
# The promtool unit tests: each names the chart's rule file, so `promtool test rules` also runs them by hand.
RULE_TESTS = sorted((HERE / "rules").glob("*.test.yaml"))
DASHBOARDS = sorted((CHART / "files" / "dashboards").glob("*.json"))
# The value every panel's and every query variable's datasource must have: the dashboard's own variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
METRIC = re.compile(r"\bfastloans_[a-z0-9_]+")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


def metric_names(expression: str) -> set[str]:
    """The fastloans_ series names an expression (or a label_values query) reads."""
    return set(METRIC.findall(expression))


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (scripts/install-prometheus.sh links it into $FASTLOANS_CACHE/bin)."""
    return require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Path of the Prometheus server (scripts/install-prometheus.sh)."""
    return require_tool("prometheus")


@pytest.fixture(scope="session")
def rendered_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's PrometheusRule, as helm renders it, written out as a Prometheus rule file."""
    renderer = Renderer(require_tool("helm"))
    objects = renderer(api_versions=("monitoring.coreos.com/v1",))
    rules = [obj for obj in objects if obj.get("kind") == "PrometheusRule"]
    assert len(rules) == 1, f"the chart rendered {len(rules)} PrometheusRules"
    path = tmp_path_factory.mktemp("rules") / "prometheus-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))
    return path


def rules_of(path: Path) -> list[dict]:
    """Every rule (alerting and recording) of a rule file."""
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


@dataclass(frozen=True)
class Panel:
    """One query of one dashboard panel."""

    dashboard: str
    title: str
    expr: str
    datasource: object
    target_datasource: object


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard(path: Path) -> dict:
    """One dashboard's JSON."""
    return json.loads(path.read_text())


def panel_queries() -> list[Panel]:
    """Every target of every panel (rows included) of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in _panels(dashboard(path)["panels"]):
            for target in panel.get("targets", []):
                found.append(
                    Panel(
                        path.name,
                        panel.get("title", ""),
                        target.get("expr", ""),
                        panel.get("datasource"),
                        target.get("datasource"),
                    )
                )
    return found


def variables(path: Path) -> list[dict]:
    """A dashboard's template variables."""
    return dashboard(path).get("templating", {}).get("list", [])
