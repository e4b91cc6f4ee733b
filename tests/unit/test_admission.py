"""Admission control's bounds, without I/O: who is refused, with which reason, and that slots are given back."""

from __future__ import annotations

import pytest

from fastloans.looplag import StandingLag
from fastloans_gateway.admission import AdmissionControl, Overloaded, Refusal
from fastloans_gateway.metrics import ADMISSION_REFUSED

pytestmark = pytest.mark.unit


def refused_count(reason: Refusal) -> float:
    return ADMISSION_REFUSED.labels(reason.value)._value.get()


def test_the_in_flight_bound_refuses_the_next_one_and_frees_its_slot_on_exit() -> None:
    control = AdmissionControl(None, max_in_flight=2, max_outbox_backlog=0, retry_after=4)
    before = refused_count(Refusal.IN_FLIGHT)
    with control.admitted(), control.admitted():
        assert control.in_flight == 2
        with pytest.raises(Overloaded) as refused, control.admitted():
            pass
        assert refused.value.reason is Refusal.IN_FLIGHT and refused.value.retry_after == 4
        assert control.in_flight == 2  # a refused submission holds no slot
    assert control.in_flight == 0
    assert refused_count(Refusal.IN_FLIGHT) == before + 1
    with control.admitted():
        assert control.in_flight == 1


def test_a_slot_is_freed_when_the_submission_fails() -> None:
    control = AdmissionControl(None, max_in_flight=1, max_outbox_backlog=0)
    with pytest.raises(RuntimeError), control.admitted():
        raise RuntimeError("the database went away")
    assert control.in_flight == 0


def test_the_outbox_bound_refuses_at_the_bound_and_not_below() -> None:
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=100)
    control.backlog = 99
    assert control.refusal() is None
    control.backlog = 100
    assert control.refusal() is Refusal.OUTBOX_BACKLOG
    with pytest.raises(Overloaded, match="decisions are behind"), control.admitted():
        pass


def test_zero_turns_a_bound_off() -> None:
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0)
    control.backlog = 10**9
    with control.admitted(), control.admitted(), control.admitted():
        assert control.refusal() is None


def test_every_refusal_reason_is_counted_from_the_start() -> None:
    AdmissionControl(None, max_in_flight=1, max_outbox_backlog=1)
    labels = {sample.labels["reason"] for sample in ADMISSION_REFUSED.collect()[0].samples}
    assert labels >= {reason.value for reason in Refusal}


def test_a_standing_event_loop_lag_refuses_at_the_bound_and_not_below() -> None:
    lag = StandingLag(samples=2)
    control = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0, max_loop_lag=0.1, lag=lag)
    lag.add(0.099)
    lag.add(0.5)
    assert control.refusal() is None
    lag.add(0.1)
    assert control.refusal() is Refusal.LOOP_LAG
    with pytest.raises(Overloaded, match="busier than its CPU allows"), control.admitted():
        pass
    lag.add(0.002)
    assert control.refusal() is None
    off = AdmissionControl(None, max_in_flight=0, max_outbox_backlog=0, max_loop_lag=0, lag=lag)
    lag.add(5.0)
    lag.add(5.0)
    assert off.refusal() is None
