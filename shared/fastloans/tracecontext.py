"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the headers the pipeline carries on, validated and bounded.

A request or a message may bring any bytes under these names. Only a
well-formed `traceparent`, and a `tracestate` within the specification's
limits next to it, travel further; anything else is dropped, silently, as the
specification asks of a vendor that cannot parse the context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# Elastic APM's legacy name for `traceparent`; never produced here, carried on when valid.
ELASTIC_TRACEPARENT = "elastic-apm-traceparent"
TRACE_HEADERS = (TRACEPARENT, TRACESTATE, ELASTIC_TRACEPARENT)

MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
TRACEPARENT_CHARS = 55  # version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2
# The most a valid context can take (names and values); anything above it is not one.
MAX_TRACE_CONTEXT_BYTES = sum(map(len, TRACE_HEADERS)) + 2 * TRACEPARENT_CHARS + MAX_TRACESTATE_CHARS

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_KEY_CHARS = r"[a-z0-9_\-*/]"
_TRACESTATE_KEY = re.compile(rf"[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}}")
# Printable ASCII but "," and "="; spaces inside, not at the end.
_TRACESTATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"


def _text(value: str | bytes) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if value.isascii() else None


def valid_traceparent(value: str | bytes) -> str | None:
    """The `traceparent` to carry on, or None when `value` is not a valid one.

    Version 00 must be exactly version-traceid-parentid-flags; a later version may
    add fields after a "-", of which only the four known ones are kept.
    Version ff and all-zero ids are invalid.
    """
    if len(value) < TRACEPARENT_CHARS:
        return None
    text = _text(value[: TRACEPARENT_CHARS + 1])
    if text is None:
        return None
    match = _TRACEPARENT.fullmatch(text[:TRACEPARENT_CHARS])
    if match is None:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    if len(value) > TRACEPARENT_CHARS and (version == "00" or text[TRACEPARENT_CHARS] != "-"):
        return None
    return text[:TRACEPARENT_CHARS]


def valid_tracestate(value: str | bytes) -> str | None:
    """The `tracestate` to carry on (members joined by ","), or None when invalid or over the limits.

    At most MAX_TRACESTATE_CHARS characters and MAX_TRACESTATE_MEMBERS list members,
    each `key=value` by the specification's grammar, no key twice. Empty members are
    allowed and left out; a list with none left is not carried on.
    """
    if len(value) > MAX_TRACESTATE_CHARS:
        return None
    text = _text(value)
    if text is None:
        return None
    members: list[str] = []
    keys: set[str] = set()
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        key, equals, member_value = member.partition("=")
        if (
            not equals
            or key in keys
            or _TRACESTATE_KEY.fullmatch(key) is None
            or _TRACESTATE_VALUE.fullmatch(member_value) is None
        ):
            return None
        keys.add(key)
        members.append(member)
        if len(members) > MAX_TRACESTATE_MEMBERS:
            return None
    return ",".join(members) or None


def trace_context(headers: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The valid trace context among `headers` (HTTP or Kafka, names lower case), at most MAX_TRACE_CONTEXT_BYTES.

    A name given twice is ambiguous for `traceparent` and drops it; several
    `tracestate` values are one list, joined. `tracestate` goes only with a valid
    `traceparent`.
    """
    parents: dict[str, list[str | bytes]] = {}
    states: list[str | bytes] = []
    for name, value in headers or ():
        if name == TRACESTATE:
            states.append(value)
        elif name in (TRACEPARENT, ELASTIC_TRACEPARENT):
            parents.setdefault(name, []).append(value)
    context: dict[str, str] = {}
    for name, values in parents.items():
        parent = valid_traceparent(values[0]) if len(values) == 1 else None
        if parent is not None:
            context[name] = parent
    if context and states:
        joined = states[0] if len(states) == 1 else _join(states)
        state = valid_tracestate(joined) if joined is not None else None
        if state is not None:
            context[TRACESTATE] = state
    return context


def _join(values: list[str | bytes]) -> str | None:
    if sum(len(v) + 1 for v in values) > MAX_TRACESTATE_CHARS + 1:
        return None
    texts = [_text(v) for v in values]
    return None if any(t is None for t in texts) else ",".join(t for t in texts if t is not None)
