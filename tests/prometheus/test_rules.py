"""The chart's alert rules under promtool, and the dashboards' datasource: no cluster, no stack.

`promtool check rules` validates the PrometheusRule that helm renders; `promtool test rules` runs
tests/prometheus/rules/*.test.yaml against it: each alert fires on the series that should fire it
and stays silent on a healthy series.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.prometheus.conftest import (
    DASHBOARDS,
    DATASOURCE,
    RULE_TESTS,
    metric_names,
    panel_queries,
    rules_of,
    variables,
)

pytestmark = pytest.mark.charts


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a tool; the output is kept for the failure message."""
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def test_promtool_checks_the_rendered_rules(promtool: str, rendered_rules: Path) -> None:
    """The rule file the chart renders is valid for Prometheus (syntax, PromQL, templates)."""
    result = run(promtool, "check", "rules", str(rendered_rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules_of(rendered_rules))} rules found" in result.stdout


def test_promtool_unit_tests_pass_on_the_rendered_rules(promtool: str, rendered_rules: Path, tmp_path: Path) -> None:
    """Every rule test file passes against the rules as rendered (not only the file in the chart)."""
    assert RULE_TESTS
    copies = []
    for path in RULE_TESTS:
        test = yaml.safe_load(path.read_text())
        test["rule_files"] = [str(rendered_rules)]
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(test, sort_keys=False))
        copies.append(str(copy))
    result = run(promtool, "test", "rules", *copies)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(copies), result.stdout


def _alert_cases() -> dict[str, dict[str, int]]:
    """Per alert name: how many promtool cases expect it to fire, and how many expect silence."""
    cases: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                counts = cases.setdefault(case["alertname"], {"fires": 0, "silent": 0})
                counts["fires" if case.get("exp_alerts") else "silent"] += 1
    return cases


def test_every_alert_has_a_firing_and_a_silent_promtool_test(rendered_rules: Path) -> None:
    """An alert without a case that fires it and one that stays silent fails here; so does a test of no alert."""
    alerts = {rule["alert"] for rule in rules_of(rendered_rules) if "alert" in rule}
    cases = _alert_cases()
    assert len(alerts) >= 12
    untested = sorted(a for a in alerts if cases.get(a, {}).get("fires", 0) == 0)
    unchallenged = sorted(a for a in alerts if cases.get(a, {}).get("silent", 0) == 0)
    assert not untested, f"alerts with no promtool test that fires them: {untested}"
    assert not unchallenged, f"alerts with no promtool test of a healthy series: {unchallenged}"
    assert not sorted(set(cases) - alerts), "promtool tests of alerts the rules do not have"


def test_rule_tests_read_only_metrics_the_rules_use(rendered_rules: Path) -> None:
    """A rule test's input series are the metrics its rules read (a renamed metric cannot pass on stale series)."""
    used = set().union(*(metric_names(rule["expr"]) for rule in rules_of(rendered_rules)))
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for series in test["input_series"]:
                name = series["series"].split("{", 1)[0]
                assert name in used, f"{path.name} feeds {name}, which no rule reads"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_use_the_datasource_variable(path: Path) -> None:
    """Every panel, every target and every query variable reads from the dashboard's `datasource` variable."""
    chooser = [v for v in variables(path) if v["name"] == "datasource"]
    assert chooser and chooser[0]["type"] == "datasource" and chooser[0]["query"] == "prometheus"
    for variable in variables(path):
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, f"variable {variable['name']}"
    queries = [q for q in panel_queries() if q.dashboard == path.name]
    assert queries, f"{path.name} has no panel query"
    for query in queries:
        assert query.datasource == DATASOURCE, f"{path.name}: panel {query.title!r}"
        assert query.target_datasource in (None, DATASOURCE), f"{path.name}: a target of {query.title!r}"
        assert query.expr.strip(), f"{path.name}: panel {query.title!r} has an empty query"
