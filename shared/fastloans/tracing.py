"""Elastic APM tracing: a transaction per HTTP request and per Kafka message, one trace per application.

Enabled when `ELASTIC_APM_SERVER_URL` is set; every other `ELASTIC_APM_*`
variable (secret token, sample rate, environment, ...) is read by the agent
itself. The trace context travels in the Kafka headers `traceparent` and
`tracestate`: each consumer starts a transaction per message as a child of the
message's context, and the messages it produces carry that transaction's
context on, so one trace shows gateway → relay → risk → approval → recorder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastloans.settings import Settings
from fastloans.tracecontext import ELASTIC_TRACEPARENT, TRACEPARENT, trace_context, valid_traceparent

if TYPE_CHECKING:
    from elasticapm import Client
    from elasticapm.traces import Transaction

log = logging.getLogger("fastloans.tracing")

Headers = list[tuple[str, bytes]]
MessageKey = tuple[str, int, int]

_client: Client | None = None
_outgoing: ContextVar[dict[MessageKey, Headers] | None] = ContextVar("fastloans_outgoing_trace", default=None)

IGNORED_URLS = "/healthz,/readyz,/metrics,/static/*"


def init_tracing(settings: Settings) -> Client | None:
    """Create the process's APM client when `ELASTIC_APM_SERVER_URL` is set (idempotent)."""
    global _client
    if _client is not None or not settings.elastic_apm_server_url:
        return _client
    import elasticapm

    # Inline values are defaults: the agent's own ELASTIC_APM_* variables override them.
    _client = elasticapm.Client(
        service_name=settings.service_name,
        server_url=settings.elastic_apm_server_url,
        environment=settings.environment,
        capture_body="off",
        collect_local_variables="off",
        transaction_ignore_urls=IGNORED_URLS,
        use_elastic_traceparent_header=False,
    )
    log.info("Elastic APM tracing enabled")
    return _client


def label_application(application_id: str) -> None:
    """Put the application id on the active APM transaction (a no-op without one)."""
    if _client is None:
        return
    import elasticapm

    elasticapm.label(application_id=application_id)


def trace_id_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The W3C trace id in a message's `traceparent` header, if it has one."""
    for name, value in headers or ():
        if name == TRACEPARENT:
            parent = valid_traceparent(value)
            return parent.split("-")[1] if parent else None
    return None


def outgoing_headers(key: MessageKey) -> Headers | None:
    """The trace context to put on a message produced for the consumed message `key`, when traced."""
    outgoing = _outgoing.get()
    return outgoing.get(key) if outgoing else None


@dataclass
class MessageTrace:
    """One consumed (or relayed) message: its application id and its transaction, if traced."""

    application_id: str
    key: MessageKey
    trace_id: str | None
    transaction: Transaction | None = None

    def log_fields(self) -> dict[str, Any]:
        """ECS fields naming this message's application and trace."""
        fields: dict[str, Any] = {"labels.application_id": self.application_id}
        if self.transaction is not None:
            fields["trace.id"] = self.transaction.trace_parent.trace_id
            fields["transaction.id"] = self.transaction.id
        elif self.trace_id:
            fields["trace.id"] = self.trace_id
        return fields


@contextmanager
def message_transactions(
    name: str,
    messages: Sequence[tuple[MessageKey, bytes | None, Sequence[tuple[str, bytes]] | None]],
) -> Iterator[list[MessageTrace]]:
    """A transaction per message, each continuing the message's trace; ended when the block ends.

    While the block runs, `outgoing_headers(key)` gives the context to carry on
    to the message produced for each input. Transactions are not made current
    (there are several at once), so they hold no automatic spans.
    """
    traces = []
    outgoing: dict[MessageKey, Headers] = {}
    started = time.time()
    for key, raw_id, headers in messages:
        application_id = raw_id.decode("utf-8", "replace") if raw_id else ""
        trace = MessageTrace(application_id, key, trace_id_of(headers))
        if _client is not None:
            trace.transaction = _begin(name, headers, started, application_id)
            parent = trace.transaction.trace_parent
            outgoing[key] = [("traceparent", parent.copy_from(span_id=trace.transaction.id).to_ascii())]
            if parent.tracestate:
                outgoing[key].append(("tracestate", parent.tracestate.encode()))
        traces.append(trace)
    token = _outgoing.set(outgoing) if outgoing else None
    outcome = "failure"
    try:
        yield traces
        outcome = "success"
    finally:
        if token is not None:
            _outgoing.reset(token)
        for trace in traces:
            if trace.transaction is not None:
                _end(trace.transaction, name, outcome)


def _begin(name: str, headers: Sequence[tuple[str, bytes]] | None, started: float, application_id: str) -> Transaction:
    from elasticapm.utils.disttracing import TraceParent

    assert _client is not None
    context = trace_context(headers)
    context.pop(ELASTIC_TRACEPARENT, None)
    parent = TraceParent.from_headers(context) if context else None
    assert _client.tracer is not None  # a started client always has its tracer
    transaction = _client.tracer.begin_transaction("messaging", trace_parent=parent, start=started, auto_activate=False)
    transaction.name = name
    transaction.label(application_id=application_id)
    return transaction


def _end(transaction: Transaction, name: str, outcome: str) -> None:
    from elasticapm.traces import execution_context

    assert _client is not None
    transaction.outcome = outcome
    # end_transaction ends and queues the current transaction: make this one current for that call.
    execution_context.set_transaction(transaction)
    _client.end_transaction(name, "success" if outcome == "success" else "failure")
