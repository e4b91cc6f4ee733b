"""The ECS JSON log formatter: field names and order, nesting, odd values, and agreement with ecs_logging."""

from __future__ import annotations

import datetime
import io
import json
import logging
import sys
import time
import uuid
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import ecs_logging
import pytest

from fastloans import logs
from fastloans.logs import ECS_VERSION, EcsFormatter, configure_logging

EXCLUDED = ["log.original", "process", "log.origin", "process.thread.name"]
TOP = ["@timestamp", "log.level", "message", "ecs.version"]


def record(
    msg: str = "hello",
    *args: object,
    level: int = logging.INFO,
    name: str = "fastloans.test",
    exc_info: Any = None,
    stack_info: str | None = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(name, level, __file__, 42, msg, args, exc_info, extra=extra or None)
    made.stack_info = stack_info
    return made


def render(rec: logging.LogRecord, formatter: logging.Formatter | None = None) -> dict[str, Any]:
    line = (formatter or EcsFormatter()).format(rec)
    assert "\n" not in line and line.isascii()
    return json.loads(line)


def at(created: float) -> logging.LogRecord:
    rec = record()
    rec.created = created
    return rec


def test_the_four_leading_fields_come_first_in_order() -> None:
    line = EcsFormatter().format(record("applied %s", "ok", **{"labels.application_id": "a1"}))
    document = json.loads(line)
    assert list(document)[:4] == TOP
    assert line.startswith('{"@timestamp":"')
    assert document["log.level"] == "info"
    assert document["message"] == "applied ok"
    assert document["ecs.version"] == ECS_VERSION == ecs_logging.ECS_VERSION
    assert document["log"] == {"logger": "fastloans.test"}
    for absent in ("process", "origin", "original"):
        assert absent not in document and absent not in document["log"]


def test_levels_are_lower_case() -> None:
    assert render(record(level=logging.WARNING))["log.level"] == "warning"
    assert render(record(level=logging.CRITICAL))["log.level"] == "critical"


def test_timestamp_is_utc_with_milliseconds_from_created() -> None:
    formatter = EcsFormatter()
    created = datetime.datetime(2024, 2, 29, 23, 59, 58, 987_654, tzinfo=datetime.UTC).timestamp()
    assert render(at(created), formatter)["@timestamp"] == "2024-02-29T23:59:58.987Z"
    # Same second, another millisecond: the cached second must not freeze the fraction.
    assert render(at(created + 0.01), formatter)["@timestamp"] == "2024-02-29T23:59:58.997Z"
    # The next second (and day), then back to an earlier one: the cached prefix must follow.
    assert render(at(created + 1.5), formatter)["@timestamp"] == "2024-03-01T00:00:00.487Z"
    assert render(at(created - 3600), formatter)["@timestamp"] == "2024-02-29T22:59:58.987Z"
    assert render(at(1_700_000_000.0), formatter)["@timestamp"] == "2023-11-14T22:13:20.000Z"


def test_timestamp_matches_a_live_record_and_ecs_logging() -> None:
    rec = record()
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.created)) + f".{int(rec.msecs):03d}Z"
    assert render(rec)["@timestamp"] == expected
    assert expected == json.loads(ecs_logging.StdlibFormatter(exclude_fields=EXCLUDED).format(rec))["@timestamp"]


def test_dotted_extras_nest_and_siblings_merge() -> None:
    document = render(
        record(
            **{
                "http.request.method": "POST",
                "http.response.status_code": 202,
                "labels.application_id": "a1",
                "labels.stage": "risk",
                "url.path": "/v1/applications",
            }
        )
    )
    assert document["http"] == {"request": {"method": "POST"}, "response": {"status_code": 202}}
    assert document["labels"] == {"application_id": "a1", "stage": "risk"}
    assert document["url"] == {"path": "/v1/applications"}
    assert not any("." in key for key in document if key not in TOP)


def test_nested_extras_merge_with_dotted_ones_and_plain_extras_stay_top_level() -> None:
    document = render(record(http={"request": {"method": "GET"}}, custom=3, **{"http.response.status_code": 200}))
    assert document["http"] == {"request": {"method": "GET"}, "response": {"status_code": 200}}
    assert document["custom"] == 3


def test_none_values_are_dropped() -> None:
    document = render(
        record(
            **{"trace.id": None, "labels.application_id": "a1", "labels.gone": None},
            kept={"a": None, "b": 1},
            empty={"a": None},
        )
    )
    assert "trace" not in document
    assert document["labels"] == {"application_id": "a1"}
    assert document["kept"] == {"b": 1}
    assert "empty" not in document


def test_values_json_lacks_are_written_as_text() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    document = render(
        record(
            **{
                "labels.application_id": ident,
                "labels.amount": Decimal("1250.50"),
                "event.created": when,
                "file.path": Path("reports") / "run.log",
                "labels.raw": b"\x00ab",
                "labels.set": {3},
            }
        )
    )
    assert document["labels"]["application_id"] == str(ident)
    assert document["labels"]["amount"] == "1250.50"
    assert datetime.datetime.fromisoformat(document["event"]["created"]) == when
    assert document["file"]["path"] == str(Path("reports") / "run.log")
    assert document["labels"]["raw"] == str(b"\x00ab")
    assert document["labels"]["set"] == "{3}"


def test_a_value_without_any_text_form_does_not_lose_the_line() -> None:
    class Opaque:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    document = render(record("still here", **{"labels.thing": Opaque(), "labels.application_id": "a1"}))
    assert document["message"] == "still here"
    assert document["labels"]["application_id"] == "a1"
    assert document["labels"]["thing"] == "<unprintable Opaque>"


def test_what_orjson_cannot_write_goes_through_stdlib_json() -> None:
    document = render(record(**{"labels.big": 2**80, "labels.text": "bad \udc80 byte"}))
    assert document["labels"] == {"big": 2**80, "text": "bad \udc80 byte"}


def test_an_unserialisable_document_falls_back_to_a_minimal_line() -> None:
    looped: dict[str, Any] = {}
    looped["self"] = [looped]
    formatter = EcsFormatter(service_name="fastloans-risk", service_environment="test")
    document = render(record("cyclic %s", "payload", level=logging.ERROR, **{"labels.loop": looped}), formatter)
    assert list(document) == [*TOP, "log", "service"]
    assert document["message"] == "cyclic payload"
    assert document["log.level"] == "error"
    assert document["log"] == {"logger": "fastloans.test"}
    assert document["service"] == {"name": "fastloans-risk", "environment": "test"}


def test_a_message_whose_arguments_do_not_fit_is_still_written() -> None:
    document = render(record("count %d", "many"))
    assert document["message"].startswith("count %d")
    assert "many" in document["message"]


def test_non_ascii_text_is_escaped_and_round_trips() -> None:
    rec = record("Zoë paid 10 € 🎉", **{"labels.note": "naïve"})
    line = EcsFormatter().format(rec)
    assert line.isascii()
    assert json.loads(line)["message"] == "Zoë paid 10 € 🎉"
    assert json.loads(line)["labels"]["note"] == "naïve"
    assert line == line.strip() and "\n" not in line


def test_apm_attributes_map_to_ecs_fields_unless_set() -> None:
    rec = record()
    apm = {
        "elasticapm_trace_id": "t" * 32,
        "elasticapm_transaction_id": "x" * 16,
        "elasticapm_span_id": None,
        "elasticapm_service_name": "apm-name",
        "elasticapm_service_environment": "apm-env",
        "elasticapm_labels": {"trace.id": "t" * 32, "span.id": None},
    }
    rec.__dict__.update(apm)
    document = render(rec)
    assert document["trace"] == {"id": "t" * 32}
    assert document["transaction"] == {"id": "x" * 16}
    assert document["service"] == {"name": "apm-name", "environment": "apm-env"}
    assert "span" not in document
    assert not any(key.startswith("elasticapm") for key in document)

    explicit = record(**{"trace.id": "mine"})
    explicit.__dict__.update(apm)
    assert render(explicit)["trace"] == {"id": "mine"}
    configured = EcsFormatter(service_name="fastloans-risk", service_environment="production")
    assert render(rec, configured)["service"] == {"name": "fastloans-risk", "environment": "production"}


def test_configured_service_fields_are_on_every_line_and_win_over_extras() -> None:
    formatter = EcsFormatter(service_name="fastloans-gateway", service_environment="staging")
    document = render(record(**{"service.name": "other", "service.version": "1.2"}), formatter)
    assert document["service"] == {"name": "fastloans-gateway", "environment": "staging", "version": "1.2"}
    assert render(record(), formatter)["service"] == {"name": "fastloans-gateway", "environment": "staging"}


def test_exception_fields() -> None:
    try:
        raise ValueError("bad amount")
    except ValueError:
        rec = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    document = render(rec)
    assert document["error"]["type"] == "ValueError"
    assert document["error"]["message"] == "bad amount"
    assert "test_exception_fields" in document["error"]["stack_trace"]
    assert 'raise ValueError("bad amount")' in document["error"]["stack_trace"]


def test_exc_info_given_as_true_or_as_the_exception() -> None:
    try:
        raise OSError("disk")
    except OSError as error:
        flagged = render(logging.makeLogRecord({"msg": "m", "exc_info": True}))
        given = render(logging.makeLogRecord({"msg": "m", "exc_info": error}))
    for document in (flagged, given):
        assert document["error"]["type"] == "OSError"
        assert document["error"]["message"] == "disk"
        assert "test_exc_info_given_as_true_or_as_the_exception" in document["error"]["stack_trace"]


def test_an_explicit_error_type_wins_over_the_exception() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        rec = record("failed", exc_info=sys.exc_info(), **{"error.type": "Lookup"})
    assert render(rec)["error"]["type"] == "Lookup"


def test_stack_info_becomes_the_stack_trace() -> None:
    assert render(record(stack_info="Stack (most recent call last):\n  frame"))["error"] == {
        "stack_trace": "Stack (most recent call last):\n  frame"
    }


def test_a_logger_writing_through_a_handler_produces_one_line_per_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EcsFormatter(service_name="svc", service_environment="test"))
    logger = logging.getLogger("fastloans.test.handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("first\nwith a newline", extra={"labels.application_id": "a1"})
        try:
            {}["missing"]
        except KeyError:
            logger.exception("second")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    raw = stream.getvalue().encode()
    lines = raw.decode("ascii").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "first\nwith a newline"
    assert first["labels"] == {"application_id": "a1"}
    assert second["error"]["type"] == "KeyError"


def _exception_record() -> logging.LogRecord:
    try:
        Decimal("1") / 0
    except ArithmeticError:
        return record(
            "scoring failed for %s",
            "app-1",
            level=logging.ERROR,
            name="fastloans.risk",
            exc_info=sys.exc_info(),
            **{"labels.application_id": "app-1", "event.dataset": "fastloans.risk"},
        )
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "make",
    [
        lambda: record(
            "%s %s %s",
            "POST",
            "/v1/applications",
            202,
            name="fastloans.gateway.access",
            **{
                "http.request.method": "POST",
                "url.path": "/v1/applications",
                "http.response.status_code": 202,
                "event.duration": 1_234_567,
                "labels.application_id": "7d0c3f1e-0000-4000-8000-000000000001",
            },
        ),
        lambda: record(
            "scored",
            name="fastloans.risk.consumer",
            **{
                "event.dataset": "fastloans.risk",
                "kafka.partition": 3,
                "kafka.offset": 91_827,
                "trace.id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "transaction.id": "00f067aa0ba902b7",
                "labels.application_id": "app-2",
                "labels.score": 0.73,
            },
        ),
        _exception_record,
        lambda: record("plain warning with ünïcode", level=logging.WARNING),
    ],
    ids=["access", "consumer", "exception", "plain"],
)
def test_same_document_as_ecs_logging(make) -> None:
    reference = ecs_logging.StdlibFormatter(exclude_fields=EXCLUDED)
    ours, theirs = make(), make()
    for rec in (ours, theirs):
        setattr(rec, "service.name", "fastloans-risk")
        setattr(rec, "service.environment", "test")
        rec.created = theirs.created
        rec.msecs = theirs.msecs
    ours.exc_info = theirs.exc_info
    assert render(ours) == json.loads(reference.format(theirs))
    configured = EcsFormatter(service_name="fastloans-risk", service_environment="test")
    plain = make()
    plain.created, plain.msecs, plain.exc_info = theirs.created, theirs.msecs, theirs.exc_info
    assert render(plain, configured) == json.loads(reference.format(theirs))


def test_records_with_the_same_or_other_attribute_names_through_one_formatter() -> None:
    formatter = EcsFormatter()
    first = render(record(**{"labels.application_id": "a1", "kafka.offset": 1}), formatter)
    second = render(record(**{"labels.application_id": "a2", "kafka.offset": None}), formatter)
    third = render(record(**{"labels.stage": "risk"}), formatter)
    assert (first["labels"], first["kafka"]) == ({"application_id": "a1"}, {"offset": 1})
    assert second["labels"] == {"application_id": "a2"} and "kafka" not in second
    assert third["labels"] == {"stage": "risk"}


def test_a_broken_record_still_gives_a_line() -> None:
    rec = record("odd")
    rec.created = "not a time"
    rec.levelname = None
    document = render(rec, EcsFormatter(service_name="svc", service_environment="test"))
    assert list(document)[:4] == TOP
    assert document["message"] == "odd"
    assert document["service"] == {"name": "svc", "environment": "test"}


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("aiokafka", "kafka", "uvicorn.access", "sqlalchemy")}
    noisy["asyncio"] = logging.getLogger("asyncio").level
    gathered = logging.logProcesses, logging.logMultiprocessing
    yield
    logging.logProcesses, logging.logMultiprocessing = gathered
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


def test_configured_logging_writes_service_fields_on_every_line(
    monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    with warnings.catch_warnings():  # Elastic APM's LoggingFilter announces its own deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        configure_logging(service="fastloans-approval", level="INFO", environment="staging")
    logging.getLogger("fastloans.approval").info("decided", extra={"labels.application_id": "a1"})
    logging.getLogger("aiokafka").info("chatter")
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert list(document)[:4] == TOP
    assert document["service"] == {"name": "fastloans-approval", "environment": "staging"}
    assert document["labels"] == {"application_id": "a1"}
    assert not any(key.startswith("elasticapm") for key in document)


class _CountingStream(io.StringIO):
    """Records how often the handler wrote to it and flushed it (each would be a system call on a
    stream that writes through, as stdout does under PYTHONUNBUFFERED)."""

    flushes = 0
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_info_lines_are_written_together_by_the_timer_and_warnings_at_once(
    monkeypatch: pytest.MonkeyPatch, restored_logging: None
) -> None:
    stream = _CountingStream()
    monkeypatch.setattr(sys, "stdout", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        configure_logging(service="fastloans-risk", level="INFO")
    log = logging.getLogger("fastloans.pipeline")
    assert log.makeRecord(log.name, logging.INFO, "", 0, "m", (), None).process is None  # no getpid() per line
    before = stream.writes, stream.flushes
    for _ in range(50):
        log.info("message processed")
    writes, flushes = stream.writes - before[0], stream.flushes - before[1]
    # Not one write or flush per line: at most a timer tick happened meanwhile.
    assert writes <= 1 and flushes <= 2
    log.warning("transient failure; retrying the batch")
    assert stream.writes - before[0] == writes + 1  # the warning and every line held, in one write
    assert stream.flushes - before[1] >= flushes + 1
    lines = stream.getvalue().splitlines()
    assert len(lines) == 51 and all(json.loads(line)["log.level"] for line in lines)
    log.info("message processed")
    deadline = time.monotonic() + 5
    while len(stream.getvalue().splitlines()) == 51 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stream.getvalue().splitlines()) == 52  # the background flush keeps running


def test_lines_held_are_bounded_and_written_at_close(
    monkeypatch: pytest.MonkeyPatch, restored_logging: None, tmp_path: Path
) -> None:
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_SECONDS", 3600.0)
    monkeypatch.setattr(logs, "MAX_PENDING_LINES", 10)
    stream = _CountingStream()
    handler = logs.BatchedStreamHandler(stream)
    handler.setFormatter(EcsFormatter(service_name="fastloans-risk"))
    record = logging.LogRecord("fastloans.pipeline", logging.INFO, "", 0, "message processed", (), None)
    for _ in range(25):
        handler.handle(record)
    assert stream.writes == 2 and len(stream.getvalue().splitlines()) == 20  # two writes of ten, five held
    handler.flush()
    assert len(stream.getvalue().splitlines()) == 25
    path = tmp_path / "service.log"
    file_handler = logs.BatchedFileHandler(path, encoding="utf-8")
    file_handler.setFormatter(EcsFormatter(service_name="fastloans-risk"))
    file_handler.handle(record)
    file_handler.close()
    assert len(path.read_text().splitlines()) == 1
