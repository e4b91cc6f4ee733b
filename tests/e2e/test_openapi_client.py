"""A client generated from the running gateway's own OpenAPI document (openapi-python-client) drives the API:
submit (and an idempotent retry), read until decided, change, list, withdraw, and the 422s, each answer parsed
as the document says. The client raises on any status the document does not list for the operation."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from fastloans.contracts import APPLICATIONS_PATH, IDEMPOTENT_REPLAYED_HEADER
from tests.e2e.test_pipeline import APPROVED

PACKAGE = "fastloans_api_client"


def _generate(spec: dict[str, Any], directory: Path) -> None:
    """Generate the client package into `directory` / PACKAGE (the generator formats it with ruff)."""
    source = directory / "openapi.json"
    source.write_text(json.dumps(spec))
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(source),
            "--output-path",
            str(directory / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Anything the generator could not map (a content type, a schema) it reports as a warning and leaves out.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.fixture(scope="module")
def generated(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    spec = httpx.get(f"{api_url}/openapi.json", timeout=30).json()
    validate(spec)
    directory = tmp_path_factory.mktemp("client")
    _generate(spec, directory)
    sys.path.insert(0, str(directory))
    try:
        names = [
            "",
            ".models",
            ".api.loan_applications.submit_application",
            ".api.loan_applications.get_application",
            ".api.loan_applications.update_application",
            ".api.loan_applications.list_applications",
            ".api.loan_applications.withdraw_application",
        ]
        return {name.rpartition(".")[2] or "client": importlib.import_module(PACKAGE + name) for name in names}
    finally:
        sys.path.remove(str(directory))


def test_a_generated_client_submits_reads_changes_lists_and_gets_422s(
    generated: dict[str, ModuleType], api_url: str, tenant_key: str
) -> None:
    m = generated
    models = m["models"]
    client = m["client"].AuthenticatedClient(
        base_url=api_url, token=tenant_key, raise_on_unexpected_status=True, timeout=httpx.Timeout(40)
    )
    key = f"client-{uuid.uuid4()}"
    body = models.LoanApplicationCreate.from_dict(APPROVED)

    created = m["submit_application"].sync_detailed(client=client, body=body, idempotency_key=key)
    assert created.status_code == 202 and isinstance(created.parsed, models.LoanApplication), created.content
    application = created.parsed
    assert application.status == models.LoanApplicationStatus.PENDING and application.revision == 1
    assert created.headers["location"] == f"{APPLICATIONS_PATH}/{application.id}"
    again = m["submit_application"].sync_detailed(client=client, body=body, idempotency_key=key)
    assert again.status_code == 202 and again.parsed.id == application.id
    assert again.headers[IDEMPOTENT_REPLAYED_HEADER] == "true"

    read = m["get_application"].sync_detailed(str(application.id), client=client, wait=20)
    assert read.status_code == 200 and isinstance(read.parsed, models.LoanApplication), read.content
    assert read.parsed.status == models.LoanApplicationStatus.APPROVED, read.content
    assert read.parsed.is_approved is True and read.parsed.reasons
    assert all(isinstance(reason, models.Reason) for reason in read.parsed.reasons)

    changed = m["update_application"].sync_detailed(
        str(application.id), client=client, body=models.LoanApplicationUpdate(monthly_debt="500.00")
    )
    assert changed.status_code == 202 and isinstance(changed.parsed, models.LoanApplication), changed.content
    assert changed.parsed.revision == 2 and changed.parsed.monthly_debt == "500.00"
    assert changed.parsed.status == models.LoanApplicationStatus.PENDING

    listed = m["list_applications"].sync_detailed(client=client, limit=100)
    assert listed.status_code == 200 and isinstance(listed.parsed, models.LoanApplicationPage), listed.content
    assert application.id in {item.id for item in listed.parsed.items}

    invalid = m["submit_application"].sync_detailed(
        client=client, body=models.LoanApplicationCreate.from_dict({**APPROVED, "credit_score": 100})
    )
    assert invalid.status_code == 422 and isinstance(invalid.parsed, models.Problem), invalid.content
    assert [error.additional_properties["field"] for error in invalid.parsed.errors] == ["credit_score"]
    reused = m["submit_application"].sync_detailed(
        client=client,
        body=models.LoanApplicationCreate.from_dict({**APPROVED, "loan_amount": "2500.00"}),
        idempotency_key=key,
    )
    assert reused.status_code == 422 and isinstance(reused.parsed, models.Problem), reused.content
    assert reused.parsed.errors[0].additional_properties["field"] == "Idempotency-Key"
    bad_wait = m["get_application"].sync_detailed(str(application.id), client=client, wait=31)
    assert bad_wait.status_code == 422 and isinstance(bad_wait.parsed, models.Problem), bad_wait.content

    withdrawn = m["withdraw_application"].sync_detailed(str(application.id), client=client)
    assert withdrawn.status_code == 204
    gone = m["get_application"].sync_detailed(str(application.id), client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, models.Problem), gone.content
