"""values.yaml is documented key by key, and values.schema.json is strict and readable."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import CHART

pytestmark = pytest.mark.charts

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
PARAMS = set(re.findall(r"^\s*## @param (\S+) \S", VALUES_TEXT, re.M))
# Maps whose content is free-form Kubernetes or label data: documented as a whole.
OPAQUE = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "affinity",
    "nodeSelector",
    "podAnnotations",
    "podLabels",
    "commonLabels",
    "annotations",
    "labels",
    "ingressNamespaceSelector",
    "ingressPodSelector",
    "monitoringNamespaceSelector",
}


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node and prefix.rsplit(".", 1)[-1] not in OPAQUE:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_every_value_has_a_param_line() -> None:
    """Each leaf key of values.yaml has its `## @param` line."""
    missing = [leaf for leaf in _leaves(VALUES) if leaf not in PARAMS]
    assert not missing, missing


def test_param_lines_name_real_keys() -> None:
    """No `## @param` line documents a key that does not exist."""
    leaves = set(_leaves(VALUES))
    assert not [param for param in PARAMS if param not in leaves]


def _objects(node, path="#"):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{path}/{index}")


def test_schema_is_strict_and_described() -> None:
    """Every object with declared properties refuses unknown keys, and every property is described."""
    for path, node in _objects(SCHEMA):
        assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
        for key, prop in node["properties"].items():
            assert "description" in prop or "$ref" in prop, f"{path}/{key} has no description"


def test_defaults_match_the_schema() -> None:
    """values.yaml itself is valid."""
    import jsonschema

    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)
