"""Structured logging: Elastic Common Schema JSON on stdout (and optionally a file).

Log lines carry identifiers (application id, event id, trace id), never
applicant data: no names, incomes, debts or API keys.

`EcsFormatter` writes the same document as `ecs_logging.StdlibFormatter` with
`log.original`, `process`, `log.origin` and `process.thread.name` excluded, at a
fraction of its cost: the document is built in one pass over the record, with
dotted names nested in place, and serialised with orjson.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

ECS_VERSION = "1.6.0"

# Attributes every LogRecord has (plus the ones the logging machinery adds later); anything
# else on a record came from `extra=` or a filter and belongs in the document.
_STANDARD_ATTRIBUTES = frozenset(dir(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

# Elastic APM's LoggingFilter / record factory: attribute -> ECS field it stands for.
_APM_FIELDS = (
    ("elasticapm_trace_id", "trace.id"),
    ("elasticapm_transaction_id", "transaction.id"),
    ("elasticapm_span_id", "span.id"),
    ("elasticapm_service_name", "service.name"),
    ("elasticapm_service_environment", "service.environment"),
)
_NOT_EXTRA = _STANDARD_ATTRIBUTES | {attribute for attribute, _ in _APM_FIELDS} | {"elasticapm_labels"}

# Fields the formatter always writes itself; an extra of the same name is ignored.
_RESERVED = frozenset({"@timestamp", "log.level", "message", "ecs.version", "log.logger"})

_MAX_PLANS = 512
_MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return f"<unprintable {type(value).__name__}>"
        except Exception:
            return "<unprintable>"


def _json_fallback(value: object) -> Any:
    """orjson `default=`: whatever orjson cannot write natively becomes its string form."""
    if isinstance(value, Mapping):
        return dict(value)
    return _safe_str(value)


def _escape_non_ascii(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # A message whose arguments do not fit its format string: keep both rather than lose the line.
        return f"{_safe_str(record.msg)} (unformatted arguments: {_safe_str(record.args)})"


def _put(document: dict[str, Any], parents: tuple[str, ...], leaf: str, value: Any) -> None:
    """Sets `value` at `parents` + `leaf` in `document`, creating objects on the way.

    A field already set is kept, and so is a value standing where an object would have to go.
    """
    for part in parents:
        child = document.get(part)
        if child is None:
            child = document[part] = {}
        elif type(child) is not dict:
            return
        document = child
    if leaf not in document:
        document[leaf] = value


def _put_dotted(document: dict[str, Any], field: str, value: Any) -> None:
    *parents, leaf = field.split(".")
    _put(document, tuple(parents), leaf, value)


def _leaves(prefix: str, mapping: dict[Any, Any]) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every non-None, non-dict value inside an already-nested extra."""
    for key, value in mapping.items():
        if value is None:
            continue
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            yield from _leaves(name, value)
        else:
            yield name, value


class EcsFormatter(logging.Formatter):
    """Formats a record as one line of ECS JSON.

    `service_name` / `service_environment`, when given, are written to every line as
    `service.name` / `service.environment` and take precedence over the same fields
    passed as extras or found by Elastic APM.
    """

    def __init__(self, *, service_name: str | None = None, service_environment: str | None = None) -> None:
        super().__init__()
        service = {"name": service_name, "environment": service_environment}
        self._service = {key: value for key, value in service.items() if value is not None}
        # (whole second, "YYYY-MM-DDTHH:MM:SS") of the last record; replaced as one object so
        # concurrent threads never see a second paired with another second's text.
        self._second: tuple[int, str] = (-1, "")
        self._plans: dict[tuple[str, ...], tuple[tuple[str, tuple[str, ...], str], ...]] = {}

    def format(self, record: logging.LogRecord) -> str:
        try:
            document = self._document(record)
        except Exception:
            return self._minimal_line(record)
        try:
            line = orjson.dumps(document, default=_json_fallback).decode()
        except Exception:
            # Beyond orjson: integers over 64 bits, lone surrogates, non-string keys.
            try:
                return json.dumps(document, default=_json_fallback, separators=(",", ":"), allow_nan=False)
            except Exception:
                return self._minimal_line(record)
        if not line.isascii():
            # ASCII-only output, as ecs_logging writes it: safe for any stream encoding.
            line = _NON_ASCII.sub(_escape_non_ascii, line)
        return line

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second > created:
            second -= 1
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return cached[1] + _MILLISECONDS[int((created - second) * 1000)]

    def _document(self, record: logging.LogRecord) -> dict[str, Any]:
        document: dict[str, Any] = {
            "@timestamp": self._timestamp(record.created),
            "log.level": record.levelname.lower(),
            "message": _message(record),
            "ecs.version": ECS_VERSION,
        }
        if record.name is not None:
            document["log"] = {"logger": record.name}
        if self._service:
            document["service"] = self._service.copy()

        attributes = record.__dict__
        names = tuple(attributes)
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plan(names)
        for attribute, parents, leaf in plan:
            value = attributes[attribute]
            if value is None:
                continue
            if isinstance(value, dict):
                for field, nested in _leaves(".".join((*parents, leaf)), value):
                    _put_dotted(document, field, nested)
                continue
            _put(document, parents, leaf, value)

        exc_info = record.exc_info
        if exc_info:
            self._add_error(document, exc_info)
        if record.stack_info:
            _put(document, ("error",), "stack_trace", _safe_str(record.stack_info))
        return document

    def _plan(self, names: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...], str], ...]:
        """What to copy from records with these attribute names: (attribute, parent objects, field), in order.

        Extras first, sorted by name, then the Elastic APM attributes for fields still unset.
        Records from one call site share their attribute names, so plans are kept, a bounded number.
        """
        steps = []
        for attribute in sorted(set(names).difference(_NOT_EXTRA)):
            if attribute not in _RESERVED:
                *parents, leaf = attribute.split(".")
                steps.append((attribute, tuple(parents), leaf))
        for attribute, field in _APM_FIELDS:
            if attribute in names:
                *parents, leaf = field.split(".")
                steps.append((attribute, tuple(parents), leaf))
        plan = tuple(steps)
        if len(self._plans) >= _MAX_PLANS:
            self._plans.clear()
        self._plans[names] = plan
        return plan

    @staticmethod
    def _add_error(document: dict[str, Any], exc_info: Any) -> None:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
            return
        kind, error, trace = exc_info
        _put(document, ("error",), "type", kind.__name__)
        if error is not None:
            _put(document, ("error",), "message", _safe_str(error))
        if trace is not None:
            text = "".join(traceback.format_tb(trace))
            if text:
                _put(document, ("error",), "stack_trace", text)

    def _minimal_line(self, record: logging.LogRecord) -> str:
        """The line written when the full document cannot be: never raises."""
        try:
            created = float(record.created)
        except Exception:
            created = time.time()
        try:
            timestamp = self._timestamp(created)
        except Exception:
            timestamp = self._timestamp(time.time())
        document: dict[str, Any] = {
            "@timestamp": timestamp,
            "log.level": _safe_str(getattr(record, "levelname", "")).lower(),
            "message": _message(record),
            "ecs.version": ECS_VERSION,
            "log": {"logger": _safe_str(getattr(record, "name", None))},
        }
        if self._service:
            document["service"] = self._service
        return json.dumps(document, separators=(",", ":"))


FLUSH_INTERVAL_SECONDS = 0.2
# Lines held before they are written without waiting for the timer (about 100 kB of ECS JSON).
MAX_PENDING_LINES = 256


class _LineBatching:
    """Handler behaviour: keep INFO lines in memory and write them together, at most every FLUSH_INTERVAL_SECONDS.

    `logging.StreamHandler` writes and flushes after every record: one system call per log line,
    which was a few per cent of every service's CPU at a thousand lines a second. Leaving the
    lines in the stream's own buffer is not enough: with PYTHONUNBUFFERED set (as container
    images usually set it) stdout writes through on every call. So the handler holds the lines
    itself and writes them in one call when a background thread flushes it, when
    MAX_PENDING_LINES have gathered, or at once for WARNING and above; everything is written at
    exit (`logging.shutdown`). A process killed outright can lose the last interval's INFO
    lines, never an error.
    """

    stream: Any
    lock: Any

    if TYPE_CHECKING:  # provided by the logging handler this is mixed into

        def format(self, record: logging.LogRecord) -> str: ...
        def handleError(self, record: logging.LogRecord) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pending: list[str] = []
        super().__init__(*args, **kwargs)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record))
            if record.levelno >= logging.WARNING or len(self._pending) >= MAX_PENDING_LINES:
                self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write the lines held, in one call, then flush the stream."""
        with self.lock:
            if self._pending and self.stream is not None:
                text = "\n".join(self._pending) + "\n"
                self._pending.clear()
                self.stream.write(text)
            super().flush()  # type: ignore[misc]


class BatchedStreamHandler(_LineBatching, logging.StreamHandler[TextIO]):
    """A StreamHandler that flushes on a timer (see `_LineBatching`)."""


class BatchedFileHandler(_LineBatching, logging.FileHandler):
    """A FileHandler that flushes on a timer (see `_LineBatching`)."""


_flushed: list[logging.Handler] = []  # the handlers `configure_logging` installed last
_flusher: threading.Thread | None = None


def _flush_periodically() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL_SECONDS)
        for handler in list(_flushed):
            # Takes the handler's lock. A stream closed at exit has nothing left to flush.
            with contextlib.suppress(Exception):
                handler.flush()


def configure_logging(
    *, service: str, level: str = "INFO", environment: str = "development", log_file: Path | None = None
) -> None:
    """Send every log record to stdout as ECS JSON; also to `log_file` when set.

    Every line carries `service.name` and `service.environment`.
    """
    formatter = EcsFormatter(service_name=service, service_environment=environment)
    handlers: list[logging.Handler] = [BatchedStreamHandler(sys.stdout)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(BatchedFileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # The document leaves the process out; not gathering it saves a getpid() system call per record.
    logging.logProcesses = logging.logMultiprocessing = False
    global _flusher
    _flushed[:] = handlers
    if _flusher is None:
        _flusher = threading.Thread(target=_flush_periodically, name="log-flush", daemon=True)
        _flusher.start()
    # Library chatter stays at WARNING unless asked for.
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    try:
        from elasticapm.handlers.logging import LoggingFilter
    except ImportError:  # pragma: no cover - elastic-apm is a declared dependency
        return
    for handler in handlers:
        handler.addFilter(LoggingFilter())
