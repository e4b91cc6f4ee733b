"""Several instances of each service on one stack: start, SIGKILL, SIGTERM and restart them by instance name."""

from __future__ import annotations

import signal
import subprocess

from bench.checks import GROUPS
from fastloans import services as registry
from fastloans_dev.devstack.stack import SERVICES, Infra, ServiceSet
from fastloans_dev.devstack.system import Child, free_port

CONSUMERS = tuple(s.short for s in registry.CONSUMERS)
__all__ = ["CONSUMERS", "GROUPS", "TEST_ENV", "Fleet"]
TEST_ENV = {"ENVIRONMENT": "test", "RATE_LIMIT_PER_SECOND": "0", "LOG_LEVEL": "INFO"}


class Fleet:
    """Service instances named `<service>` and `<service>-<n>`, each on its own port, sharing the consumer groups."""

    def __init__(self, services: ServiceSet) -> None:
        self.services = services
        self.ports: dict[str, int] = {}
        self.ops_ports: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        for key, child in services.children.items():
            self.ports[key] = child.port  # type: ignore[attr-defined]
            self.ops_ports[key] = child.ops_port  # type: ignore[attr-defined]
            self.kinds[key] = key.split("-", 1)[0]

    @classmethod
    def on(cls, infra: Infra, *, extra_env: dict[str, str] | None = None) -> Fleet:
        """An empty fleet on `infra`."""
        return cls(ServiceSet(infra, extra_env={**TEST_ENV, **(extra_env or {})}))

    def instances(self, service: str) -> list[str]:
        """The instance names of one service."""
        return [key for key, kind in self.kinds.items() if kind == service]

    def url(self, instance: str) -> str:
        """The HTTP base URL of one instance."""
        return f"http://127.0.0.1:{self.ports[instance]}"

    def ops_url(self, instance: str) -> str:
        """The base URL of one instance's /healthz, /readyz and /metrics."""
        return f"http://127.0.0.1:{self.ops_ports[instance]}"

    def child(self, instance: str) -> Child:
        """The process of one instance."""
        return self.services.children[instance]

    def start(self, service: str, instance: str | None = None, *, wait: bool = True) -> str:
        """Start (or restart) an instance on its previous port, or a new port; returns its name."""
        if service not in SERVICES:
            raise ValueError(f"unknown service {service}")
        if instance is None:
            taken = set(self.instances(service))
            instance = next(n for n in (service, *(f"{service}-{i}" for i in range(2, 100))) if n not in taken)
        port = self.ports.get(instance) or free_port()
        child = self.services.start(service, instance=instance, port=port, ops_port=self.ops_ports.get(instance))
        self.ports[instance], self.kinds[instance] = port, service
        self.ops_ports[instance] = child.ops_port  # type: ignore[attr-defined]
        if wait:
            self.services.wait_ready(child, timeout=120)
        return instance

    def start_all(self, per_service: int) -> None:
        """`per_service` instances of every service, all ready."""
        names = [self.start(service, wait=False) for service in SERVICES for _ in range(per_service)]
        for name in names:
            self.services.wait_ready(self.child(name), timeout=120)

    def kill(self, instance: str) -> None:
        """SIGKILL an instance (it keeps its port for a restart)."""
        self.child(instance).kill()

    def terminate(self, instance: str, timeout: float = 60.0) -> int | None:
        """SIGTERM an instance and wait; returns its exit code (negative if it had to be killed)."""
        child = self.child(instance)
        child.signal(signal.SIGTERM)
        assert child.process is not None
        try:
            return child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.process.returncode

    def remove(self, instance: str) -> None:
        """Forget a stopped instance (scale down)."""
        del self.services.children[instance]
        del self.kinds[instance]
        del self.ports[instance]
        del self.ops_ports[instance]

    def stop_all(self) -> None:
        """SIGTERM everything that runs."""
        self.services.stop_all()
