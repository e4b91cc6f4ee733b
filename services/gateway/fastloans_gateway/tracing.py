"""Elastic APM on the gateway's HTTP app: a transaction per request, its context carried on by the outbox rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastloans.settings import Settings
from fastloans.tracing import init_tracing

if TYPE_CHECKING:
    from fastapi import FastAPI


def instrument_app(app: FastAPI, settings: Settings) -> None:
    """Add the APM middleware to the gateway and let the outbox rows carry the request's trace context."""
    client = init_tracing(settings)
    if client is None:
        return
    from elasticapm.contrib.starlette import ElasticAPM

    # elasticapm types its ASGI callables with MutableMapping, not Starlette's protocol: the same thing at runtime.
    app.add_middleware(ElasticAPM, client=client)  # type: ignore[arg-type]
    app.state.trace_parent = current_traceparent


def current_traceparent() -> str | None:
    """The `traceparent` of the active transaction or span, for a message produced inside it."""
    from elasticapm.traces import execution_context

    transaction = execution_context.get_transaction()
    if transaction is None:
        return None
    span = execution_context.get_span()
    parent_id = span.id if span is not None else transaction.id
    return str(transaction.trace_parent.copy_from(span_id=parent_id).to_string())
