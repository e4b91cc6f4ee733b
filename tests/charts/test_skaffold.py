"""skaffold.yaml: valid for skaffold/v4beta14, one artifact per service image, wired into the chart."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from fastloans import services

from .conftest import REPO_ROOT

pytestmark = pytest.mark.charts

CONFIG = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())


def test_skaffold_matches_its_schema(schemas_dir: Path) -> None:
    """skaffold.yaml validates against Skaffold's published v4beta14 schema."""
    schema = json.loads((schemas_dir / "skaffold-v4beta14.json").read_text())
    assert CONFIG["apiVersion"] == "skaffold/v4beta14"
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message[:300]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(CONFIG)
    ]
    assert not errors, "\n".join(errors)


def test_one_artifact_per_image_from_the_one_dockerfile() -> None:
    """Each image of the registry is an artifact of docker/service.Dockerfile with its SERVICE and PORTS."""
    artifacts = {a["image"]: a for a in CONFIG["build"]["artifacts"]}
    assert set(artifacts) == {f"fastloans/{image}" for image in services.images()}
    for image in services.images():
        artifact = artifacts[f"fastloans/{image}"]
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == "docker/service.Dockerfile"
        ports = " ".join(map(str, services.image_ports(image)))
        assert artifact["docker"]["buildArgs"] == {"SERVICE": image, "PORTS": ports}
    assert CONFIG["build"]["tagPolicy"] == {"gitCommit": {}}


def test_every_built_image_reaches_the_chart() -> None:
    """setValueTemplates sets repository and tag of every component from the built images."""
    release = CONFIG["manifests"]["helm"]["releases"][0]
    assert (REPO_ROOT / release["chartPath"] / "Chart.yaml").is_file()
    templates = release["setValueTemplates"]
    chart_values = yaml.safe_load((REPO_ROOT / release["chartPath"] / "values.yaml").read_text())
    for component, settings in chart_values["components"].items():
        key = settings["image"]["repository"].replace("/", "_").replace("-", "_")
        assert templates[f"components.{component}.image.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
        assert templates[f"components.{component}.image.tag"] == f"{{{{.IMAGE_TAG_{key}}}}}"


def test_profiles() -> None:
    """dev and prod profiles exist, each with the values file it deploys."""
    profiles = {p["name"]: p for p in CONFIG["profiles"]}
    assert set(profiles) == {"dev", "prod"}
    for name, values_file in (("dev", "ci/dev-values.yaml"), ("prod", "ci/production-values.yaml")):
        patched = [p["value"] for p in profiles[name]["patches"] if p["path"].endswith("/valuesFiles")]
        assert patched and patched[0][0].endswith(values_file)
        assert (REPO_ROOT / patched[0][0]).is_file()
