"""Structured logging: Elastic Common Schema JSON on stdout (and optionally a file).

Log lines carry identifiers (application id, event id, trace id), never
applicant data: no names, incomes, debts or API keys.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import ecs_logging

_EXCLUDED = ["log.original", "process", "log.origin", "process.thread.name"]


class _ServiceFields(logging.Filter):
    """Adds `service.name` and `service.environment` to every record."""

    def __init__(self, service: str, environment: str) -> None:
        super().__init__()
        self.service = service
        self.environment = environment

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, "service.name", self.service)
        setattr(record, "service.environment", self.environment)
        return True


def configure_logging(
    *, service: str, level: str = "INFO", environment: str = "development", log_file: Path | None = None
) -> None:
    """Send every log record to stdout as ECS JSON; also to `log_file` when set."""
    formatter = ecs_logging.StdlibFormatter(exclude_fields=_EXCLUDED)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    fields = _ServiceFields(service, environment)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(fields)
        root.addHandler(handler)
    root.setLevel(level)
    # Library chatter stays at WARNING unless asked for.
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    try:
        from elasticapm.handlers.logging import LoggingFilter
    except ImportError:  # pragma: no cover - elastic-apm is a declared dependency
        return
    for handler in handlers:
        handler.addFilter(LoggingFilter())
