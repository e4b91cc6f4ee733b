"""W3C trace-context validation: what the gateway and the consumers carry on, and what they drop."""

from __future__ import annotations

import pytest

from fastloans.tracecontext import (
    MAX_TRACE_CONTEXT_BYTES,
    MAX_TRACESTATE_CHARS,
    MAX_TRACESTATE_MEMBERS,
    trace_context,
    valid_traceparent,
    valid_tracestate,
)

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        PARENT,
        PARENT.encode(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
def test_valid_traceparents_are_kept(value: str | bytes) -> None:
    assert valid_traceparent(value) == (value.decode() if isinstance(value, bytes) else value)


def test_a_later_version_keeps_the_four_known_fields() -> None:
    assert valid_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next") == (
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        PARENT + "-extra",  # version 00 has exactly four fields
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # later version, no dash after flags
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        " " + PARENT,
        PARENT + "\n",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u0661",  # a non-ASCII digit
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-\xff\xff",
        "00-" + "a" * 1_200_000,
    ],
)
def test_invalid_traceparents_are_dropped(value: str | bytes) -> None:
    assert valid_traceparent(value) is None


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("congo=t61rcWkgMzE", "congo=t61rcWkgMzE"),
        ("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("\trojo=1 ,, ,congo=2\t", "rojo=1,congo=2"),
        ("tenant@system=value with spaces", "tenant@system=value with spaces"),
        ("a*b_c-d/e=~!", "a*b_c-d/e=~!"),
        ("0tenant@sys=1", "0tenant@sys=1"),
        (",".join(f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS)), ",".join(f"k{i}=v" for i in range(32))),
        ("k=" + "v" * 256, "k=" + "v" * 256),
    ],
)
def test_valid_tracestates_are_kept(value: str, kept: str) -> None:
    assert valid_tracestate(value) == kept


@pytest.mark.parametrize(
    "value",
    [
        ",".join(f"k{i}=v" for i in range(MAX_TRACESTATE_MEMBERS + 1)),  # 33 members
        "k=" + "v" * (MAX_TRACESTATE_CHARS - 1),  # 513 characters
        "k=" + "v" * 257,  # value over 256 characters
        "a" * 1_200_000,
        "Upper=1",
        "1digit=1",
        "k=1,k=2",  # a key twice
        "k",
        "=v",
        "k=",
        "k=\x7f",
        "k=a,b",
        "k=a=b",
        "k=caf\u00e9",
        "k=\x01",
        "tenant@system-is-too-long=1",  # system id over 14 characters
        "@system=1",
        " , ",  # nothing left to carry on
    ],
)
def test_invalid_or_oversized_tracestates_are_dropped(value: str) -> None:
    assert valid_tracestate(value) is None


def test_context_keeps_a_valid_pair() -> None:
    assert trace_context([("traceparent", PARENT.encode()), ("tracestate", b"rojo=1"), ("other", b"x")]) == {
        "traceparent": PARENT,
        "tracestate": "rojo=1",
    }


def test_tracestate_goes_only_with_a_valid_traceparent() -> None:
    assert trace_context([("traceparent", "00-bad"), ("tracestate", "rojo=1")]) == {}
    assert trace_context([("tracestate", "rojo=1")]) == {}


def test_an_invalid_tracestate_leaves_the_traceparent() -> None:
    assert trace_context([("traceparent", PARENT), ("tracestate", "x" * 1_200_000)]) == {"traceparent": PARENT}


def test_two_traceparents_are_ambiguous_and_dropped() -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    assert trace_context([("traceparent", PARENT), ("traceparent", other), ("tracestate", "a=1")]) == {}


def test_several_tracestate_headers_are_one_list_within_the_limits() -> None:
    assert trace_context([("traceparent", PARENT), ("tracestate", "a=1"), ("tracestate", "b=2")]) == {
        "traceparent": PARENT,
        "tracestate": "a=1,b=2",
    }
    halves = [("tracestate", "a=" + "x" * 250), ("tracestate", "b=" + "y" * 250), ("tracestate", "c=" + "z" * 250)]
    assert trace_context([("traceparent", PARENT), *halves]) == {"traceparent": PARENT}
    duplicate = [("tracestate", "a=1"), ("tracestate", "a=2")]
    assert trace_context([("traceparent", PARENT), *duplicate]) == {"traceparent": PARENT}


def test_the_largest_valid_context_is_within_its_bound() -> None:
    state = ",".join(f"k{i:02d}={'v' * 10}" for i in range(32))[:MAX_TRACESTATE_CHARS].rstrip(",")
    context = trace_context([("traceparent", PARENT), ("elastic-apm-traceparent", PARENT), ("tracestate", state)])
    assert set(context) == {"traceparent", "elastic-apm-traceparent", "tracestate"}
    assert sum(len(k) + len(v) for k, v in context.items()) <= MAX_TRACE_CONTEXT_BYTES
