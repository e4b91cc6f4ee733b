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


# Run in a fresh interpreter as the image has it: every third-party distribution that the service's package
# does not depend on (transitively, extras included) is made unimportable, then the service's modules are
# imported. An import that fails here would fail in the image, which installs only those dependencies.
AS_IN_THE_IMAGE = """
import importlib, importlib.abc, importlib.metadata as md, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
service, modules = sys.argv[1], sys.argv[2:]
declared, queue = set(), [(service, frozenset())]
while queue:
    dist, extras = queue.pop()
    if (canonicalize_name(dist), extras) in declared:
        continue
    declared.add((canonicalize_name(dist), extras))
    for text in md.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            queue.append((req.name, frozenset(req.extras)))
names = {name for name, _ in declared}
absent = {
    module
    for module, owners in md.packages_distributions().items()
    if not any(canonicalize_name(d) in names or d.startswith("fastloans") for d in owners)
}
absent -= {m.split(".")[0] for m in sys.modules}  # loaded by site before we start (.pth hooks)

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not a dependency of {service})")
        return None

sys.meta_path.insert(0, Absent())
for name in modules:
    importlib.import_module(name)
"""


@pytest.mark.parametrize("service", services.SERVICES, ids=lambda s: s.short)
def test_service_imports_only_what_its_package_depends_on(service: services.Service) -> None:
    """The service's modules import with only its package's dependencies installed, as in its image."""
    modules = [
        service.module,
        service.settings.split(":")[0],
        "fastloans.cli",
        "fastloans.kafka",
        "fastloans.db.migrate",
    ]
    result = subprocess.run(
        [sys.executable, "-c", AS_IN_THE_IMAGE, f"fastloans-{service.image_name}", *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]
