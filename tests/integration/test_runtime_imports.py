"""What an image imports: each service's modules load without the development package or matplotlib."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastloans import services

pytestmark = pytest.mark.integration

CHECK = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    importlib.import_module(name)\n"
    "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('fastloans_dev', 'matplotlib'))\n"
    "assert not leaked, leaked\n"
)


@pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)
def test_service_modules_do_not_import_the_dev_package(service: services.Service) -> None:
    """The service's entry module, its settings and the runtime `fastloans` command stay clear of dev tooling."""
    modules = [service.module, service.settings.split(":")[0], "fastloans.db.migrate", "fastloans.kafka"]
    # The runtime command as an image has it: without the development package's entry points.
    check = CHECK.replace("for name", "import importlib.metadata as md\nmd.entry_points = lambda **_: []\nfor name")
    result = subprocess.run(
        [sys.executable, "-c", check, *modules, "fastloans.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
