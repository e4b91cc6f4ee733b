"""Which Kafka errors are outages and which refuse a message for good; dead-letter copies always fit."""

from __future__ import annotations

import pytest
from aiokafka import errors

from fastloans.kafka import dead_letter_copy, is_poison, is_transient, message_size

LIMIT = 1_048_576


@pytest.mark.parametrize(
    "error",
    [
        errors.KafkaConnectionError(),
        errors.NodeNotReadyError(),
        errors.NoBrokersAvailable(),
        errors.RequestTimedOutError(),
        errors.KafkaTimeoutError(),
        errors.NotLeaderForPartitionError(),
        errors.LeaderNotAvailableError(),
        errors.NotEnoughReplicasError(),
        errors.NotEnoughReplicasAfterAppendError(),
        errors.BrokerNotAvailableError(),
        errors.UnknownTopicOrPartitionError(),
        errors.KafkaStorageError(),
        errors.OutOfOrderSequenceNumber(),
        errors.ProducerClosed(),
        errors.KafkaError("Unexpected error during batch delivery"),
        ConnectionResetError(),
    ],
)
def test_outages_are_transient(error: BaseException) -> None:
    assert is_transient(error)
    assert not is_poison(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.MessageSizeTooLargeError(),
        errors.RecordTooLargeError(),
        errors.RecordListTooLargeError(),
        errors.CorruptRecordException(),
        errors.InvalidTimestampError(),
        errors.UnknownError(),
    ],
)
def test_refusals_of_the_message_are_poison(error: BaseException) -> None:
    assert not is_transient(error)
    assert is_poison(error)


@pytest.mark.parametrize(
    "error",
    [
        errors.TopicAuthorizationFailedError(),
        errors.InvalidTopicError(),
        errors.UnsupportedVersionError(),
    ],
)
def test_other_permanent_errors_are_not_retried_for_ever(error: BaseException) -> None:
    assert not is_transient(error)


def test_a_wrapped_error_is_judged_by_its_cause() -> None:
    wrapped = errors.KafkaError("Unexpected error during batch delivery")
    wrapped.__cause__ = ValueError("a bug")
    assert not is_transient(wrapped)


def _copy(key: bytes | None, value: bytes | None, headers: list, limit: int = LIMIT, **kw):
    return dead_letter_copy(
        key,
        value,
        headers,
        error=ValueError("boom"),
        details={"source-topic": "t", "source-offset": "7"},
        limit=limit,
        **kw,
    )


def test_a_small_message_is_copied_whole_with_the_error() -> None:
    key, value, headers = _copy(b"k", b"v", [("traceparent", b"00-x"), ("event-type", b"E")])
    assert (key, value) == (b"k", b"v")
    assert headers[:2] == [("traceparent", b"00-x"), ("event-type", b"E")]
    assert dict(headers)["dlq-error"] == b"ValueError: boom"
    assert dict(headers)["dlq-source-offset"] == b"7"
    assert "dlq-headers-dropped" not in dict(headers)


def test_oversized_headers_are_left_out_and_counted() -> None:
    huge = [
        ("tracestate", b"a" * 1_000_000),
        ("n" * 300, b"1"),
        ("ok", b"fine"),
        *((f"h{i}", b"x" * 8000) for i in range(10)),
    ]
    _, value, headers = _copy(b"k", b"v", huge)
    names = [name for name, _ in headers]
    assert "tracestate" not in names and "n" * 300 not in names and "ok" in names
    assert dict(headers)["dlq-headers-dropped"] == b"8"  # tracestate, the long name, and 6 past 32 KiB
    assert value == b"v"


@pytest.mark.parametrize("size", [LIMIT - 500, LIMIT, 5 * LIMIT])
def test_a_value_too_large_for_the_copy_is_cut_to_fit(size: int) -> None:
    key, value, headers = _copy(b"k" * 5000, b"v" * size, [("x", b"1")])
    assert message_size(key, value, headers) <= LIMIT
    assert len(key) == 1024 and dict(headers)["dlq-key-truncated"] == b"5000"
    assert dict(headers)["dlq-value-truncated"] == str(size).encode()
    assert value == b"v" * len(value) and len(value) > LIMIT - 4000


def test_without_the_value_the_copy_says_so() -> None:
    _, value, headers = _copy(b"k", b"v" * 100, [], keep_value=False)
    assert value == b"" and dict(headers)["dlq-value-dropped"] == b"100"


def test_a_long_error_is_cut() -> None:
    _, _, headers = dead_letter_copy(b"k", b"v", [], error=ValueError("e" * 100_000), details={}, limit=LIMIT)
    assert len(dict(headers)["dlq-error"]) == 1000
