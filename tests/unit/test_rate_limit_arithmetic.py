"""The arithmetic of the per-tenant sliding window, the failed-attempt buckets and the key caches."""

from __future__ import annotations

import itertools

import pytest

from fastloans_gateway.auth import LRU, FailureThrottle, client_address
from fastloans_gateway.ratelimit import Limit, estimate, retry_after, share


def test_window_is_the_time_a_burst_takes_to_earn() -> None:
    assert Limit.of(200, 400) == Limit(window_ms=2000, limit=400)
    assert Limit.of(10, 25) == Limit(window_ms=2500, limit=25)


def test_window_is_at_least_one_second_and_then_holds_a_second_of_requests() -> None:
    assert Limit.of(50, 5) == Limit(window_ms=1000, limit=50)
    assert Limit.of(0.5, 1) == Limit(window_ms=2000, limit=1)
    assert Limit.of(0.001, 100_000).window_ms == 3_600_000


def test_estimate_weights_the_previous_window_by_its_overlap() -> None:
    assert estimate(100, 0, 0.0) == 100
    assert estimate(100, 20, 0.25) == 95
    assert estimate(100, 20, 1.0) == 20


def test_retry_after_when_the_previous_window_fades_in_time() -> None:
    # 100 + 0 in a 1 s window of limit 100: one more fits once 1 % of the previous window has passed.
    assert retry_after(100, 0, 0.0, 1.0, 100) == 1
    # Half of a 10 s window left, 40 of limit 50 still weighted: 60 % of the way one fits -> 1 s.
    assert retry_after(80, 10, 0.5, 10.0, 50) == 1


def test_retry_after_waits_into_the_next_window_when_the_current_one_is_full() -> None:
    # The current window alone holds the limit: it must fade in the next window.
    assert retry_after(0, 50, 0.5, 10.0, 50) == 6
    assert retry_after(0, 1, 0.0, 2.0, 1) == 4


def test_retry_after_is_never_below_one_second() -> None:
    assert retry_after(0, 0, 0.0, 1.0, 10) == 1


def test_shares_add_up_to_the_remainder_on_average() -> None:
    steps = itertools.cycle([i / 100 for i in range(100)])
    parts = [share(10, 4, rng=lambda: next(steps)) for _ in range(300)]
    assert set(parts) == {2, 3} and sum(parts) == 750
    assert share(0, 2) == 0 and share(-5, 1) == 0
    assert share(7, 1) == 7 and share(7, 0) == 7


def test_lru_forgets_the_least_recently_used_entry_only() -> None:
    cache: LRU[str, int] = LRU(3)
    for name in "abc":
        cache.put(name, 1)
    assert cache.get("a") == 1
    cache.put("d", 1)
    assert cache.get("b") is None and len(cache) == 3
    assert all(cache.get(name) == 1 for name in "acd")


def test_failed_attempts_per_address_refill_at_the_rate() -> None:
    throttle = FailureThrottle(rate=0.5, burst=3, size=100)
    assert [throttle.take("203.0.113.9", 0.0) for _ in range(3)] == [None, None, None]
    assert throttle.take("203.0.113.9", 0.0) == 2
    assert throttle.take("198.51.100.1", 0.0) is None
    assert throttle.take("203.0.113.9", 2.0) is None
    throttle.give_back("203.0.113.9")
    assert throttle.take("203.0.113.9", 2.0) is None
    assert throttle.take("203.0.113.9", 2.0) == 2


def test_failure_throttle_off_at_rate_zero() -> None:
    throttle = FailureThrottle(rate=0, burst=1, size=1)
    assert all(throttle.take("203.0.113.9", 0.0) is None for _ in range(100))


@pytest.mark.parametrize(
    ("client", "address"),
    [
        (("203.0.113.9", 5000), "203.0.113.9"),
        (("2001:db8:1:2:3:4:5:6", 5000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:ffff::1", 5000), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.9", 5000), "203.0.113.9"),
        (None, "unknown"),
        (("testclient", 50000), "testclient"),
    ],
)
def test_client_address(client: tuple[str, int] | None, address: str) -> None:
    assert client_address(client) == address
