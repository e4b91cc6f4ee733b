"""Fixtures for the chart, image and Skaffold tests: locate the tools and render the chart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "fast-loans"
# The handbook's schemas live beside the project (../shared/schemas), in CI too.
SCHEMAS = REPO_ROOT.parent / "shared" / "schemas"
RELEASE = "fl"

# Every values setup the chart is rendered with: the defaults plus each ci/*-values.yaml.
VALUES_CASES = {"defaults": None} | {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}


def tool_path(name: str) -> str | None:
    """The tool from scripts/install-k8s-tools.sh's bin dir, else beside this Python (a venv), else PATH."""
    cache = Path(os.environ.get("FASTLOANS_CACHE", Path.home() / ".cache" / "fastloans"))
    for candidate in (cache / "bin" / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """The tool's path; fails (not skips) the test when it is missing."""
    path = tool_path(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/install-k8s-tools.sh (installs into $FASTLOANS_CACHE/bin)")
    return path


class Renderer:
    """Runs `helm template` on the chart and returns the rendered objects."""

    def __init__(self, helm: str) -> None:
        self.helm = helm
        self._cache: dict[tuple, list[dict]] = {}

    def command(
        self,
        *,
        values: tuple[Path | str, ...] = (),
        set_values: tuple[str, ...] = (),
        kube_version: str | None = None,
        api_versions: tuple[str, ...] = (),
        chart: Path = CHART,
        is_upgrade: bool = False,
    ) -> list[str]:
        cmd = [self.helm, "template", RELEASE, str(chart), "--namespace", "loans"]
        if is_upgrade:
            cmd.append("--is-upgrade")
        for path in values:
            cmd += ["--values", str(path)]
        for item in set_values:
            cmd += ["--set", item]
        if kube_version:
            cmd += ["--kube-version", kube_version]
        for api in api_versions:
            cmd += ["--api-versions", api]
        return cmd

    def text(self, **kwargs) -> str:
        """The rendered manifests as YAML text; fails the test with helm's message on error."""
        result = subprocess.run(self.command(**kwargs), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"helm template failed:\n{result.stderr}")
        return result.stdout

    def __call__(self, **kwargs) -> list[dict]:
        """The rendered objects (cached per arguments)."""
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kwargs.items()))
        if key not in self._cache:
            self._cache[key] = [doc for doc in yaml.safe_load_all(self.text(**kwargs)) if doc]
        return self._cache[key]

    def error(self, **kwargs) -> str:
        """helm's error output for values that must be refused; fails if rendering succeeds."""
        result = subprocess.run(self.command(**kwargs), capture_output=True, text=True, check=False)
        if result.returncode == 0:
            pytest.fail("helm template accepted values it should refuse")
        return result.stderr


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the helm binary."""
    return require_tool("helm")


@pytest.fixture(scope="session")
def render(helm: str) -> Renderer:
    """Render helper: render(values=(...), set_values=(...)) -> list of objects."""
    return Renderer(helm)


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    """../shared/schemas, or skip when this checkout has no handbook beside it."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"{SCHEMAS} is absent: the CRD and Skaffold schemas come from the handbook's shared/schemas")
    return SCHEMAS


def values_args(case: str) -> tuple[Path, ...]:
    """The --values files of a named case."""
    path = VALUES_CASES[case]
    return () if path is None else (path,)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    """The objects of one kind."""
    return [obj for obj in objects if obj.get("kind") == kind]


def named(objects: list[dict], kind: str, name: str) -> dict:
    """The one object of that kind and name."""
    matches = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload (Deployment, StatefulSet, Job), else None."""
    if obj.get("kind") in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
        return obj["spec"]["template"]["spec"]
    return None


def env_of(container: dict) -> dict[str, dict]:
    """A container's environment as name -> EnvVar."""
    return {item["name"]: item for item in container.get("env", [])}
